#include "trainer/distributed/launch.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "model/error.h"

namespace dus::dist {

namespace {

std::atomic<int> g_forward_signal{0};
int g_wake_fd = -1;  // self-pipe: a signal wakes poll()

extern "C" void on_launcher_signal(int sig) {
  g_forward_signal.store(sig);
  if (g_wake_fd >= 0) {
    const char c = 1;
    ssize_t ignored = ::write(g_wake_fd, &c, 1);
    (void)ignored;
  }
}

struct Stream {
  int fd = -1;
  FILE* out = nullptr;
  std::string pending;  ///< a partial line
};

struct Rank {
  pid_t pid = -1;
  bool running = true;
  int status = 0;
  Stream streams[2];
};

void emit_lines(int rank, Stream& s, bool flush_all) {
  size_t start = 0;
  for (size_t nl; (nl = s.pending.find('\n', start)) != std::string::npos; start = nl + 1)
    std::fprintf(s.out, "[rank %d] %.*s\n", rank, static_cast<int>(nl - start),
                 s.pending.data() + start);
  s.pending.erase(0, start);
  if (flush_all && !s.pending.empty()) {
    std::fprintf(s.out, "[rank %d] %s\n", rank, s.pending.c_str());
    s.pending.clear();
  }
  std::fflush(s.out);
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    return "was killed by signal " + std::to_string(sig) + " (" + strsignal(sig) + ")";
  }
  return "ended (status " + std::to_string(status) + ")";
}

int exit_code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

}  // namespace

