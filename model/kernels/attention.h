// Causal self-attention with grouped-query heads: the reference (LibTorch's
// scaled_dot_product_attention, which picks flash attention itself on CUDA and on the CPU) and
// the fused CPU op (attention_cpu.cpp) behind one differentiable call.
// Shapes: q (B, H, T, d), k and v (B, Hkv, T, d), H a multiple of Hkv; output (B, H, T, d).
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

namespace dus::kernels {

/// scaled_dot_product_attention(q, k, v, causal, scale 1/sqrt(d), grouped-query heads). With a
/// sliding window shorter than T, query i sees keys j with i - window < j <= i (transformers'
/// sliding_window_overlay), as an explicit boolean mask.
at::Tensor causal_attention_reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                      std::optional<int64_t> sliding_window = std::nullopt);

/// True when the fused CPU op takes these: CPU fp32 or bf16 tensors of one dtype (bf16 is
/// computed in fp32), 4-D, last dimension contiguous,
/// matching batch, length and head size, H a multiple of Hkv, and the BLAS it calls present.
bool causal_attention_fusable(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v);

/// The fused op when `fused`, causal_attention_fusable and no sliding window shorter than T
/// applies (the fused op has no window), else the reference; differentiable in q, k and v. The
/// fused output views a (B, T, H, d) buffer, so transpose(1, 2) of it is free.
at::Tensor causal_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            bool fused, std::optional<int64_t> sliding_window = std::nullopt);

}  // namespace dus::kernels
