#include "scaling/parameter_count.h"

#include <fmt/format.h>

#include "core/error.h"
#include "scaling/provenance.h"

namespace dus {

ModelConfig scaled_config(const ModelConfig& base, const LayerPlan& plan) {
  if (plan.base_layers != base.num_hidden_layers)
    throw Error(
        "layer plan",
        fmt::format("the plan is for {} base layers but the model has num_hidden_layers = {}",
                    plan.base_layers, base.num_hidden_layers));
  ModelConfig c = base;
  c.num_hidden_layers = plan.scaled_layers();
  // Per-layer lists (transformers' "layer_types") must follow the layers they describe.
  if (const json::Value* types = c.raw.find("layer_types");
      types && types->is_array() &&
      static_cast<int64_t>(types->as_array().size()) == base.num_hidden_layers) {
    json::Array reordered;
    for (const auto& o : plan.layers)
      reordered.push_back(types->as_array()[static_cast<size_t>(o.base_layer)]);
    c.raw.set("layer_types", json::Value(std::move(reordered)));
  }
  // A base that was itself scaled carries provenance relative to its own base; the new block
  // is written by whoever saves the scaled model.
  c.raw.erase(kProvenanceKey);
  return c;
}

int64_t scaled_parameter_count(const ModelConfig& base, const LayerPlan& plan) {
  return scaled_config(base, plan).parameter_count();
}

}  // namespace dus
