// Block expansion (LLaMA-Pro, Wu et al. 2024): a function-preserving way to deepen a model.
// After every k-th base layer a copy of it is inserted whose attention output projection
// (o_proj) and MLP down projection (down_proj) are zero. A pre-norm residual block with both
// zeroed adds exactly 0 to the residual stream (h = x + 0, out = h + 0), so the expanded model
// computes what the base computed, bit for bit, until training moves those weights.
#pragma once

#include <cstdint>

#include "model/transformer.h"
#include "scaling/layer_plan.h"

namespace dus {

/// After every `every`-th base layer (base layers every-1, 2*every-1, ...) a copy of it with
/// zeroed output projections (copy 2, zero_output); floor(n / every) layers are added.
/// Errors: n < 1, every < 1 or every > n.
LayerPlan block_expansion_plan(int64_t n, int64_t every);

/// Zeroes o_proj and down_proj of `layer` in place: the layer becomes the identity.
void make_identity(DecoderLayer& layer);

}  // namespace dus