int pick_free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw Error("launch", std::string("socket(): ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    throw Error("launch", std::string("cannot find a free port: ") + std::strerror(errno));
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

int launch_local(const LaunchOptions& o, const std::vector<std::string>& command) {
  if (o.nproc < 1) throw Error("launch --nproc", "must be at least 1");
  if (command.empty())
    throw Error("launch", "no command to run", "e.g. dus launch --nproc 2 -- train RECIPE");
  const int port = o.master_port > 0 ? o.master_port : pick_free_port();
  std::printf("launch           %d ranks of dus %s (MASTER_ADDR=%s MASTER_PORT=%d)\n", o.nproc,
              command[0].c_str(), o.master_addr.c_str(), port);
  std::fflush(stdout);

  int wake[2];
  if (::pipe2(wake, O_CLOEXEC | O_NONBLOCK) != 0) throw Error("launch", "pipe() failed");
  g_wake_fd = wake[1];
  struct sigaction sa {};
  sa.sa_handler = on_launcher_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);

  std::vector<Rank> ranks(static_cast<size_t>(o.nproc));
  for (int r = 0; r < o.nproc; ++r) {
    int out[2], err[2];
    if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0)
      throw Error("launch", "pipe() failed");
    const pid_t pid = ::fork();
    if (pid < 0) throw Error("launch", std::string("fork(): ") + std::strerror(errno));
    if (pid == 0) {
      // The child: the default dispositions, its rank's environment, pipes as stdout/stderr.
      signal(SIGTERM, SIG_DFL);
      signal(SIGINT, SIG_DFL);
      ::dup2(out[1], 1);
      ::dup2(err[1], 2);
      setenv("RANK", std::to_string(r).c_str(), 1);
      setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
      setenv("WORLD_SIZE", std::to_string(o.nproc).c_str(), 1);
      setenv("LOCAL_WORLD_SIZE", std::to_string(o.nproc).c_str(), 1);
      setenv("GROUP_RANK", "0", 1);
      setenv("MASTER_ADDR", o.master_addr.c_str(), 1);
      setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      std::vector<std::string> args{"dus"};
      args.insert(args.end(), command.begin(), command.end());
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv("/proc/self/exe", argv.data());
      std::fprintf(stderr, "launch: exec /proc/self/exe failed: %s\n", std::strerror(errno));
      ::_exit(127);
    }
    ::close(out[1]);
    ::close(err[1]);
    Rank& rk = ranks[static_cast<size_t>(r)];
    rk.pid = pid;
    rk.streams[0] = {out[0], stdout, {}};
    rk.streams[1] = {err[0], stderr, {}};
  }

  int first_failure = -1, exit_code = 0;
  bool terminating = false;
  std::chrono::steady_clock::time_point kill_deadline{};
  auto signal_all = [&](int sig) {
    for (auto& rk : ranks)
      if (rk.running) ::kill(rk.pid, sig);
  };
  auto open_streams = [&] {
    int n = 0;
    for (auto& rk : ranks)
      for (auto& s : rk.streams) n += s.fd >= 0;
    return n;
  };
  auto running = [&] {
    int n = 0;
    for (auto& rk : ranks) n += rk.running;
    return n;
  };

  while (running() > 0 || open_streams() > 0) {
    std::vector<pollfd> fds{{wake[0], POLLIN, 0}};
    std::vector<std::pair<int, int>> who;  // (rank, stream) of fds[i + 1]
    for (int r = 0; r < o.nproc; ++r)
      for (int k = 0; k < 2; ++k)
        if (ranks[static_cast<size_t>(r)].streams[k].fd >= 0) {
          fds.push_back({ranks[static_cast<size_t>(r)].streams[k].fd, POLLIN, 0});
          who.emplace_back(r, k);
        }
    ::poll(fds.data(), fds.size(), 200);
    if (fds[0].revents & POLLIN) {
      char buf[64];
      while (::read(wake[0], buf, sizeof buf) > 0) {
      }
    }
    if (int sig = g_forward_signal.exchange(0)) {
      std::fprintf(stderr, "launch: forwarding %s to every rank\n", strsignal(sig));
      signal_all(sig);
    }
    for (size_t i = 1; i < fds.size(); ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      auto [r, k] = who[i - 1];
      Stream& s = ranks[static_cast<size_t>(r)].streams[k];
      char buf[65536];
      const ssize_t n = ::read(s.fd, buf, sizeof buf);
      if (n > 0) {
        s.pending.append(buf, static_cast<size_t>(n));
        emit_lines(r, s, false);
      } else {
        emit_lines(r, s, true);
        ::close(s.fd);
        s.fd = -1;
      }
    }
    for (int r = 0; r < o.nproc; ++r) {
      Rank& rk = ranks[static_cast<size_t>(r)];
      if (!rk.running) continue;
      int status = 0;
      if (::waitpid(rk.pid, &status, WNOHANG) != rk.pid) continue;
      rk.running = false;
      rk.status = status;
      if (status != 0 && first_failure < 0) {
        first_failure = r;
        exit_code = std::max(1, exit_code_of(status));
        std::fprintf(stderr, "launch: rank %d (pid %d) %s; stopping the other ranks\n", r, rk.pid,
                     describe_status(status).c_str());
        std::fflush(stderr);
        terminating = true;
        kill_deadline = std::chrono::steady_clock::now() +
                        std::chrono::milliseconds(static_cast<int64_t>(o.grace_s * 1000));
        signal_all(SIGTERM);
      }
    }
    if (terminating && std::chrono::steady_clock::now() > kill_deadline && running() > 0) {
      std::fprintf(stderr,
                   "launch: %d rank(s) still running %.0f s after SIGTERM; sending SIGKILL\n",
                   running(), o.grace_s);
      signal_all(SIGKILL);
      terminating = false;
    }
  }
  ::close(wake[0]);
  ::close(wake[1]);
  g_wake_fd = -1;
  if (first_failure >= 0) {
    std::fprintf(stderr, "launch: failed: rank %d %s\n", first_failure,
                 describe_status(ranks[static_cast<size_t>(first_failure)].status).c_str());
    return exit_code;
  }
  std::printf("launch           all %d ranks exited 0\n", o.nproc);
  return 0;
}

}  // namespace dus::dist
