// ZeRO stages 1 and 2 (`distributed.strategy: zero1 | zero2`; Megatron's distributed optimizer,
// DeepSpeed ZeRO-1/2): parameters (compute dtype) are replicated; fp32 master weights and both
// Adam moments are sharded, and with zero2 the gradients too.
//
// Flat space: the parameters flattened and concatenated in model order, N elements, padded to
// Np = ceil(N / W) * W; rank r owns [r*S, (r+1)*S), S = Np / W. The model's parameters become
// views into one flat parameter buffer (Np, compute dtype). Gradient buckets are contiguous
// ranges of the flat space of about bucket_mb, built in reverse model order (roughly the order
// backward finishes them); each bucket splits at the shard boundaries into pieces, and piece
// (lo, hi) is reduced (summed) into its owner rank. A post-accumulate-grad hook on each
// parameter counts its bucket down; a bucket whose gradients are all final is launched
// asynchronously while backward goes on with the layers below, strictly in bucket order, so
// every rank issues the same collectives in the same order.
//
//   zero1  .grad views into one flat gradient buffer (Np, compute dtype): autograd
//          accumulates the micro-batches in place; the buckets are reduced in place during the
//          last micro-batch's backward; this rank's range / W, widened to fp32, is its shard.
//          Per device: params + grads (c each) + (4 + 4 + 4 + 4) / W per parameter.
//   zero2  no full gradient buffer: each micro-batch's gradient of a parameter is added into
//          its bucket's fp32 staging buffer and released at once; a complete bucket is reduced
//          in fp32 to the owners, which add their piece into this rank's fp32 gradient
//          accumulator (S). At most `max_in_flight` buckets are staged at once (an older one
//          is waited for first), so the gradients cost 4 / W per parameter plus a few
//          buckets, and they accumulate and reduce in fp32: 64 micro-batches lose nothing to
//          bf16 rounding. The price: a reduction every micro-batch (4 bytes per parameter
//          each) instead of one per step (c bytes).
//
// Then, for both: global norm^2 = all-reduce(sum over ranks of |shard|^2), in the same
// collective as the loss; clip scales the shard; AdamW on the shard (LibTorch's fused kernel,
// the formula of model/kernels/adamw.h) in chunks, with the update ratios from the chunks' old
// masters; master shard -> compute dtype --all-gather--> the flat parameter buffer.
//
// The parameters are handed over on any device (the host at start-up): each is copied into its
// slice of the flat buffer on the compute device, so no second full copy of them ever exists
// there, and the masters are read only for this rank's range. The checkpoint layout is the
// same for both stages (the "zero1" manifest of train/checkpoint.h): either resumes the other,
// on any world size.
#pragma once

#include <ATen/core/Tensor.h>

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "model/safetensors.h"
#include "train/checkpoint.h"
#include "train/distributed/process_group.h"
#include "train/optimizer_strategy.h"

namespace dus::dist {

class ShardedOptimizer : public OptimizerStrategy {
 public:
  /// `stage` 1 or 2. `pg` null means a single process (W = 1). `params`: (Hugging Face name,
  /// parameter) in model order; their storage moves into the flat buffer on options.device.
  /// `fp32_masters` (same order, full tensors, any device) seed this rank's master shard.
  ShardedOptimizer(int stage, std::shared_ptr<ProcessGroup> pg,
                   const std::vector<std::pair<std::string, at::Tensor>>& params,
                   const StrategyOptions& options, const NamedTensors& fp32_masters);
  ~ShardedOptimizer() override;
  ShardedOptimizer(const ShardedOptimizer&) = delete;
  ShardedOptimizer& operator=(const ShardedOptimizer&) = delete;

  std::string name() const override { return stage_ == 1 ? "zero1" : "zero2"; }
  std::string describe() const override;
  void begin_micro_step(bool last) override;
  void reduce_gradients() override;
  StepScalars loss_and_grad_norm(const at::Tensor& local_loss_sum) override;
  std::vector<double> layer_grad_norms(int64_t num_layers) override;
  void scale_gradients(double scale) override;
  std::vector<double> step(double lr, int64_t num_layers, bool update_ratios) override;
  void zero_grads() override;

