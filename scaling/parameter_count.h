// Parameter accounting of a plan from the config alone (no weights): what `dus inspect` and
// the trainer print before committing memory to a scaled model. Only the number of decoder
// layers changes; embeddings, final norm and lm_head are carried over once.
// Mistral-7B-v0.1 (32 layers, 218,112,000 per layer, 131,072,000 per embedding matrix, untied)
// with dus(32, 8): 48 x 218,112,000 + 2 x 131,072,000 + 4,096 = 10,731,524,096 (SOLAR 10.7B).
#pragma once

#include <cstdint>

#include "model/model_config.h"
#include "scaling/layer_plan.h"

namespace dus {

/// The base config with num_hidden_layers = the plan's depth (and a per-layer "layer_types"
/// list, when the config has one, reordered to follow the plan). Nothing else changes. Throws
/// when the plan was made for a different depth.
ModelConfig scaled_config(const ModelConfig& base, const LayerPlan& plan);

/// Parameters of the model the plan produces.
int64_t scaled_parameter_count(const ModelConfig& base, const LayerPlan& plan);

}  // namespace dus
