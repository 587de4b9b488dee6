// dus launch: local ranks of `dus COMMAND` with torchrun's environment
// (train/distributed/launch.h).
#include "cli/commands.h"
#include "train/distributed/launch.h"

namespace dus {

namespace {

int run_launch(const ParsedArgs& args) {
  dist::LaunchOptions o;
  o.nproc = static_cast<int>(args.get_int("nproc"));
  o.master_addr = args.get("master-addr");
  o.master_port = static_cast<int>(args.get_int("master-port"));
  o.grace_s = args.get_double("grace");
  return dist::launch_local(o, args.positionals());
}

}  // namespace

Command launch_command() {
  return {"launch",
          [] {
            return ArgParser("launch",
                             "Run a dus command as N local ranks (data parallel), as torchrun "
                             "would: dus launch --nproc 2 -- train RECIPE.")
                .option("nproc", "N", "ranks to start on this host", std::string("1"))
                .option("master-addr", "HOST", "address of rank 0's rendezvous store",
                        std::string("127.0.0.1"))
                .option("master-port", "PORT", "its port; 0 picks a free one", std::string("0"))
                .option("grace", "SECONDS",
                        "after a rank fails: SIGTERM the others, SIGKILL after this long",
                        std::string("30"))
                .positional("COMMAND", "the dus command and its arguments, after --", -1)
                .passthrough();
          },
          run_launch};
}

}  // namespace dus
