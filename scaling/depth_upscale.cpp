#include "scaling/depth_upscale.h"

#include <torch/types.h>

#include <string>

#include <fmt/format.h>

#include "core/error.h"
#include "scaling/block_expansion.h"
#include "scaling/parameter_count.h"

namespace dus {

namespace {

const std::string kLayersPrefix = "model.layers.";

// "model.layers.24.mlp.up_proj.weight" -> the same name in the base model, following the plan.
std::string base_name(const std::string& name, const LayerPlan& plan) {
  if (name.compare(0, kLayersPrefix.size(), kLayersPrefix) != 0) return name;
  size_t dot = name.find('.', kLayersPrefix.size());
  int64_t scaled = std::stoll(name.substr(kLayersPrefix.size(), dot - kLayersPrefix.size()));
  int64_t base = plan.layers[static_cast<size_t>(scaled)].base_layer;
  return kLayersPrefix + std::to_string(base) + name.substr(dot);
}

}  // namespace

ScaledModel apply_plan(Transformer& base, const LayerPlan& plan) {
  if (plan.base_layers != base->num_layers())
    throw Error("apply_plan", fmt::format("the plan {} is for {} base layers, the model has {}",
                                          plan.describe(), plan.base_layers, base->num_layers()));
  const torch::Tensor& any = base->model->embed_tokens->weight;
  ModelInit init;
  init.dtype = any.scalar_type();
  init.device = any.device();
  init.random = false;  // untouched allocations: only the copies below make them resident
  Transformer scaled(scaled_config(base->config(), plan), init);

  auto source = base->named_parameters(/*recurse=*/true);
  torch::NoGradGuard no_grad;
  for (auto& p : scaled->named_parameters(/*recurse=*/true)) {
    const std::string from = base_name(p.key(), plan);
    const torch::Tensor* src = source.find(from);
    if (!src) throw Error("apply_plan", "base model has no parameter '" + from + "'");
    // copy_ into the new allocation: an independent copy, written once, never shared.
    p.value().copy_(*src);
  }
  for (int64_t i = 0; i < plan.scaled_layers(); ++i) {
    if (!plan.layers[static_cast<size_t>(i)].zero_output) continue;
    DecoderLayer layer = scaled->layer(i);
    make_identity(layer);
  }
  scaled->train(base->is_training());
  return {scaled, Provenance{plan}};
}

int64_t parameter_bytes(Transformer& model) {
  int64_t bytes = 0;
  for (const auto& p : model->parameters()) bytes += static_cast<int64_t>(p.nbytes());
  return bytes;
}

}  // namespace dus
