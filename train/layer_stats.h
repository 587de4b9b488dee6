// Per-decoder-layer diagnostics of a Transformer, for the seam diagnostics of the recovery
// tracker: gradient norms, update ratios and hidden-state cosines. Each returns one number per
// decoder layer (embeddings, final norm and lm_head are not layers here), as a double computed
// with fp32 (or wider) accumulation whatever the parameter dtype, and synchronises the device
// once per call, so it belongs at evaluation steps, not in the hot loop.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <utility>
#include <vector>

namespace dus {

class TransformerImpl;

/// The sum of squares of each tensor (fp32 accumulation, fp64 result) added up per decoder
/// layer: entries whose layer lies outside [0, num_layers) or whose tensor is undefined are
/// skipped. One host copy. What a strategy's per-layer gradient norms are made of (summed over
/// ranks when each holds a shard, then square-rooted).
std::vector<double> layer_sums_of_squares(
    const std::vector<std::pair<int64_t, at::Tensor>>& tensors, int64_t num_layers);

/// L2 norm over all gradients of each decoder layer's parameters (a parameter without a
/// gradient counts as zero). Call after backward, before the optimizer zeroes the grads.
std::vector<double> layer_grad_norms(TransformerImpl& model);

/// Per-layer sums of squares gathered piece by piece: the weights before an optimizer step and
/// the update (after - before), over all of a layer's parameters (or this rank's part of them).
/// The optimizer copies one chunk of old values at a time, steps it, adds it here and drops the
/// copy, so the update ratio costs one chunk of memory, not a copy of the model. The sums stay
/// on the device until values() (one synchronisation).
class LayerUpdateSums {
 public:
  explicit LayerUpdateSums(int64_t num_layers) : layers_(num_layers) {}
  int64_t num_layers() const { return layers_; }
  /// Adds |before|^2 and |after - before|^2 (fp32 difference at least) to `layer`'s sums; a
  /// layer outside [0, num_layers) (embeddings, final norm, lm_head) is ignored.
  void add(int64_t layer, const at::Tensor& before, const at::Tensor& after);
  /// [weight^2 of layer 0..L-1, update^2 of layer 0..L-1] on the host: the form ranks
  /// all-reduce when each holds a shard.
  std::vector<double> values() const;
  /// ||update|| / ||weight|| per layer from values() (summed over ranks when sharded); 0 for an
  /// all-zero layer that did not move, infinity for one that moved from zero.
  static std::vector<double> ratios(const std::vector<double>& values);

 private:
  int64_t layers_;
  std::vector<std::pair<int64_t, at::Tensor>> weight_sq_, update_sq_;  ///< (layer, 0-dim fp64)
};

/// The decoder layer a Hugging Face parameter name belongs to ("model.layers.12.mlp..." -> 12),
/// -1 for embeddings, the final norm and lm_head.
int64_t layer_index_of(const std::string& hf_name);

/// Runs the decoder layers one by one on input_ids_BT (as TransformerImpl::hidden_states does,
/// without grad) and returns, per layer, the mean over the B*T tokens of cosine(input hidden
/// state, output hidden state), computed in float64: a layer that passes its input through
/// unchanged (o_proj and down_proj zero) gives exactly 1.
std::vector<double> layer_hidden_cosines(TransformerImpl& model, const at::Tensor& input_ids_BT);

}  // namespace dus
