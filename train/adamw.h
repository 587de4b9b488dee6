// AdamW with decoupled weight decay (Loshchilov & Hutter), the update torch.optim.AdamW makes,
// written out so that its state (fp32 master weights and both moments) is plain tensors the
// checkpoint stores by parameter name, and so that bf16 compute with fp32 master weights is
// explicit: the optimizer owns fp32 masters; the model's (bf16) parameters are copies of them.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "train/optimizer_options.h"

namespace dus {

class LayerUpdateSums;  // train/layer_stats.h

class AdamW {
 public:
  struct Slot {
    std::string name;       ///< Hugging Face parameter name
    at::Tensor param;       ///< the model's parameter (compute dtype)
    at::Tensor master;      ///< fp32 master weight (aliases param when param is fp32)
    at::Tensor exp_avg;     ///< fp32 first moment
    at::Tensor exp_avg_sq;  ///< fp32 second moment
    bool decay = true;      ///< whether weight decay applies
    /// The gradient to step on when it is not param.grad() (an fp32 accumulation buffer).
    at::Tensor grad;
    const at::Tensor& gradient() const { return grad.defined() ? grad : param.grad(); }
  };

  /// `params`: (name, parameter) pairs; decay is chosen by name and rank of each tensor.
  /// `fp32_masters` (same order; may live on the host): the precise weights of bf16 parameters,
  /// moved to each parameter's device (taken over without a copy where they already are there);
  /// without them a bf16 parameter's master is its own value widened. fp32 parameters are their
  /// own masters.
  AdamW(const std::vector<std::pair<std::string, at::Tensor>>& params, OptimizerOptions options,
        const std::vector<std::pair<std::string, at::Tensor>>* fp32_masters = nullptr);

  /// One update with learning rate `lr`, using each parameter's .grad(). Step count (for bias
  /// correction) advances by one. Parameters without a gradient are skipped. The parameters are
  /// stepped in chunks of at most options.chunk_elements (a larger tensor is a chunk of its
  /// own): what a chunk needs at once (its gradients widened to fp32, and with `update_sums`
  /// a copy of its old masters for the per-layer update ratios) is the optimizer's whole
  /// transient. Each tensor's update is element-wise, so chunking changes no bit.
  void step(double lr, LayerUpdateSums* update_sums = nullptr);
  /// After the masters changed outside step() (a checkpoint load), refresh the model params.
  void copy_masters_to_params();

  int64_t steps_taken() const { return steps_; }
  void set_steps_taken(int64_t steps) { steps_ = steps; }
  std::vector<Slot>& slots() { return slots_; }
  const OptimizerOptions& options() const { return options_; }

 private:
  void step_chunk(size_t begin, size_t end, double lr, LayerUpdateSums* update_sums);

  std::vector<Slot> slots_;
  OptimizerOptions options_;
  int64_t steps_ = 0;
};

/// Global L2 norm of the gradients of `params` (those without one are skipped): each tensor's
/// L2 norm (fp32 accumulation for bf16/fp16), their squares summed in fp64. What gradient
/// clipping and the logs use; one host sync.
double global_grad_norm(const std::vector<at::Tensor>& params);
/// The same sum of squares (the norm squared) of the gradient tensors `grads` (undefined ones
/// skipped) as a 0-dim fp64 tensor on their device (the host for the bf16 CPU loop), without
/// synchronising: the trainer fetches it together with the loss.
at::Tensor grad_norm_squared(const std::vector<at::Tensor>& grads);
/// The gradients (.grad) of `params`, undefined where a parameter has none.
std::vector<at::Tensor> grads_of(const std::vector<at::Tensor>& params);

/// Multiplies every defined tensor of `grads` by `scale` (in place, no autograd): gradient
/// clipping.
void scale_gradients(const std::vector<at::Tensor>& grads, double scale);

}  // namespace dus
