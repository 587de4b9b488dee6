// One AdamW step over lists of tensors, decoupled weight decay exactly as torch.optim.AdamW and
// torch::optim::AdamW (no amsgrad, no maximize):
//   p   <- p * (1 - lr * weight_decay)
//   m   <- beta1 m + (1 - beta1) g ;  v <- beta2 v + (1 - beta2) g^2
//   p   <- p - lr / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)
// On CUDA this is LibTorch's fused multi-tensor kernel (at::_fused_adamw_, what
// torch.optim.AdamW(fused=True) calls): one launch per (device, dtype) group instead of a dozen
// ops per tensor.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

namespace dus::kernels {

/// Hyper-parameters of one step.
struct AdamWStep {
  int64_t step = 1;            ///< 1-based number of this step (bias corrections use it)
  double lr = 1e-3;            ///< learning rate
  double beta1 = 0.9;          ///< first-moment decay
  double beta2 = 0.999;        ///< second-moment decay
  double eps = 1e-8;           ///< added to the bias-corrected sqrt(v)
  double weight_decay = 1e-2;  ///< decoupled decay, multiplied by lr
};

/// Updates params, exp_avgs and exp_avg_sqs in place (under no-grad). All lists have the same
/// length; grads and moments match their param's shape, dtype and device. On CUDA with `fused`
/// (the KernelSet's adamw switch) groups of contiguous CUDA tensors go through
/// at::_fused_adamw_; everything else through adamw_step_reference.
void fused_adamw_step(const std::vector<at::Tensor>& params, const std::vector<at::Tensor>& grads,
                      const std::vector<at::Tensor>& exp_avgs,
                      const std::vector<at::Tensor>& exp_avg_sqs, int64_t step, double lr,
                      double beta1, double beta2, double eps, double weight_decay,
                      bool fused = true);

/// The reference: the per-tensor formula above in plain LibTorch ops (CPU or GPU), in
/// torch.optim.AdamW's single-tensor order (m by lerp). Also what the trainer runs for zero1's
/// flat shards and for tensors the fused paths cannot take.
void adamw_step_reference(const std::vector<at::Tensor>& params,
                          const std::vector<at::Tensor>& grads,
                          const std::vector<at::Tensor>& exp_avgs,
                          const std::vector<at::Tensor>& exp_avg_sqs, const AdamWStep& hp);

/// at::_fused_adamw_ itself on one (device, dtype) group, on whatever device has the kernel
/// (CUDA; LibTorch ships a CPU one too, which the CPU tests use to check this exact call:
/// the step convention and argument order).
void adamw_step_aten_fused(const std::vector<at::Tensor>& params,
                           const std::vector<at::Tensor>& grads,
                           const std::vector<at::Tensor>& exp_avgs,
                           const std::vector<at::Tensor>& exp_avg_sqs, const AdamWStep& hp);

}  // namespace dus::kernels
