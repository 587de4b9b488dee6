#include "model/loss.h"

#include <ATen/ops/cross_entropy_loss.h>

#include "model/kernels/cross_entropy.h"
#include "model/transformer.h"

namespace dus {

at::Tensor cross_entropy_loss(const at::Tensor& logits_NV, const at::Tensor& targets_N) {
  // At least fp32 softmax: bf16 logits lose the small probabilities the loss is made of
  // (float64 stays float64, for gradient checks).
  auto logits = logits_NV.scalar_type() == at::kDouble ? logits_NV : logits_NV.to(at::kFloat);
  return at::cross_entropy_loss(logits, targets_N, /*weight=*/{},
                                at::Reduction::Mean, kIgnoreIndex);
}

at::Tensor next_token_loss(const at::Tensor& logits_BTV, const at::Tensor& labels_BT) {
  const int64_t T = logits_BTV.size(1), V = logits_BTV.size(2);
  auto logits = logits_BTV.narrow(1, 0, T - 1).reshape({-1, V});  // ((B*(T-1)), V)
  auto targets = labels_BT.narrow(1, 1, T - 1).reshape({-1});      // (B*(T-1))
  return dus::cross_entropy_loss(logits, targets);
}

at::Tensor training_loss(TransformerImpl& model, const at::Tensor& input_BT, const at::Tensor& target_BT) {
  const auto& k = model.kernels();
  const int64_t D = model.config().hidden_size, V = model.config().vocab_size;
  if (k.chunked_loss) {
    auto hidden = model.hidden_states(input_BT);  // (B, T, D)
    return kernels::chunked_cross_entropy(hidden.reshape({-1, D}), model.lm_head_weight(), target_BT.reshape({-1}),
                                          k.loss_chunk_rows, k.cross_entropy);
  }
  auto logits = model.forward(input_BT);  // (B, T, V)
  return dus::cross_entropy_loss(logits.reshape({-1, V}), target_BT.reshape({-1}));
}

}  // namespace dus
