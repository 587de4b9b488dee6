// SwiGLU's gating, silu(gate) * up: the plain LibTorch reference and the fused op (CUDA or CPU)
// behind one differentiable call. gate and up have the same shape (..., F).
#pragma once

#include <ATen/core/Tensor.h>

namespace dus::kernels {

/// silu(gate) * up.
at::Tensor swiglu_reference(const at::Tensor& gate, const at::Tensor& up);

/// True when a fused kernel takes these: CUDA tensors (CUDA build; fp32/bf16/fp16) or CPU
/// tensors (fp32/bf16), same shape, dtype and device.
bool swiglu_fusable(const at::Tensor& gate, const at::Tensor& up);

/// The fused kernel when `fused` and swiglu_fusable, else the reference; differentiable in both.
at::Tensor swiglu(const at::Tensor& gate, const at::Tensor& up, bool fused);

}  // namespace dus::kernels
