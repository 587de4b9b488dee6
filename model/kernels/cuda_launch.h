// The CUDA launchers behind the fused ops (internal to model/kernels: the public headers are
// rmsnorm.h, rope.h, swiglu.h, cross_entropy.h). Compiled from the .cu files when the build has
// CUDA (DUS_WITH_CUDA); otherwise cuda_stub.cpp defines each one to throw, so everything links.
// Callers check the tensors (CUDA, dtype fp32/bf16/fp16, shapes) before calling; the launchers
// re-check only what would otherwise read out of bounds.
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

#include "model/kernels/kernel_set.h"

namespace dus::kernels::cuda {

/// True when a fused kernel can take `t`: a CUDA build, a CUDA tensor, fp32/fp16/bf16.
inline bool fusable(const at::Tensor& t) {
  const auto st = t.scalar_type();
  return cuda_kernels_built() && t.is_cuda() &&
         (st == at::kFloat || st == at::kBFloat16 || st == at::kHalf);
}

/// x_ND, w_D contiguous, same dtype -> (y_ND in x's dtype, rstd_N fp32).
std::tuple<at::Tensor, at::Tensor> rmsnorm_forward(const at::Tensor& x_ND, const at::Tensor& w_D,
                                                   double eps);
/// -> (dx_ND in x's dtype, dw_D in w's dtype); dw accumulated in fp32.
std::tuple<at::Tensor, at::Tensor> rmsnorm_backward(const at::Tensor& dy_ND, const at::Tensor& x_ND,
                                                    const at::Tensor& w_D,
                                                    const at::Tensor& rstd_N);

/// x_BHTd (last dim contiguous, any other strides), cos/sin (T, d) contiguous in x's dtype ->
/// x*cos + rotate_half(x)*sin, or with `backward` the transpose: dy*cos - rotate_half(dy*sin).
/// The output has x's strides.
at::Tensor rope(const at::Tensor& x_BHTd, const at::Tensor& cos_Td, const at::Tensor& sin_Td,
                bool backward);

/// gate, up contiguous, same shape and dtype -> silu(gate) * up.
at::Tensor swiglu_forward(const at::Tensor& gate, const at::Tensor& up);
/// -> (d gate, d up).
std::tuple<at::Tensor, at::Tensor> swiglu_backward(const at::Tensor& dy, const at::Tensor& gate,
                                                   const at::Tensor& up);

/// One chunk of the chunked cross-entropy. logits_nV contiguous (any float dtype of ours),
/// targets_n int64 (-100 = ignored), grad_scale a 0-dim fp32 tensor on the device (1 / number of
/// counted targets; read on the device, so no host sync). Returns the per-row loss (n) fp32
/// (0 for ignored rows); with compute_grad, overwrites logits_nV with
/// d loss / d logits = (softmax - onehot) * grad_scale (0 for ignored rows).
at::Tensor cross_entropy_chunk(at::Tensor& logits_nV, const at::Tensor& targets_n,
                               const at::Tensor& grad_scale, bool compute_grad);

}  // namespace dus::kernels::cuda
