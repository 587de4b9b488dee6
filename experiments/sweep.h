// `dus sweep`: how deep to cut. From one base model (the recipe's model.init_from) and one
// corpus, one continued-pretraining run per up-scaling variant (dus m = 0, 1, 2, ... or block
// expansion every = k), all at the same token budget, next to two honest baselines on the
// same tokens: the base model itself trained on (does up-scaling beat training the base
// longer?) and a model of each scaled size trained from random initialisation (does the
// scaled model owe anything to the base's weights?). Each run has its own run directory under
// the sweep directory; a killed sweep continues where it stopped (finished runs are skipped,
// an interrupted one resumes from its newest checkpoint). The result is SWEEP/sweep.json,
// printed as a table by `dus sweep` and `dus report SWEEP`, plotted by scripts/plot_sweep.py.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/json.h"
#include "model/model_config.h"

namespace dus {

inline constexpr const char* kSweepFile = "sweep.json";

struct SweepOptions {
  std::string recipe;             ///< the recipe of every run; its model.init_from is the base
  std::vector<std::string> sets;  ///< --set overrides applied to every run
  std::vector<std::string> scratch_sets;  ///< further overrides for the from-scratch baselines only
  std::string method = "dus";             ///< dus | block_expansion
  std::vector<int64_t> values;   ///< dus: the m values; block_expansion: the `every` values
  int64_t budget_tokens = 0;     ///< training tokens of every run; 0 = recipe's train.steps
  int jobs = 1;                  ///< runs at a time (> 1: child processes, threads split)
  std::string dir;               ///< the sweep directory; default runs/sweep-<run.name>
  bool baseline_base = true;     ///< (a) the base model continued for the same budget
  bool baseline_scratch = true;  ///< (b) each scaled size trained from random init
};

/// One run of the sweep.
struct SweepVariant {
  std::string
      name;  ///< run directory name: dus-m1, blockexp-every2, baseline-base, baseline-scratch-m1
  std::string kind;                 ///< scaled | base | scratch
  std::string method;               ///< dus | block_expansion | none
  std::optional<int64_t> m, every;  ///< the scaling parameter (a scratch baseline: of its size)
  std::string run_dir;
  std::vector<std::string> overrides;  ///< --set list that makes the sweep's recipe this run
  ModelConfig config;                  ///< the model it trains (layers, parameters, FLOPs)
};

struct SweepPlan {
  std::string dir;
  std::string base;             ///< the base model directory (model.init_from)
  int64_t tokens_per_step = 0;  ///< global batch x seq_len
  int64_t steps = 0;            ///< train.steps of every run = budget / tokens_per_step
  int64_t budget_tokens = 0;
  int64_t seq_len = 0;
  std::string identity;                ///< sha256 of what makes two invocations the same sweep
  std::vector<SweepVariant> variants;  ///< in run order: base baseline, variants, scratch baselines
};

/// Validates the options and every run's recipe (errors before any work); writes nothing.
SweepPlan plan_sweep(const SweepOptions& options);

/// What a sweep invocation ended with.
struct SweepOutcome {
  int exit_code = 0;      ///< 0 when every run it started finished
  bool complete = false;  ///< sweep.json holds every run of the plan
  std::string dir;        ///< the sweep directory
};

/// Runs (or continues) the sweep and writes sweep.json after every finished run.
SweepOutcome run_sweep(const SweepOptions& options);

/// sweep.json from the run directories (finished runs only; "complete" says whether all are).
json::Value collect_sweep(const SweepPlan& plan);

/// The table `dus sweep` ends with and `dus report SWEEP` prints, from a sweep.json.
std::string sweep_table(const json::Value& sweep);

}  // namespace dus
