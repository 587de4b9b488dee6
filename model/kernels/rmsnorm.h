// RMSNorm: the plain LibTorch reference (what the model runs unfused) and the fused op (a CUDA
// kernel or a CPU loop) behind one differentiable call. Shapes: x (..., D), weight (D).
#pragma once

#include <ATen/core/Tensor.h>

namespace dus::kernels {

/// weight * cast(x32 * rsqrt(mean(x32^2) + eps)) with x32 = x in fp32 (fp64 stays fp64) and the
/// cast back to x's dtype before the scale, as transformers' MistralRMSNorm. CPU or GPU.
at::Tensor rms_norm_reference(const at::Tensor& x, const at::Tensor& weight, double eps);

/// True when a fused op takes these tensors: CUDA (CUDA build; fp32/bf16/fp16) or CPU
/// (fp32/bf16) tensors, weight in x's dtype, weight (D) matching x's last dimension.
bool rms_norm_fusable(const at::Tensor& x, const at::Tensor& weight);

/// The fused kernel (forward and backward) when `fused` and rms_norm_fusable, else the
/// reference; differentiable either way in x and weight.
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps, bool fused);

}  // namespace dus::kernels
