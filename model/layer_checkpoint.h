// Activation checkpointing of one decoder layer: the forward keeps only the layer's input; the
// backward runs the layer again with autograd on and differentiates that. Trades one extra
// layer forward for not holding the layer's activations (attention, MLP intermediates) until
// backward. Exact: no randomness in a layer, so the recomputation equals the original.
#pragma once

#include "model/transformer.h"

namespace dus {

/// layer(x_BTD, cos, sin) with activations recomputed in backward.
torch::Tensor checkpointed_layer_forward(DecoderLayerImpl& layer, const torch::Tensor& x_BTD,
                                         const torch::Tensor& cos_Td, const torch::Tensor& sin_Td);

}  // namespace dus
