// Training checkpoints: one directory per step under RUN/checkpoints, written to NAME.tmp,
// fsynced and renamed, then `latest` updated; the newest `keep` are kept. A checkpoint is also
// a Hugging Face model directory (config.json + model.safetensors with the fp32 master
// weights), so `dus export` and transformers can read it directly.
//
//   step_00000012/config.json         model config (with the "dus" provenance block)
//   step_00000012/model.safetensors   fp32 master weights under Hugging Face names
//   step_00000012/optimizer.safetensors  exp_avg.NAME, exp_avg_sq.NAME, rng.cpu
//   step_00000012/state.json          step, tokens, data position, schedule, recovery, ...
//   step_00000012/recipe.yaml         the resolved recipe
//
// A ZeRO-1 run (train/distributed/sharded_optimizer.h) writes, instead of model.safetensors and
// optimizer.safetensors, one file per rank: zero1_shard_RRRRR.safetensors holding the flat
// ranges [begin, end) of "master", "exp_avg" and "exp_avg_sq" (the parameters flattened and
// concatenated in model order); rank 0's also holds rng.cpu. state.json's "zero1" manifest
// lists the parameters (name, shape, offset) and the shards (file, begin, end); it is parsed and
// checked by train/zero1_manifest.h. Any world size reads any checkpoint through
// checkpoint_tensor / checkpoint_flat_range (re-sharding).
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <string>
#include <vector>

#include "core/json.h"
#include "model/safetensors.h"
#include "train/train_state.h"
#include "train/zero1_manifest.h"

namespace dus {

struct CheckpointContents {
  int64_t step = 0;         ///< optimizer steps completed
  json::Value state;        ///< everything scalar (state.json)
  json::Value config;       ///< config.json of the model
  std::string recipe_yaml;  ///< resolved recipe
  NamedTensors model;       ///< fp32 master weights, Hugging Face names
  NamedTensors optimizer;   ///< moments and RNG state
};

/// Writes RUN/checkpoints/step_N atomically, points `latest` at it, removes older ones beyond
/// `keep`. Returns the directory written.
std::string save_checkpoint(const std::string& run_dir, const CheckpointContents& contents,
                            int64_t keep);

/// Writes RUN/checkpoints/step_N.tmp (emptied) and returns its path: the first half of a save
/// whose tensors several processes write (each rank its shard), then commit_checkpoint.
std::string begin_checkpoint(const std::string& run_dir, int64_t step);
/// The second half: writes contents (model/optimizer files only when non-empty), state.json
/// last, renames step_N.tmp to step_N, updates `latest`, prunes beyond `keep`.
std::string commit_checkpoint(const std::string& run_dir, const CheckpointContents& contents,
                              int64_t keep);
/// After a save failed (disk full, permission denied, I/O error): removes what it left in
/// step_N.tmp. Never touches a complete checkpoint; never throws.
void abandon_checkpoint(const std::string& run_dir, int64_t step);

/// "step_00000012": the directory name of a step's checkpoint.
std::string checkpoint_dir_name(int64_t step);

struct LoadedCheckpoint {
  std::string dir;
  int64_t step = 0;
  json::Value state;
  TrainState train;  ///< state.json, checked key by key
  json::Value config;
  SafetensorsFile model;                ///< mapped; tensors by Hugging Face name (unsharded only)
  SafetensorsFile optimizer;            ///< mapped (unsharded only)
  bool sharded = false;                 ///< written by ZeRO-1: the tensors are in `shards`
  FlatLayout layout;                    ///< sharded: the flat layout
  std::vector<SafetensorsFile> shards;  ///< sharded: one file per saving rank
  std::vector<std::pair<int64_t, int64_t>> ranges;  ///< sharded: [begin, end) of each shard
  /// rng.cpu when the checkpoint has it.
  std::optional<at::Tensor> rng_state() const;
};

/// Parameter `name` of kind "master" (fp32 weight), "exp_avg" or "exp_avg_sq", from either
/// layout. Throws dus::Error naming the checkpoint when absent.
at::Tensor checkpoint_tensor(const LoadedCheckpoint& ck, const std::string& kind,
                             const std::string& name);
/// Elements [lo, hi) of kind in the flat space of `layout` (the current model's order), from
/// either layout. Elements past the layout's end (padding) read as 0.
at::Tensor checkpoint_flat_range(const LoadedCheckpoint& ck, const std::string& kind,
                                 const FlatLayout& layout, int64_t lo, int64_t hi);

/// Opens and validates one checkpoint directory; throws dus::Error naming the file at fault.
LoadedCheckpoint open_checkpoint(const std::string& dir);

/// The newest checkpoint of a run that validates, trying step directories from the newest down
/// (printing a warning that names what was wrong with each one skipped). nullopt when there is
/// none.
std::optional<LoadedCheckpoint> open_latest_checkpoint(const std::string& run_dir);

/// Complete checkpoint directories of a run, oldest first.
std::vector<std::string> list_checkpoints(const std::string& run_dir);

}  // namespace dus
