// `dus launch --nproc N -- COMMAND ...`: N local ranks of this executable, each with the
// environment torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR,
// MASTER_PORT). Each rank's stdout and stderr lines come out prefixed "[rank i] ". SIGTERM and
// SIGINT are forwarded to every rank (which checkpoint and exit). When a rank fails, the
// launcher says which and how, sends SIGTERM to the others, SIGKILL after a grace period,
// and exits non-zero.
#pragma once

#include <string>
#include <vector>

namespace dus::dist {

struct LaunchOptions {
  int nproc = 1;                          ///< ranks to start on this host
  std::string master_addr = "127.0.0.1";  ///< where rank 0 hosts the TCPStore
  int master_port = 0;                    ///< 0: a free port chosen now
  double grace_s = 30;                    ///< seconds between SIGTERM and SIGKILL of survivors
};

/// Runs `command` (the arguments after `dus`) as nproc ranks; returns the exit code: 0 when
/// every rank exited 0, else the first failing rank's code (128 + signal when killed).
int launch_local(const LaunchOptions& options, const std::vector<std::string>& command);

/// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it back).
int pick_free_port();

}  // namespace dus::dist
