// The CPU loops behind the fused ops (internal to model/kernels, the CPU twin of cuda_launch.h):
// one pass over memory where the LibTorch reference makes several (RMSNorm: 7 ops forward and
// about 12 backward; rotary: 8 multiplies, a negation and two concatenations), and no saved
// intermediates beyond the inputs. Each loop runs on at::parallel_for (torch's intra-op
// threads) and is compiled for AVX-512, AVX2 and baseline x86-64, picked at load time
// (cpu_vector.h). fp32 is computed directly; bf16 is widened to fp32, computed, and rounded once.
// Callers check the tensors (CPU, fp32/bf16, shapes) through fusable() and the op's own check.
#pragma once

#include <ATen/core/Tensor.h>

#include "model/kernels/adamw.h"

#include <tuple>

namespace dus::kernels::cpu {

/// True when a fused CPU loop can take `t`: a CPU tensor of fp32 or bf16.
inline bool fusable(const at::Tensor& t) {
  return t.is_cpu() && (t.scalar_type() == at::kFloat || t.scalar_type() == at::kBFloat16);
}

/// x_ND, w_D contiguous, same dtype -> (y_ND in x's dtype, rstd_N fp32).
std::tuple<at::Tensor, at::Tensor> rmsnorm_forward(const at::Tensor& x_ND, const at::Tensor& w_D,
                                                   double eps);
/// -> (dx_ND in x's dtype, dw_D in w's dtype). dw is summed over fixed blocks of rows in a fixed
/// order, so it does not depend on the number of threads.
std::tuple<at::Tensor, at::Tensor> rmsnorm_backward(const at::Tensor& dy_ND, const at::Tensor& x_ND,
                                                    const at::Tensor& w_D,
                                                    const at::Tensor& rstd_N);

/// x_BHTd (last dim contiguous, any other strides), cos/sin (T, d) contiguous in x's dtype ->
/// x*cos + rotate_half(x)*sin, or with `backward` the transpose: dy*cos - rotate_half(dy*sin).
/// The output has `out_strides` when given (the backward passes the forward input's: the
/// model's q/k are (B, T, H, d) buffers viewed as (B, H, T, d), so the gradient lands in the
/// layout the projection's backward reads without a copy), else x's strides.
at::Tensor rope(const at::Tensor& x_BHTd, const at::Tensor& cos_Td, const at::Tensor& sin_Td,
                bool backward, at::IntArrayRef out_strides = {});

/// gate, up contiguous, same shape and dtype -> silu(gate) * up.
at::Tensor swiglu_forward(const at::Tensor& gate, const at::Tensor& up);
/// -> (d gate, d up), from the inputs alone (silu is recomputed, not saved).
std::tuple<at::Tensor, at::Tensor> swiglu_backward(const at::Tensor& dy, const at::Tensor& gate,
                                                   const at::Tensor& up);

/// One chunk of the chunked cross-entropy, as cuda::cross_entropy_chunk: logits_nV contiguous
/// fp32/bf16, targets_n int64 (-100 = ignored), grad_scale a 0-dim fp32 tensor. Returns the
/// per-row loss (n) fp32 (0 for ignored rows); with compute_grad, overwrites logits_nV with
/// (softmax - onehot) * grad_scale (0 for ignored rows). One read of each row for max and
/// sum of exponentials, one write of its gradient, while the row is in cache.
at::Tensor cross_entropy_chunk(at::Tensor& logits_nV, const at::Tensor& targets_n,
                               const at::Tensor& grad_scale, bool compute_grad);

/// One AdamW step (adamw.h's formula) for a bf16 parameter with an fp32 master, in one pass per
/// element: reads the bf16 gradient, updates master and moments (fp32, contiguous) and writes
/// the new master rounded to bf16 into `param`. Replaces widening the gradient to fp32, the
/// fused fp32 step and a copy back: three passes over memory and a full-size temporary.
void adamw_step_bf16_param(const at::Tensor& master, const at::Tensor& param,
                           const at::Tensor& grad, const at::Tensor& exp_avg,
                           const at::Tensor& exp_avg_sq, const AdamWStep& hp);

/// Sum of squares of a contiguous fp32 or bf16 tensor: fp32 lanes within fixed blocks, blocks
/// added in double in order, so the result does not depend on the thread count. (LibTorch's
/// norm of a bf16 tensor with an fp32 result first copies the whole tensor to fp32.)
double sum_of_squares(const at::Tensor& t);

/// True when the BLAS inside LibTorch exports sgemm_, which the attention loops call.
bool attention_blas_available();

/// True when it also exports MKL's cblas_gemm_bf16bf16f32 (bf16 products, fp32 results).
bool attention_bf16_blas_available();

/// Causal attention: q (B, H, T, d), k and v (B, Hkv, T, d), all fp32 or all bf16 (bf16 needs
/// attention_bf16_blas_available(): products in bf16 with fp32 results, softmax in fp32, the
/// probabilities rounded to bf16 for P.V as flash attention does), H a multiple of Hkv, last
/// dimension contiguous, any other strides. Returns fp32 (out (B, H, T, d) viewing a
/// (B, T, H, d) buffer, lse (B, H, T) the log-sum-exp of each row's scaled scores).
std::tuple<at::Tensor, at::Tensor> attention_forward(const at::Tensor& q, const at::Tensor& k,
                                                     const at::Tensor& v, double scale);
/// dout and q, k, v in the forward's dtype, out and lse fp32 as the forward returned them ->
/// fp32 (dq, dk, dv), each (B, heads, T, d) viewing a (B, T, heads, d) buffer.
std::tuple<at::Tensor, at::Tensor, at::Tensor> attention_backward(
    const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& out, const at::Tensor& lse, double scale);

}  // namespace dus::kernels::cpu
