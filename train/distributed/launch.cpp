#include "train/distributed/launch.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>

#include <fmt/format.h>

#include "core/error.h"
#include "core/subprocess.h"

namespace dus::dist {

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
  fmt::print("launch           {} ranks of dus {} (MASTER_ADDR={} MASTER_PORT={})\n", o.nproc,
             command[0], o.master_addr, port);
  std::fflush(stdout);

  Supervisor sup;  // from here SIGTERM / SIGINT come back from wait() and are forwarded
  for (int r = 0; r < o.nproc; ++r) {
    ChildSpec spec;
    spec.program = "/proc/self/exe";
    spec.argv = {"dus"};
    spec.argv.insert(spec.argv.end(), command.begin(), command.end());
    spec.env = {{"RANK", std::to_string(r)},
                {"LOCAL_RANK", std::to_string(r)},
                {"WORLD_SIZE", std::to_string(o.nproc)},
                {"LOCAL_WORLD_SIZE", std::to_string(o.nproc)},
                {"GROUP_RANK", "0"},
                {"MASTER_ADDR", o.master_addr},
                {"MASTER_PORT", std::to_string(port)}};
    spec.output = ChildOutput::kPrefixed;
    spec.line_prefix = fmt::format("[rank {}] ", r);
    sup.spawn(spec);  // id == rank
  }

  std::optional<ChildExit> first_failure;
  while (sup.busy()) {
    const SupervisorEvents ev = sup.wait(200);
    if (ev.signal) {
      fmt::print(stderr, "launch: forwarding {} to every rank\n", strsignal(ev.signal));
      sup.signal_all(ev.signal);
    }
    for (const ChildExit& e : ev.exited) {
      if ((e.status == 0 && !e.lost) || first_failure) continue;
      first_failure = e;
      fmt::print(stderr, "launch: rank {} (pid {}) {}; stopping the other ranks\n", e.id, e.pid,
                 describe_exit(e));
      std::fflush(stderr);
      sup.stop_all(o.grace_s);
    }
    if (ev.escalated > 0)
      fmt::print(stderr,
                 "launch: {} rank(s) still running {:.0f} s after SIGTERM; sending SIGKILL\n",
                 ev.escalated, o.grace_s);
  }
  if (first_failure) {
    fmt::print(stderr, "launch: failed: rank {} {}\n", first_failure->id,
               describe_exit(*first_failure));
    return std::max(1, exit_code_of(*first_failure));
  }
  fmt::print("launch           all {} ranks exited 0\n", o.nproc);
  return 0;
}

}  // namespace dus::dist
