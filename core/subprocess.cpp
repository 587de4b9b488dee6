#include "core/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "core/error.h"

extern char** environ;

namespace dus {

namespace {

// Everything the child needs, built before fork: between fork and exec a multi-threaded parent's
// child may only make async-signal-safe calls (no allocation, no setenv).
struct ExecImage {
  std::vector<std::string> strings;
  std::vector<char*> argv, envp;
};

ExecImage exec_image(const ChildSpec& s) {
  ExecImage im;
  im.strings = s.argv;
  auto is_overridden = [&](const char* entry) {
    for (const auto& [k, v] : s.env)
      if (std::strncmp(entry, k.c_str(), k.size()) == 0 && entry[k.size()] == '=') return true;
    return false;
  };
  for (char** e = environ; e && *e; ++e)
    if (!is_overridden(*e)) im.strings.emplace_back(*e);
  for (const auto& [k, v] : s.env) im.strings.push_back(k + "=" + v);
  const size_t n_args = s.argv.size();
  for (size_t i = 0; i < im.strings.size(); ++i)
    (i < n_args ? im.argv : im.envp).push_back(im.strings[i].data());
  im.argv.push_back(nullptr);
  im.envp.push_back(nullptr);
  return im;
}

void write_all(int fd, const char* text) {
  for (size_t n = std::strlen(text); n > 0;) {
    const ssize_t w = ::write(fd, text, n);
    if (w <= 0) return;
    text += w;
    n -= static_cast<size_t>(w);
  }
}

}  // namespace

std::string describe_exit(const ChildExit& e) {
  if (e.lost) return "was lost";
  if (WIFEXITED(e.status)) return fmt::format("exited with code {}", WEXITSTATUS(e.status));
  if (WIFSIGNALED(e.status)) {
    const int sig = WTERMSIG(e.status);
    return fmt::format("was killed by signal {} ({})", sig, strsignal(sig));
  }
  return fmt::format("ended (status {})", e.status);
}

int exit_code_of(const ChildExit& e) {
  if (e.lost) return 1;
  if (WIFEXITED(e.status)) return WEXITSTATUS(e.status);
  if (WIFSIGNALED(e.status)) return 128 + WTERMSIG(e.status);
  return 1;
}

Supervisor::Supervisor() {
  if (::pipe2(wake_, O_CLOEXEC | O_NONBLOCK) != 0)
    throw Error("subprocess", fmt::format("pipe(): {}", std::strerror(errno)));
  try {
    signals_ = std::make_unique<StopSignals>(wake_[1]);
  } catch (...) {
    ::close(wake_[0]);
    ::close(wake_[1]);
    throw;
  }
}

Supervisor::~Supervisor() {
  for (auto& c : children_) {
    if (!c.running) continue;
    ::kill(c.pid, SIGKILL);
    int status = 0;
    while (::waitpid(c.pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  for (auto& c : children_)
    for (auto& s : c.streams)
      if (s.fd >= 0) ::close(s.fd);
  signals_.reset();  // the handler no longer writes to the pipe
  ::close(wake_[0]);
  ::close(wake_[1]);
}

size_t Supervisor::spawn(const ChildSpec& spec) {
  if (spec.argv.empty()) throw Error("subprocess", "no argv for " + spec.program);
  ExecImage im = exec_image(spec);
  const std::string exec_failed = "exec " + spec.program + " failed: ";
  int out[2] = {-1, -1}, err[2] = {-1, -1}, log = -1;
  auto close_fds = [&] {
    for (int fd : {out[0], out[1], err[0], err[1], log})
      if (fd >= 0) ::close(fd);
  };
  if (spec.output == ChildOutput::kPrefixed &&
      (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0)) {
    close_fds();
    throw Error("subprocess", std::string("pipe(): ") + std::strerror(errno));
  }
  if (spec.output == ChildOutput::kLogFile) {
    log = ::open(spec.log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log < 0)
      throw Error(spec.log_file,
                  std::string("cannot open the child's log: ") + std::strerror(errno));
  }
  // SIGTERM / SIGINT blocked across fork: one that arrives before the child has reset its
  // dispositions stays pending instead of running our handler in the child (which would swallow
  // it); the child takes it, with the default action, once it unblocks.
  sigset_t stop_signals, old_mask;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, &old_mask);
  const pid_t pid = ::fork();
  if (pid == 0) {
    // The child: default dispositions, then its stdout / stderr, then exec.
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
    if (spec.output == ChildOutput::kPrefixed) {
      ::dup2(out[1], 1);
      ::dup2(err[1], 2);
    } else if (spec.output == ChildOutput::kLogFile) {
      ::dup2(log, 1);
      ::dup2(log, 2);
    }
    ::execve(spec.program.c_str(), im.argv.data(), im.envp.data());
    const int e = errno;
    write_all(2, exec_failed.c_str());
    write_all(2, std::strerror(e));
    write_all(2, "\n");
    ::_exit(127);
  }
  const int fork_errno = errno;
  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  if (pid < 0) {
    close_fds();
    throw Error("subprocess", "fork() for " + spec.program + ": " + std::strerror(fork_errno));
  }
  Child c;
  c.pid = pid;
  c.prefix = spec.line_prefix;
  if (spec.output == ChildOutput::kPrefixed) {
    ::close(out[1]);
    ::close(err[1]);
    c.streams[0].fd = out[0];
    c.streams[0].sink = spec.out;
    c.streams[1].fd = err[0];
    c.streams[1].sink = spec.err;
  }
  if (log >= 0) ::close(log);
  children_.push_back(std::move(c));
  return children_.size() - 1;
}

void Supervisor::emit_lines(Child& c, Stream& s, bool flush_all) {
  size_t start = 0;
  for (size_t nl; (nl = s.pending.find('\n', start)) != std::string::npos; start = nl + 1)
    fmt::print(s.sink, "{}{}\n", c.prefix, std::string_view(s.pending).substr(start, nl - start));
  s.pending.erase(0, start);
  if (flush_all && !s.pending.empty()) {
    fmt::print(s.sink, "{}{}\n", c.prefix, s.pending);
    s.pending.clear();
  }
  std::fflush(s.sink);
}

SupervisorEvents Supervisor::wait(int timeout_ms) {
  SupervisorEvents ev;
  std::vector<pollfd> fds{{wake_[0], POLLIN, 0}};
  std::vector<Stream*> streams;  // of fds[i + 1]
  std::vector<Child*> owners;
  for (auto& c : children_)
    for (auto& s : c.streams)
      if (s.fd >= 0) {
        fds.push_back({s.fd, POLLIN, 0});
        streams.push_back(&s);
        owners.push_back(&c);
      }
  // A signal that arrived before poll() has already written to the self-pipe: no lost wake-up.
  ::poll(fds.data(), fds.size(), timeout_ms);
  if (fds[0].revents & POLLIN) {
    char buf[64];
    while (::read(wake_[0], buf, sizeof buf) > 0) {
    }
  }
  ev.signal = signals_->take();
  for (size_t i = 1; i < fds.size(); ++i) {
    if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
    Stream& s = *streams[i - 1];
    char buf[65536];
    const ssize_t n = ::read(s.fd, buf, sizeof buf);
    if (n > 0) {
      s.pending.append(buf, static_cast<size_t>(n));
      emit_lines(*owners[i - 1], s, false);
    } else if (n == 0 || errno != EINTR) {
      emit_lines(*owners[i - 1], s, true);
      ::close(s.fd);
      s.fd = -1;
    }
  }
  for (size_t id = 0; id < children_.size(); ++id) {
    Child& c = children_[id];
    if (!c.running) continue;
    int status = 0;
    const pid_t r = ::waitpid(c.pid, &status, WNOHANG);
    if (r == 0 || (r < 0 && errno == EINTR)) continue;
    c.running = false;
    ev.exited.push_back({id, c.pid, status, r < 0});
  }
  if (stopping_ && running() > 0 && std::chrono::steady_clock::now() >= kill_deadline_) {
    ev.escalated = static_cast<int>(running());
    signal_all(SIGKILL);
    stopping_ = false;
  }
  return ev;
}

void Supervisor::signal_all(int sig) {
  for (const auto& c : children_)
    if (c.running) ::kill(c.pid, sig);
}

void Supervisor::stop_all(double grace_s) {
  signal_all(SIGTERM);
  if (stopping_) return;
  stopping_ = true;
  kill_deadline_ = std::chrono::steady_clock::now() +
                   std::chrono::milliseconds(static_cast<int64_t>(grace_s * 1000));
}

size_t Supervisor::running() const {
  size_t n = 0;
  for (const auto& c : children_) n += c.running;
  return n;
}

bool Supervisor::busy() const {
  for (const auto& c : children_) {
    if (c.running) return true;
    for (const auto& s : c.streams)
      if (s.fd >= 0) return true;
  }
  return false;
}

}  // namespace dus