  int64_t steps_taken() const override { return steps_; }
  void set_steps_taken(int64_t s) override { steps_ = s; }

  std::string save_checkpoint(const std::string& run_dir, CheckpointContents contents,
                              int64_t keep) override;
  /// Loads this rank's shard from any checkpoint (re-sharding across world sizes), and
  /// refreshes every parameter from the gathered masters.
  void load(const LoadedCheckpoint& ck) override;
  NamedTensors gather_masters() override;

  /// Checkpoint: this rank's [begin, end) of master / exp_avg / exp_avg_sq (end clipped to N).
  NamedTensors shard_tensors() const;
  /// [begin, end) of rank r's shard (end clipped to N).
  std::pair<int64_t, int64_t> shard_range(int r) const {
    const int64_t b = static_cast<int64_t>(r) * shard_;
    return {b, std::max(b, std::min(b + shard_, total_))};
  }
  const FlatLayout& layout() const { return layout_; }
  /// This rank's averaged fp32 gradient shard (S; valid from reduce_gradients to the step).
  const at::Tensor& gradient_shard() const { return grad_shard_; }
  /// Gradient buckets (for the logs and tests).
  int64_t buckets() const { return static_cast<int64_t>(buckets_.size()); }
  /// Bytes this rank sends into reductions per optimizer step with `micro_batches` of them.
  double reduce_bytes_per_step(int64_t micro_batches) const override;

  /// Called by the hook of parameter i (public for the hook object only).
  void on_grad_ready(size_t param_index);

 private:
  struct Piece {
    int owner = 0;
    int64_t lo = 0, hi = 0;  ///< flat range
  };
  struct Bucket {
    int64_t lo = 0, hi = 0;      ///< flat range, whole parameters
    std::vector<size_t> params;  ///< indices into params_
    std::vector<Piece> pieces;   ///< split at the shard boundaries
    size_t pending = 0;          ///< parameters not yet final in this backward
    at::Tensor staging;          ///< zero2: (hi - lo) fp32 gradients of this micro-batch
    std::vector<std::unique_ptr<PendingWork>> work;
    bool launched = false;
  };

  void all_gather_params();
  /// [s, t) of parameter i that lies in this rank's shard (s == t: none).
  std::pair<int64_t, int64_t> owned(size_t i) const {
    const FlatParam& f = layout_[i];
    return {std::max(begin_, f.offset), std::min(end_, f.offset + f.numel)};
  }
  /// Sum over ranks of a vector of doubles computed on this rank's shard.
  std::vector<double> sum_over_ranks(std::vector<double> v);
  void build_buckets(double bucket_mb);
  /// Launches every bucket whose gradients are final, in bucket order.
  void launch_ready();
  void launch(Bucket& b);
  /// Waits for bucket b's reductions; zero2 adds its owned pieces into the accumulator and
  /// frees the staging.
  void complete(Bucket& b);
  /// Launches whatever is left of this backward, then completes every bucket.
  void flush();

  int stage_ = 1;
  std::shared_ptr<ProcessGroup> pg_;
  OptimizerOptions options_;
  int world_ = 1, rank_ = 0;
  FlatLayout layout_;
  std::vector<at::Tensor> params_;
  std::vector<bool> decay_;
  int64_t total_ = 0, padded_ = 0, shard_ = 0, begin_ = 0, end_ = 0;
  at::Tensor flat_params_;                    ///< (Np) compute dtype; the model's storage
  at::Tensor flat_grads_;                     ///< zero1: (Np) compute dtype, the .grad storage
  at::Tensor master_, exp_avg_, exp_avg_sq_;  ///< (S) fp32, this rank's shard
  at::Tensor grad_shard_;                     ///< (S) fp32: zero2 accumulates into it
  std::vector<Bucket> buckets_;
  std::vector<size_t> bucket_of_;  ///< param index -> bucket index
  size_t next_launch_ = 0;
  std::vector<size_t> in_flight_;  ///< zero2: launched, not yet completed, oldest first
  size_t max_in_flight_ = 2;
  bool armed_ = false;
  int64_t steps_ = 0;
};

}  // namespace dus::dist
