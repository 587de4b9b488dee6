// Hugging Face model directories in and out: config.json + safetensors (single or sharded).
// Loading checks every tensor against the config (missing, unexpected, wrong shape) and names
// the tensor and file on error.
#pragma once

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <map>
#include <string>

#include "model/safetensors.h"
#include "model/transformer.h"

namespace dus {

struct LoadOptions {
  /// Compute/storage dtype of the parameters (converted from the file's dtype when different).
  c10::ScalarType dtype = c10::ScalarType::Float;
  /// Where the parameters live.
  c10::Device device = c10::Device(c10::DeviceType::CPU);
};

/// Reads DIR/config.json and the weights; returns a model ready to run.
Transformer load_hf_model(const std::string& dir, const LoadOptions& options = {});

/// Copies the checkpoint's tensors into `model` by name, validating names and shapes first
/// (nothing is modified when validation fails). `source` names the directory in errors.
void load_weights(Transformer& model, const SafetensorsCheckpoint& checkpoint,
                  const std::string& source);

/// The model's tensors under their Hugging Face names, in module order (the tied lm_head is
/// omitted, as transformers omits it).
NamedTensors hf_tensors(Transformer& model);

struct SaveOptions {
  /// Save dtype; kUndefined keeps the parameters' dtype.
  c10::ScalarType dtype = c10::ScalarType::Undefined;
  /// Shard size limit in bytes.
  int64_t max_shard_bytes = int64_t{5} * 1000 * 1000 * 1000;
  /// Extra safetensors __metadata__ (provenance and the like).
  std::map<std::string, std::string> metadata;
  /// Extra top-level keys merged into config.json (e.g. the "dus" provenance block).
  json::Value extra_config;
};

/// Writes config.json and the (sharded) safetensors into `dir`, creating it. Deterministic:
/// saving the same model twice gives identical bytes.
void save_hf_model(Transformer& model, const std::string& dir, const SaveOptions& options = {});

/// Parses "float32"/"f32"/"fp32", "bfloat16"/"bf16", "float16"/"f16"/"fp16".
c10::ScalarType parse_dtype(const std::string& name, const std::string& where);
/// "float32", "bfloat16", "float16": the spelling config.json uses.
std::string dtype_config_name(c10::ScalarType dtype);

}  // namespace dus
