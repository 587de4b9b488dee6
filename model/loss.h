// Next-token cross-entropy with transformers' conventions: fp32 log-softmax, ignore index -100,
// mean over the counted positions.
#pragma once

#include <ATen/core/Tensor.h>

namespace dus {

constexpr int64_t kIgnoreIndex = -100;

/// logits (N, V) any float dtype, targets (N) int64 -> scalar mean over targets != -100,
/// computed in fp32 (fp64 for fp64 logits).
at::Tensor cross_entropy_loss(const at::Tensor& logits_NV, const at::Tensor& targets_N);

/// Hugging Face's causal-LM loss: logits (B, T, V) at position t predict labels[t + 1].
at::Tensor next_token_loss(const at::Tensor& logits_BTV, const at::Tensor& labels_BT);

}  // namespace dus
