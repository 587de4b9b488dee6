// Causal self-attention with grouped-query heads: the reference (LibTorch's
// scaled_dot_product_attention, which picks flash attention itself on CUDA and on the CPU) and
// the fused CPU op (attention_cpu.cpp) behind one differentiable call.
// Shapes: q (B, H, T, d), k and v (B, Hkv, T, d), H a multiple of Hkv; output (B, H, T, d).
#pragma once

#include <ATen/core/Tensor.h>

namespace dus::kernels {

/// scaled_dot_product_attention(q, k, v, causal, scale 1/sqrt(d), grouped-query heads).
at::Tensor causal_attention_reference(const at::Tensor& q, const at::Tensor& k,
                                      const at::Tensor& v);

/// True when the fused CPU op takes these: CPU fp32 or bf16 tensors of one dtype (bf16 is
/// computed in fp32), 4-D, last dimension contiguous,
/// matching batch, length and head size, H a multiple of Hkv, and the BLAS it calls present.
bool causal_attention_fusable(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);

/// The fused op when `fused` and causal_attention_fusable, else the reference; differentiable in
/// q, k and v. The fused output views a (B, T, H, d) buffer, so transpose(1, 2) of it is free.
at::Tensor causal_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            bool fused);

}  // namespace dus::kernels
