#include "train/torch_batch.h"

#include <ATen/Functions.h>

namespace dus {

TokenTensors batch_to_tensors(const Batch& batch, bool pin) {
  auto options = at::TensorOptions().dtype(at::kLong).pinned_memory(pin);
  at::Tensor all_BT1 = at::empty({batch.rows, batch.cols}, options);  // (B, T + 1)
  int64_t* dst = all_BT1.data_ptr<int64_t>();
  for (size_t i = 0; i < batch.tokens.size(); ++i) dst[i] = batch.tokens[i];
  const int64_t T = batch.cols - 1;
  return {all_BT1.narrow(1, 0, T), all_BT1.narrow(1, 1, T)};
}

}  // namespace dus
