// Recipes: YAML parsed once into the small typed options struct of each component. `extends:`
// inherits from another recipe (deep merge, this file wins), `--set section.key=value`
// overrides (repeatable). Unknown keys, wrong types and out-of-range values are errors naming
// the key (and the nearest valid key for a typo), raised before any work starts. Relative
// paths in a recipe are relative to the working directory, like every command-line path.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/json.h"
#include "data/packed_loader.h"
#include "data/task_file.h"
#include "scaling/layer_plan.h"
#include "train/lr_schedule.h"
#include "train/optimizer_options.h"

namespace dus {

struct RunOptions {
  std::string name = "run";  ///< run name (logs, TensorBoard)
  std::string dir;           ///< run directory; default runs/<name>
  uint64_t seed = 1234;      ///< model init and data order
  int threads = 0;           ///< intra-op CPU threads; 0 = torch's default (all cores)
};

struct ModelSourceOptions {
  /// A Hugging Face model directory to continue from (and scale), or empty.
  std::string init_from;
  /// A config.json to train from scratch when init_from is empty.
  std::string config;
  /// The depth up-scaling plan applied to init_from; none = continue the base as is.
  std::optional<PlanRequest> scaling;
};

/// A source is a `dus prepare` directory or a Megatron indexed dataset: a path ending in .bin
/// or .idx, or a PREFIX (not a directory) where PREFIX.idx exists. A Megatron source needs
/// data.tokenizer (its vocabulary bounds the ids; its BOS/EOS ids are used for packing) and
/// is read whole, for train or val alike. Map form: {path, weight, eos}; eos: add (default,
/// the packer appends EOS) or data (the documents already end with EOS, as with Megatron's
/// preprocess_data.py --append-eod).
struct DataRecipe {
  std::vector<DataSource> train;  ///< training sources, with mixture weights
  /// Held-out sources: a prepared dataset's val split, a Megatron pair whole. Empty: the val
  /// splits of the prepared train sources (Megatron train sources add none).
  std::vector<DataSource> val;
  std::string tokenizer;         ///< tokenizer.model; its sha256 must match the datasets'
  int64_t seq_len = 256;         ///< tokens per sequence
  std::string bos = "document";  ///< document | none
};

struct TrainOptions {
  int64_t steps = 100;                    ///< optimizer steps
  int64_t global_batch = 8;               ///< sequences per step over all ranks (from tokens)
  int64_t micro_batch = 8;                ///< sequences per forward/backward per rank
  double grad_clip = 1.0;                 ///< global L2 norm; 0 disables
  std::string precision = "auto";         ///< auto | fp32 | bf16
  bool activation_checkpointing = false;  ///< recompute each decoder layer in backward
  /// fp32 | compute (auto resolved by the strategy): the gradients' accumulation dtype
  std::string grad_accumulation = "fp32";
  int64_t max_nonfinite_in_row = 5;  ///< this many skipped steps in a row stop the run
  /// Loss spike guard: skip the update of a step whose loss exceeds this many times the mean
  /// of the last loss_spike_window updated steps (0: off).
  double loss_spike_factor = 0;
  int64_t loss_spike_window = 20;
  /// Steps whose batch is read and discarded, no update (a known bad data range), as inclusive
  /// 1-based [first, last] ranges.
  std::vector<std::pair<int64_t, int64_t>> skip_batches;
  bool skips_batch_of(int64_t step) const {
    for (const auto& [first, last] : skip_batches)
      if (step >= first && step <= last) return true;
    return false;
  }
  ScheduleOptions schedule;
  OptimizerOptions optimizer;
};

struct EvalOptions {
  int64_t every = 50;      ///< steps between evaluations (and at the end)
  int64_t sequences = 32;  ///< held-out sequences per evaluation (the same ones every time)
  int64_t batch = 8;       ///< sequences per evaluation forward
  /// Multiple-choice task files scored at the start (base and scaled model) and at
  /// evaluations (train/task_recovery.h); need data.tokenizer.
  std::vector<TaskSource> tasks;
  /// Steps between task evaluations, a multiple of `every`; 0: at every evaluation. The last
  /// step is always evaluated.
  int64_t tasks_every = 0;
  bool tasks_due(int64_t step, int64_t last_step) const {
    if (tasks.empty()) return false;
    return tasks_every == 0 || step % tasks_every == 0 || step == last_step;
  }
};

struct CheckpointOptions {
  int64_t every = 100;           ///< steps between checkpoints (and at the end)
  int64_t keep = 3;              ///< newest complete checkpoints kept
  int64_t max_failed_saves = 3;  ///< saves failing in a row (disk full...) before the run stops
};

struct LogOptions {
  int64_t every = 10;       ///< steps between console lines
  bool tensorboard = true;  ///< write TensorBoard event files
};

/// Data parallelism over the ranks torchrun / dus launch / SLURM start (train/distributed).
struct DistributedRecipe {
  std::string strategy = "ddp";  ///< ddp | zero1 (sharded fp32 masters and Adam moments) | zero2
                                 ///< (also the fp32 gradients)
  double bucket_mb = 25;         ///< ddp: MiB of gradients per all-reduce bucket
  double timeout_s = 300;        ///< seconds a collective (or the rendezvous) may take
};

struct Recipe {
  RunOptions run;
  ModelSourceOptions model;
  DataRecipe data;
  TrainOptions train;
  EvalOptions eval;
  CheckpointOptions checkpoint;
  LogOptions log;
  DistributedRecipe distributed;
  std::string kernels = "auto";  ///< auto | on | off (fused CUDA kernels / CPU loops)
  std::string resume;            ///< a run directory to resume (exclusive with init_from)

  std::string source;    ///< the recipe file
  json::Value resolved;  ///< the merged tree after extends and --set, as validated
  std::string sha256;    ///< of the resolved tree; checkpoints record it

  /// The resolved recipe as YAML (written into the run directory and each checkpoint).
  std::string to_yaml() const;
};

/// Loads `path`, applies `extends` and the `--set` overrides, validates everything.
Recipe load_recipe(const std::string& path, const std::vector<std::string>& overrides = {});
/// Validates an already merged tree (a checkpoint's saved recipe). `source` names it.
Recipe recipe_from_tree(const json::Value& tree, const std::string& source);
/// Parses YAML text into the JSON-like tree recipes use (plain scalars typed as YAML 1.2's
/// core schema: null, bool, int, float, else string). Errors name `source` and the line.
json::Value parse_yaml(const std::string& text, const std::string& source);
/// Emits a tree as block YAML.
std::string to_yaml(const json::Value& tree);

/// One line per recipe key: "section.key  type  default  description", for the README.
std::vector<std::string> recipe_reference();

}  // namespace dus
