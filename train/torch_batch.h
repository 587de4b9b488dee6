// The one place the data pipeline meets LibTorch (kept out of dus_data so the loader builds and
// tests without torch): a loader Batch as the int64 input/target tensors a model consumes.
#pragma once

#include <ATen/core/Tensor.h>

#include "data/packed_loader.h"

namespace dus {

struct TokenTensors {
  at::Tensor input_BT;   ///< [rows, seq_len] int64: tokens[:, :-1]
  at::Tensor target_BT;  ///< [rows, seq_len] int64: tokens[:, 1:]
};

/// Copies the batch into int64 tensors on the CPU (pinned when `pin` and CUDA is present, so
/// a later .to(cuda, non_blocking) overlaps with compute).
TokenTensors batch_to_tensors(const Batch& batch, bool pin = false);

}  // namespace dus
