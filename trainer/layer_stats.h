// Per-decoder-layer diagnostics of a Transformer, for the seam diagnostics of the recovery
// tracker: gradient norms, update ratios and hidden-state cosines. Each returns one number per
// decoder layer (embeddings, final norm and lm_head are not layers here), as a double computed
// with fp32 (or wider) accumulation whatever the parameter dtype, and synchronises the device
// once per call, so it belongs at evaluation steps, not in the hot loop.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

namespace dus {

class TransformerImpl;

/// L2 norm over all gradients of each decoder layer's parameters (a parameter without a
/// gradient counts as zero). Call after backward, before the optimizer zeroes the grads.
std::vector<double> layer_grad_norms(TransformerImpl& model);

/// Copies of every decoder layer's parameters, [layer][parameter], on their own device and in
/// their dtype: costs as much memory as the layers themselves, so take it only on the steps
/// whose update ratio is wanted (right before optimizer.step()).
using LayerSnapshot = std::vector<std::vector<at::Tensor>>;
LayerSnapshot snapshot_layers(TransformerImpl& model);

/// ||after - before|| / ||before|| per layer, norms over all the layer's parameters together
/// (0 for an all-zero layer that did not move). The snapshots must have the same structure.
std::vector<double> layer_update_ratios(const LayerSnapshot& before, const LayerSnapshot& after);

/// Runs the decoder layers one by one on input_ids_BT (as TransformerImpl::hidden_states does,
/// without grad) and returns, per layer, the mean over the B*T tokens of cosine(input hidden
/// state, output hidden state), computed in float64: a layer that passes its input through
/// unchanged (o_proj and down_proj zero) gives exactly 1.
std::vector<double> layer_hidden_cosines(TransformerImpl& model, const at::Tensor& input_ids_BT);

}  // namespace dus
