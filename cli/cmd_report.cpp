// dus report RUN_DIR: the recovery summary of a run, and its plot (scripts/plot_recovery.py,
// run with the set-up venv's Python: matplotlib is a tool of the project, not of `dus`).
// dus report SWEEP_DIR (a `dus sweep` directory, with sweep.json): the sweep's table, and its
// plot (scripts/plot_sweep.py).
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include <fmt/format.h>

#include "cli/commands.h"
#include "core/error.h"
#include "core/json.h"
#include "experiments/sweep.h"
#include "train/recovery_tracker.h"
#include "train/train_loop.h"

namespace dus {

namespace {

std::string default_python() {
  if (const char* p = std::getenv("DUS_PYTHON")) return p;
  const char* cache = std::getenv("XDG_CACHE_HOME");
  const char* home = std::getenv("HOME");
  std::string root = cache ? std::string(cache) : std::string(home ? home : ".") + "/.cache";
  return root + "/dus-trainer/venv/bin/python";
}

std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

int run_report(const ParsedArgs& args) {
  namespace fs = std::filesystem;
  const std::string dir = args.positionals()[0];
  const std::string summary_path = dir + "/" + kRecoveryFile;
  const bool sweep = fs::exists(dir + "/" + kSweepFile);
  if (sweep) {
    fmt::print("{}", sweep_table(json::parse_file(dir + "/" + kSweepFile)));
  } else if (!fs::exists(dir + "/" + kMetricsFile)) {
    throw Error(dir, "not a run directory (no metrics.jsonl)", "pass the --run-dir of a dus train run");
  } else if (fs::exists(summary_path)) {
    fmt::print("run              {}\n{}", dir,
               RecoveryTracker::summary_text(json::parse_file(summary_path)));
  } else {
    fmt::print("run              {} (no recovery.json yet: the run has not finished)\n", dir);
  }
  if (args.flag("no-plot")) return 0;
  const std::string out = args.get_or("out", dir + (sweep ? "/sweep.png" : "/recovery.png"));
  const std::string script = args.get_or(
      "plot-script", std::string(DUS_SOURCE_DIR) + (sweep ? "/scripts/plot_sweep.py" : "/scripts/plot_recovery.py"));
  const std::string python = args.get_or("python", default_python());
  if (!fs::exists(script)) throw Error(script, "plot script not found", "pass --plot-script");
  if (!fs::exists(python)) throw Error(python, "Python not found", "run scripts/setup.sh, or pass --python");
  const std::string cmd = quote(python) + " " + quote(script) + " " + quote(dir) + " --out " + quote(out);
  std::fflush(stdout);  // the script's output comes after ours
  int rc = std::system(cmd.c_str());
  if (rc != 0)
    throw Error("dus report", fmt::format("the plot script failed (exit {})", WEXITSTATUS(rc)));
  fmt::print("plot             {}\n", out);
  return 0;
}

}  // namespace

Command report_command() {
  return {"report",
          [] {
            return ArgParser("report", "Print a run's recovery summary (base_loss, scaled_loss_0, milestones) and plot it.")
                .positional("RUN_DIR", "the run directory of a dus train run, or a dus sweep directory (its table)")
                .option("out", "FILE.png", "where the plot goes [default: RUN_DIR/recovery.png, a sweep's sweep.png]")
                .flag("no-plot", "print the summary only")
                .option("python", "PY", "Python with matplotlib [default: the set-up venv's]")
                .option("plot-script", "FILE", "the plotting script [default: scripts/plot_recovery.py, a sweep's plot_sweep.py]");
          },
          run_report};
}

}  // namespace dus
