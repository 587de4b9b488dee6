// A checkpoint's state.json as one checked struct: everything scalar a resume needs, written by
// to_json and read back by from_json, which checks every key's presence, type and range and
// names the key (and the file) in its error: a damaged state.json is an error, never a crash,
// and open_latest_checkpoint then falls back to the previous checkpoint.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/json.h"

namespace dus {

struct TrainState {
  int64_t step = 0;                   ///< optimizer steps completed (the checkpoint's name)
  int64_t optimizer_steps = 0;        ///< AdamW's step count (bias correction); equals step
  int64_t tokens = 0;                 ///< training tokens consumed
  json::Value loader;                 ///< the data loader's position (LoaderState::to_json)
  int64_t nonfinite_total = 0;        ///< skipped steps in all
  int64_t nonfinite_in_row = 0;       ///< skipped steps in a row at the end
  int64_t last_eval_step = -1;        ///< step of the last evaluation (-1: none)
  json::Value recovery;               ///< RecoveryTracker::to_json
  double lr = 0;                      ///< learning rate of the last step (for readers)
  int64_t world_size = 1;             ///< ranks that wrote it
  std::string strategy = "ddp";       ///< ddp | zero1 | zero2
  std::string recipe_sha256;          ///< of the resolved recipe: resume refuses another recipe
  std::string precision;              ///< fp32 | bf16
  json::Value zero1;                  ///< the sharded layout's manifest (null: unsharded)
  int64_t loss_spikes_total = 0;      ///< updates the loss spike guard skipped
  std::vector<double> recent_losses;  ///< the spike guard's window, oldest first

  json::Value to_json() const;
  /// `where` names the file in errors ("RUN/checkpoints/step_00000012/state.json").
  static TrainState from_json(const json::Value& value, const std::string& where);
};

}  // namespace dus
