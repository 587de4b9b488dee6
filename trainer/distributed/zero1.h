// ZeRO stage 1 (`distributed.strategy: zero1`; Megatron's distributed optimizer): parameters
// (compute dtype) are replicated; fp32 master weights and both Adam moments are sharded.
//
// Flat space: the parameters flattened and concatenated in model order, N elements, padded to
// Np = ceil(N / W) * W; rank r owns [r*S, (r+1)*S), S = Np / W. The model's parameters become
// views into one flat parameter buffer (Np, compute dtype) and their .grad views into one flat
// gradient buffer, so one step is:
//   grads (Np) --reduce-scatter(sum) / W--> this rank's gradient shard (S, fp32)
//   global norm^2 = all-reduce(sum over ranks of |shard|^2); clip scales the shard
//   AdamW on the shard (the same element-wise operations as trainer/adamw.cpp, in order)
//   master shard -> compute dtype --all-gather--> the flat parameter buffer (every parameter)
// Per GPU: params + grads (compute dtype) + (4 + 4 + 4) / W bytes per parameter.
#pragma once

#include <ATen/core/Tensor.h>

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "model/safetensors.h"
#include "trainer/adamw.h"
#include "trainer/checkpoint.h"
#include "trainer/distributed/process_group.h"

namespace dus::dist {

class Zero1Optimizer {
 public:
  /// `pg` null means a single process (W = 1). `params`: (Hugging Face name, parameter) in
  /// model order; their storage moves into the flat buffer. `fp32_masters` (same order, full
  /// tensors) seed this rank's master shard.
  Zero1Optimizer(std::shared_ptr<ProcessGroup> pg,
                 const std::vector<std::pair<std::string, at::Tensor>>& params,
                 OptimizerOptions options, const NamedTensors& fp32_masters);

  /// After the last backward: this rank's gradient shard = the mean over ranks.
  void reduce_gradients();
  /// Global L2 norm of the averaged gradient (all shards), the same on every rank.
  double grad_norm();
  void scale_gradients(double scale);
  /// AdamW on the shard, then all-gather the parameters.
  void step(double lr);
  void zero_grads();

  int64_t steps_taken() const { return steps_; }
  void set_steps_taken(int64_t s) { steps_ = s; }

  /// Checkpoint: this rank's [begin, end) of master / exp_avg / exp_avg_sq (end clipped to N).
  NamedTensors shard_tensors() const;
  int64_t shard_begin() const { return begin_; }
  /// [begin, end) of rank r's shard (end clipped to N).
  std::pair<int64_t, int64_t> shard_range(int r) const {
    const int64_t b = static_cast<int64_t>(r) * shard_;
    return {b, std::max(b, std::min(b + shard_, total_))};
  }
  int64_t shard_end() const { return end_; }
  const FlatLayout& layout() const { return layout_; }
  /// Loads this rank's shard from any checkpoint (re-sharding across world sizes), and
  /// refreshes every parameter from the gathered masters.
  void load(const LoadedCheckpoint& ck);
  /// Every master weight (fp32, gathered from all ranks), in model order: for the final model.
  NamedTensors gather_masters();

 private:
  void all_gather_params();

  std::shared_ptr<ProcessGroup> pg_;
  OptimizerOptions options_;
  int world_ = 1, rank_ = 0;
  FlatLayout layout_;
  std::vector<at::Tensor> params_;
  std::vector<bool> decay_;
  int64_t total_ = 0, padded_ = 0, shard_ = 0, begin_ = 0, end_ = 0;
  at::Tensor flat_params_, flat_grads_;       ///< (Np) compute dtype; the model's storage
  at::Tensor master_, exp_avg_, exp_avg_sq_;  ///< (S) fp32, this rank's shard
  at::Tensor grad_shard_;                     ///< (S) fp32, after reduce_gradients()
  int64_t steps_ = 0;
};

}  // namespace dus::dist
