#include "model/hf_checkpoint.h"

#include <torch/types.h>

#include <fmt/ranges.h>

#include <filesystem>
#include <set>

#include <fmt/format.h>

#include "core/error.h"
#include "core/file_util.h"

namespace dus {

c10::ScalarType parse_dtype(const std::string& name, const std::string& where) {
  if (name == "float32" || name == "f32" || name == "fp32") return torch::kFloat32;
  if (name == "bfloat16" || name == "bf16") return torch::kBFloat16;
  if (name == "float16" || name == "f16" || name == "fp16") return torch::kFloat16;
  throw Error(where, "unknown dtype \"" + name + "\"", "use f32, bf16 or f16");
}

std::string dtype_config_name(c10::ScalarType dtype) {
  switch (dtype) {
    case torch::kFloat32: return "float32";
    case torch::kBFloat16: return "bfloat16";
    case torch::kFloat16: return "float16";
    default: return c10::toString(dtype);
  }
}

Transformer load_hf_model(const std::string& dir, const LoadOptions& options) {
  ModelConfig config = ModelConfig::load(dir);
  // Opening validates every shard's header before any memory is spent on the model.
  SafetensorsCheckpoint checkpoint = SafetensorsCheckpoint::open_dir(dir);
  // Built without initialisation: the allocations stay untouched until the weights arrive.
  ModelInit init;
  init.dtype = options.dtype;
  init.device = options.device;
  init.random = false;
  Transformer model(config, init);
  load_weights(model, checkpoint, dir);
  return model;
}

void load_weights(Transformer& model, const SafetensorsCheckpoint& checkpoint,
                  const std::string& source) {
  const ModelConfig& config = model->config();
  auto params = model->named_parameters(/*recurse=*/true);
  std::set<std::string> expected;
  for (const auto& p : params) expected.insert(p.key());

  // Validate everything before touching the model: a bad file must leave it unchanged.
  for (const auto& name : expected) {
    if (!checkpoint.contains(name))
      throw Error(source,
                  fmt::format("missing tensor '{}' required by config.json ({} layers)", name,
                              config.num_hidden_layers),
                  "is config.json from the same model as the safetensors files?");
  }
  for (const auto& name : checkpoint.names()) {
    if (expected.count(name)) continue;
    // Tolerated extras: a saved copy of a tied lm_head, and rotary buffers of old checkpoints.
    if (name == "lm_head.weight" && config.tie_word_embeddings) continue;
    if (name.size() > 9 && name.compare(name.size() - 9, 9, ".inv_freq") == 0) continue;
    throw Error(checkpoint.file_of(name),
                fmt::format("unexpected tensor '{}' for a {} with {} layers", name,
                            config.architecture, config.num_hidden_layers),
                "is config.json from the same model as the safetensors files?");
  }
  for (const auto& p : params) {
    const StTensorEntry& e = checkpoint.entry(p.key());
    std::vector<int64_t> want(p.value().sizes().begin(), p.value().sizes().end());
    if (e.shape != want) {
      throw Error(checkpoint.file_of(p.key()) + ": tensor '" + p.key() + "'",
                  fmt::format("shape [{}] differs from [{}] expected by config.json",
                              fmt::join(e.shape, ", "), fmt::join(want, ", ")));
    }
    if (e.dtype != StDtype::F32 && e.dtype != StDtype::BF16 && e.dtype != StDtype::F16 &&
        e.dtype != StDtype::F64)
      throw Error(checkpoint.file_of(p.key()) + ": tensor '" + p.key() + "'",
                  std::string("dtype ") + st_dtype_name(e.dtype) +
                      " is not a floating-point weight type (expected F32, BF16 or F16)");
  }

  torch::NoGradGuard no_grad;
  for (auto& p : params) {
    at::Tensor src = checkpoint.tensor(p.key());
    at::Tensor& dst = p.value();
    if (src.scalar_type() == dst.scalar_type() && dst.device().is_cpu()) {
      // Zero-copy: adopt the mapped bytes (a private copy-on-write mapping, so training writes
      // never reach the file).
      dst.set_data(src);
    } else {
      dst.set_data(src.to(dst.device(), dst.scalar_type()));
    }
  }
}

NamedTensors hf_tensors(Transformer& model) {
  NamedTensors out;
  for (const auto& p : model->named_parameters(/*recurse=*/true))
    out.emplace_back(p.key(), p.value().detach());
  return out;
}

void save_hf_model(Transformer& model, const std::string& dir, const SaveOptions& options) {
  std::filesystem::create_directories(dir);
  NamedTensors tensors = hf_tensors(model);
  c10::ScalarType dtype = options.dtype;
  if (dtype == c10::ScalarType::Undefined) dtype = tensors.front().second.scalar_type();
  for (auto& nt : tensors) nt.second = nt.second.to(torch::kCPU, dtype);

  ModelConfig config = model->config();
  config.torch_dtype = dtype_config_name(dtype);
  json::Value config_json = config.to_json();
  if (options.extra_config.is_object())
    for (const auto& [k, v] : options.extra_config.as_object()) config_json.set(k, v);

  ShardOptions shard;
  shard.max_shard_bytes = options.max_shard_bytes;
  shard.metadata = options.metadata;
  write_safetensors_sharded(dir, tensors, shard);
  write_file_atomic(dir + "/config.json", json::dump(config_json, 2) + "\n");
}

}  // namespace dus
