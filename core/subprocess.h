// Child processes started and supervised by this one (`dus launch` ranks, `dus sweep --jobs N`
// runs): fork + exec with extra environment variables, output prefixed line by line or sent to a
// log file, SIGTERM / SIGINT received by this process reported so the caller can forward them,
// exits reaped, and a stop that escalates from SIGTERM to SIGKILL after a grace period.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <memory>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "core/stop_signals.h"

namespace dus {

enum class ChildOutput {
  kInherit,   ///< the child writes to this process's stdout and stderr directly
  kPrefixed,  ///< each line of the child's stdout / stderr is re-printed with `line_prefix`
  kLogFile,   ///< stdout and stderr appended to `log_file` (created 0644)
};

struct ChildSpec {
  std::string program;            ///< absolute path executed (no PATH search)
  std::vector<std::string> argv;  ///< argv[0] included
  std::vector<std::pair<std::string, std::string>> env;  ///< set on top of this environment
  ChildOutput output = ChildOutput::kInherit;            ///< where stdout / stderr go
  std::string line_prefix;  ///< kPrefixed: put before every line ("[rank 1] ")
  FILE* out = stdout;       ///< kPrefixed: where the child's stdout lines go
  FILE* err = stderr;       ///< kPrefixed: where the child's stderr lines go
  std::string log_file;     ///< kLogFile: the file
};

/// One child that ended.
struct ChildExit {
  size_t id = 0;  ///< what spawn() returned
  pid_t pid = -1;
  int status = 0;     ///< waitpid status (meaningless when `lost`)
  bool lost = false;  ///< waitpid failed: the child is no longer ours to wait for
};

/// "exited with code 3", "was killed by signal 9 (Killed)", "was lost".
std::string describe_exit(const ChildExit& e);
/// The exit code a shell would report: the code, 128 + signal when killed, 1 when lost.
int exit_code_of(const ChildExit& e);

/// What one Supervisor::wait call saw.
struct SupervisorEvents {
  std::vector<ChildExit> exited;  ///< children reaped during this call
  int signal = 0;                 ///< SIGTERM / SIGINT received by this process since last call
  int escalated = 0;              ///< children sent SIGKILL because stop_all's grace ran out
};

/// Supervises child processes. While one exists, SIGTERM and SIGINT to this process do not kill
/// it: they are recorded and come back from wait(), so the caller decides (forward, stop
/// spawning). One at a time per process (a signal handler reaches only a global).
class Supervisor {
 public:
  Supervisor();
  /// Restores the previous SIGTERM / SIGINT handlers. Children still running (an exception
  /// unwound past the caller's loop) are killed and reaped: none keeps training unsupervised.
  ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  /// Starts a child; returns its id (0, 1, ... in spawn order). Throws dus::Error when fork or
  /// the log file fails; an exec failure is the child's exit code 127 (message on its stderr).
  size_t spawn(const ChildSpec& spec);

  /// Copies children's output, reaps exits and applies stop_all's escalation, waiting up to
  /// `timeout_ms` for something to happen (output, a signal; exits are looked for at least
  /// every `timeout_ms`).
  SupervisorEvents wait(int timeout_ms);

  /// Sends `sig` to every running child.
  void signal_all(int sig);
  /// SIGTERM to every running child now and SIGKILL to those still running `grace_s` later (by
  /// a later wait()). Repeated calls keep the first deadline.
  void stop_all(double grace_s);

  size_t running() const;  ///< children not yet reaped
  /// Children running or output not yet read to its end (loop `while (sup.busy()) wait(..)`).
  bool busy() const;
  pid_t pid(size_t id) const { return children_[id].pid; }

 private:
  struct Stream {
    int fd = -1;
    FILE* sink = nullptr;
    std::string pending;  // a partial line
  };
  struct Child {
    pid_t pid = -1;
    bool running = true;
    std::string prefix;
    Stream streams[2];  // stdout, stderr
  };
  void emit_lines(Child& c, Stream& s, bool flush_all);

  std::vector<Child> children_;
  int wake_[2] = {-1, -1};  // self-pipe: the signal handler's write wakes poll()
  bool stopping_ = false;
  std::chrono::steady_clock::time_point kill_deadline_{};
  std::unique_ptr<StopSignals> signals_;  // SIGTERM / SIGINT, reported by wait()
};

}  // namespace dus
