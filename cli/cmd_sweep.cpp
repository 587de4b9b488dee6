// dus sweep RECIPE --m 0,1,2: the depth sweep with its baselines (experiments/sweep.h).
#include <cstdio>

#include <cstdlib>

#include <fmt/format.h>

#include "cli/commands.h"
#include "core/error.h"
#include "experiments/sweep.h"

namespace dus {

namespace {

std::vector<int64_t> parse_list(const std::string& text, const std::string& flag) {
  std::vector<int64_t> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    const std::string item = text.substr(start, comma - start);
    char* end = nullptr;
    const long long v = std::strtoll(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || v < 0)
      throw Error("--" + flag,
                  "\"" + text + "\" is not a comma-separated list of non-negative integers",
                  "e.g. --" + flag + " 0,1,2");
    for (int64_t seen : out)
      if (seen == v) throw Error("--" + flag, fmt::format("{} is listed twice", v));
    out.push_back(v);
    start = comma + 1;
  }
  return out;
}

int run_sweep_command(const ParsedArgs& args) {
  SweepOptions o;
  o.recipe = args.positionals()[0];
  o.sets = args.all("set");
  o.scratch_sets = args.all("scratch-set");
  o.method = args.get("method");
  const std::string values_flag = o.method == "block_expansion" ? "every" : "m";
  const std::string other_flag = o.method == "block_expansion" ? "m" : "every";
  if (args.has(other_flag))
    throw Error("--" + other_flag, "does not apply to --method " + o.method,
                "dus takes --m (layers dropped per copy), block_expansion takes --every");
  if (!args.has(values_flag))
    throw Error("--" + values_flag, "required with --method " + o.method,
                "e.g. --" + values_flag + " 1,2");
  o.values = parse_list(args.get(values_flag), values_flag);
  if (args.has("budget-tokens")) {
    o.budget_tokens = args.get_int("budget-tokens");
    if (o.budget_tokens <= 0) throw Error("--budget-tokens", "must be positive");
  }
  o.jobs = static_cast<int>(args.get_int("jobs"));
  if (args.has("sweep-dir")) o.dir = args.get("sweep-dir");
  const std::string baselines = args.get("baselines");
  if (baselines != "all" && baselines != "base" && baselines != "scratch" && baselines != "none")
    throw Error("--baselines", "\"" + baselines + "\" is not one of all|base|scratch|none");
  o.baseline_base = baselines == "all" || baselines == "base";
  o.baseline_scratch = baselines == "all" || baselines == "scratch";
  const SweepOutcome outcome = run_sweep(o);
  if (!outcome.complete) return outcome.exit_code;
  // The table and the figure: exactly what `dus report SWEEP_DIR` prints and draws.
  fmt::print("\n");
  const Command report = report_command();
  std::vector<std::string> report_args = {outcome.dir};
  if (args.flag("no-plot")) report_args.push_back("--no-plot");
  try {
    report.run(report.parser().parse(report_args));
  } catch (const Error& e) {
    // Hours of training are not lost to a missing matplotlib: sweep.json is complete.
    fmt::print(stderr, "warning: no plot: {}\n", e.what());
  }
  return outcome.exit_code;
}

}  // namespace

Command sweep_command() {
  return {"sweep",
          [] {
            return ArgParser("sweep",
                             "Sweep the depth of up-scaling (one run per m) against the base "
                             "trained on and scaled sizes trained from scratch, at equal tokens.")
                .positional(
                    "RECIPE",
                    "a recipe whose model.init_from is the base model (e.g. recipes/demo/dus.yaml)")
                .option("m", "LIST", "dus: the m values, e.g. 0,1,2 (one run each)")
                .option("method", "dus|block_expansion", "the up-scaling of the variants",
                        std::string("dus"))
                .option("every", "LIST", "block_expansion: the every values, e.g. 1,2")
                .option("budget-tokens", "N",
                        "training tokens of every run; a whole number of steps [default: the "
                        "recipe's train.steps]")
                .option("jobs", "J",
                        "runs at a time; J > 1 runs child processes with cores / J threads each",
                        std::string("1"))
                .option("sweep-dir", "DIR",
                        "where the runs and sweep.json go [default: runs/sweep-<run.name>]")
                .option("baselines", "all|base|scratch|none", "which baselines to run",
                        std::string("all"))
                .option("set", "SECTION.KEY=VALUE", "override a recipe key in every run",
                        std::nullopt,
                        /*repeatable=*/true)
                .option("scratch-set", "SECTION.KEY=VALUE",
                        "override a key in the from-scratch baselines only (e.g. train.lr)",
                        std::nullopt, /*repeatable=*/true)
                .flag("no-plot", "print the table only, no sweep.png");
          },
          run_sweep_command};
}

}  // namespace dus
