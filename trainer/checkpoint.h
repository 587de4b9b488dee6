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
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <string>
#include <vector>

#include "model/json.h"
#include "model/safetensors.h"

namespace dus {

struct CheckpointContents {
  int64_t step = 0;                ///< optimizer steps completed
  json::Value state;               ///< everything scalar (state.json)
  json::Value config;              ///< config.json of the model
  std::string recipe_yaml;         ///< resolved recipe
  NamedTensors model;              ///< fp32 master weights, Hugging Face names
  NamedTensors optimizer;          ///< moments and RNG state
};

/// Writes RUN/checkpoints/step_N atomically, points `latest` at it, removes older ones beyond
/// `keep`. Returns the directory written.
std::string save_checkpoint(const std::string& run_dir, const CheckpointContents& contents, int64_t keep);

struct LoadedCheckpoint {
  std::string dir;
  int64_t step = 0;
  json::Value state;
  json::Value config;
  SafetensorsFile model;      ///< mapped; tensors by Hugging Face name
  SafetensorsFile optimizer;  ///< mapped
};

/// Opens and validates one checkpoint directory; throws dus::Error naming the file at fault.
LoadedCheckpoint open_checkpoint(const std::string& dir);

/// The newest complete checkpoint of a run: `latest` if it validates, else the newest older
/// one that does (printing a warning that names what was wrong). nullopt when there is none.
std::optional<LoadedCheckpoint> open_latest_checkpoint(const std::string& run_dir);

/// Complete checkpoint directories of a run, oldest first.
std::vector<std::string> list_checkpoints(const std::string& run_dir);

}  // namespace dus
