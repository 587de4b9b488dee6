// Next-token cross-entropy with transformers' conventions: fp32 log-softmax, ignore index -100,
// mean over the counted positions.
#pragma once

#include <ATen/core/Tensor.h>

namespace dus {

constexpr int64_t kIgnoreIndex = -100;

class TransformerImpl;  // model/transformer.h

/// logits (N, V) any float dtype, targets (N) int64 -> scalar mean over targets != -100,
/// computed in fp32 (fp64 for fp64 logits).
at::Tensor cross_entropy_loss(const at::Tensor& logits_NV, const at::Tensor& targets_N);

/// Hugging Face's causal-LM loss: logits (B, T, V) at position t predict labels[t + 1].
at::Tensor next_token_loss(const at::Tensor& logits_BTV, const at::Tensor& labels_BT);

/// The trainer's loss for one micro-batch: input_BT -> model -> mean next-token loss against
/// target_BT (already shifted). With model.kernels().chunked_loss the lm_head and the loss run
/// in row chunks (kernels::chunked_cross_entropy: the (B*T, V) fp32 logits never exist at
/// once), else full logits and cross_entropy_loss. `dus train` and `dus bench train` both call
/// this, so the bench measures the step the trainer runs.
at::Tensor training_loss(TransformerImpl& model, const at::Tensor& input_BT, const at::Tensor& target_BT);

}  // namespace dus
