// `dus`: the DUS Trainer command line. Everything lives in the commands (cli/cmd_*.cpp).
#include <csignal>
#include <cstdio>

#include "cli/commands.h"

int main(int argc, char** argv) {
  // Line-buffered even when stdout is a file or a pipe (SLURM logs, `> log`): each line of
  // progress is visible when it happens, not at the next flush minutes later.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  // A file-size limit (ulimit -f) makes a write fail with EFBIG, which a checkpoint save
  // survives, instead of killing the process.
  std::signal(SIGXFSZ, SIG_IGN);
  return dus::run_cli(argc, argv);
}
