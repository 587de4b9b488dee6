#include "model/loss.h"

#include <ATen/ops/cross_entropy_loss.h>

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

}  // namespace dus
