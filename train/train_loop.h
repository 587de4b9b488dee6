// The training job of `dus train` / `dus resume` on one process (CPU or one GPU): build or
// load the model (measuring base_loss, scaling, measuring scaled_loss_0), then the loop of
// forward/backward/AdamW with evaluation, recovery tracking, logs and atomic checkpoints.
#pragma once

#include <string>

#include "train/recipe.h"

namespace dus {

struct TrainJob {
  Recipe recipe;
  /// Continue the run in recipe.run.dir from its newest valid checkpoint.
  bool resume = false;
};

/// Runs the job to the end (or to SIGTERM/SIGINT, which checkpoint and return 0). Returns the
/// process exit code; bad input throws dus::Error before any work.
int run_training(const TrainJob& job);

/// The run directory's metrics as the README documents them, for tests and `dus report`.
inline constexpr const char* kMetricsFile = "metrics.jsonl";
inline constexpr const char* kRecoveryFile = "recovery.json";

}  // namespace dus
