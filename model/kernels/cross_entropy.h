// Cross-entropy over the vocabulary computed in chunks of rows, straight from the hidden states:
// loss = mean over targets != -100 of lse(h W^T) - (h W^T)[target], with h (N, D) and the
// lm_head weight W (V, D). Only one chunk's logits (rows x V) exist at a time, never the whole
// (N, V) fp32 logits; the gradients wrt h and W are computed in the same pass (the softmax of a
// chunk is turned into d loss / d logits in place and multiplied out at once), kept, and scaled
// by the incoming gradient in backward (as Liger's fused linear cross-entropy does). Works on
// CPU and GPU; the per-chunk softmax + gradient step can be a fused CUDA kernel or CPU loop.
#pragma once

#include <ATen/core/Tensor.h>

namespace dus::kernels {

/// Rows per chunk so that one chunk's fp32 logits take about 256 MiB (at least 1).
int64_t default_loss_chunk_rows(int64_t vocab);

/// hidden_ND and weight_VD of one floating dtype, targets_N int64 (-100 ignored) -> scalar mean
/// loss in fp32 (fp64 for fp64 inputs), NaN when no target counts (as the plain loss).
/// Differentiable in hidden and weight. chunk_rows 0 = default_loss_chunk_rows(V).
/// fused: use the CUDA kernel or CPU loop for the per-chunk step where it applies (else the
/// reference).
at::Tensor chunked_cross_entropy(const at::Tensor& hidden_ND, const at::Tensor& weight_VD,
                                 const at::Tensor& targets_N, int64_t chunk_rows = 0,
                                 bool fused = false);

/// The causal-LM loss (hidden at position t predicts labels[t + 1]) through
/// chunked_cross_entropy; the same value as next_token_loss(logits_from_hidden(h), labels).
at::Tensor chunked_next_token_loss(const at::Tensor& hidden_BTD, const at::Tensor& weight_VD,
                                   const at::Tensor& labels_BT, int64_t chunk_rows = 0,
                                   bool fused = false);

/// The per-chunk step in plain LibTorch (what the CUDA kernel computes): returns the per-row
/// loss (n) in fp32 (fp64 for fp64 logits), 0 on ignored rows; with compute_grad, overwrites
/// logits_nV with (softmax - onehot(target)) * grad_scale (0 on ignored rows). grad_scale is a
/// 0-dim tensor on the logits' device (fp32; the CUDA kernel requires fp32).
at::Tensor cross_entropy_chunk_reference(at::Tensor& logits_nV, const at::Tensor& targets_n,
                                         const at::Tensor& grad_scale, bool compute_grad);

/// When `fused`: the CUDA kernel for contiguous CUDA fp32/bf16/fp16 logits, the CPU loop
/// (cpu_launch.h) for contiguous CPU fp32/bf16 logits; else the reference above. Same contract.
at::Tensor cross_entropy_chunk(at::Tensor& logits_nV, const at::Tensor& targets_n,
                               const at::Tensor& grad_scale, bool compute_grad, bool fused);

}  // namespace dus::kernels
