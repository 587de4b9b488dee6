// AdamW with decoupled weight decay (Loshchilov & Hutter), the update torch.optim.AdamW makes,
// written out so that its state (fp32 master weights and both moments) is plain tensors the
// checkpoint stores by parameter name, and so that bf16 compute with fp32 master weights is
// explicit: the optimizer owns fp32 masters; the model's (bf16) parameters are copies of them.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace dus {

struct OptimizerOptions {
  double beta1 = 0.9;                       ///< first-moment decay
  double beta2 = 0.95;                      ///< second-moment decay
  double eps = 1e-8;                        ///< denominator floor
  double weight_decay = 0.1;                ///< decoupled decay (multiplied by lr)
  bool decay_norms_and_embeddings = false;  ///< by default none on 1-D params and embeddings
};

class AdamW {
 public:
  struct Slot {
    std::string name;       ///< Hugging Face parameter name
    at::Tensor param;       ///< the model's parameter (compute dtype)
    at::Tensor master;      ///< fp32 master weight (aliases param when param is fp32)
    at::Tensor exp_avg;     ///< fp32 first moment
    at::Tensor exp_avg_sq;  ///< fp32 second moment
    bool decay = true;      ///< whether weight decay applies
  };

  /// `params`: (name, parameter) pairs; decay is chosen by name and rank of each tensor.
  AdamW(const std::vector<std::pair<std::string, at::Tensor>>& params, OptimizerOptions options);

  /// One update with learning rate `lr`, using each parameter's .grad() (cast to fp32). Step
  /// count (for bias correction) advances by one. Parameters without a gradient are skipped.
  void step(double lr);
  /// After the masters changed outside step() (a checkpoint load), refresh the model params.
  void copy_masters_to_params();

  int64_t steps_taken() const { return steps_; }
  void set_steps_taken(int64_t steps) { steps_ = steps; }
  std::vector<Slot>& slots() { return slots_; }
  const OptimizerOptions& options() const { return options_; }

 private:
  std::vector<Slot> slots_;
  OptimizerOptions options_;
  int64_t steps_ = 0;
};

/// Global L2 norm of the gradients of `params` (those without one are skipped): each tensor's
/// L2 norm (fp32 accumulation for bf16/fp16), their squares summed in fp64. What gradient
/// clipping and the logs use; one host sync.
double global_grad_norm(const std::vector<at::Tensor>& params);

/// Multiplies every defined gradient of `params` by `scale` (in place, no autograd).
void scale_grads(const std::vector<at::Tensor>& params, double scale);

}  // namespace dus
