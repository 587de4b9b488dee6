#include "scaling/block_expansion.h"

#include <torch/types.h>

#include <fmt/format.h>

#include "core/error.h"

namespace dus {

LayerPlan block_expansion_plan(int64_t n, int64_t every) {
  if (n < 1)
    throw Error("layer plan", fmt::format("the base model has {} layers (expected >= 1)", n));
  if (every < 1 || every > n)
    throw Error("layer plan",
                fmt::format("block expansion every = {} is outside [1, {}] (expected a layer count "
                            "within the base's depth)",
                            every, n),
                "--every K inserts an identity copy after every K-th base layer");
  LayerPlan plan;
  plan.method = PlanMethod::kBlockExpansion;
  plan.base_layers = n;
  plan.every = every;
  for (int64_t b = 0; b < n; ++b) {
    plan.layers.push_back({1, b, false});
    if ((b + 1) % every == 0) plan.layers.push_back({2, b, true});
  }
  return plan;
}

void make_identity(DecoderLayer& layer) {
  torch::NoGradGuard no_grad;
  layer->self_attn->o_proj->weight.zero_();
  layer->mlp->down_proj->weight.zero_();
}

}  // namespace dus
