// Rotary position embedding of q or k: the plain LibTorch reference (what the model runs unfused)
// and the fused op (CUDA kernel or CPU loop) behind one differentiable call. Shapes: x (B, H, T,
// d), cos/sin (T, d) from dus::rotary_tables (no gradient flows into the tables).
#pragma once

#include <ATen/core/Tensor.h>

namespace dus::kernels {

/// transformers' x * cos + rotate_half(x) * sin, rotate_half: (x1, x2) -> (-x2, x1) on the last
/// dimension, computed per half as (x1 c1 - x2 s1, x2 c2 + x1 s2) (cos/sin broadcast over the
/// leading dimensions). Bit-identical to transformers' formula in value and gradient (IEEE:
/// a + (-b) * s == a - b * s exactly) without its negated and rotated copies of x (two
/// full-size temporaries per call, and their backward). The model's rotary when not fused.
at::Tensor rotary_reference(const at::Tensor& x, const at::Tensor& cos_Td,
                            const at::Tensor& sin_Td);

/// True when a fused op takes these: CUDA (CUDA build; fp32/bf16/fp16) or CPU (fp32/bf16), x 4-D
/// with a contiguous last dimension of even size d, cos/sin (T, d) in x's dtype without grad.
bool rotary_fusable(const at::Tensor& x, const at::Tensor& cos_Td, const at::Tensor& sin_Td);

/// The fused kernel when `fused` and rotary_fusable, else the reference; differentiable in x.
/// The output keeps x's strides.
at::Tensor rotary(const at::Tensor& x, const at::Tensor& cos_Td, const at::Tensor& sin_Td,
                  bool fused);

}  // namespace dus::kernels
