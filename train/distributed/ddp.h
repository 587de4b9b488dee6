// Data parallelism (`distributed.strategy: ddp`): every rank holds the whole model and the
// whole optimizer; gradients are averaged over ranks before the step, so every rank takes the
// same step. The model code knows nothing of it: DdpGradSync wraps its parameters.
//
// Gradients live in flat buckets (about bucket_mb each, in reverse parameter order, roughly
// the order backward produces them): each parameter's .grad is a view into its bucket, so
// autograd accumulates micro-batches in place and the bucket is all-reduced as it stands, with
// no copy. A post-accumulate-grad hook on each parameter counts the bucket down; on the last
// micro-step of an optimizer step (armed by begin_micro_step(true)) a bucket whose gradients
// are all final is all-reduced asynchronously while backward goes on with the layers below.
// Buckets are launched strictly in index order, so every rank issues the same collectives in
// the same order. Accumulation micro-steps communicate nothing.
//
// fp32 accumulation (bf16 compute; Megatron's main_grad): the buckets hold fp32 and the
// parameters' .grad is not a view: each micro-batch's compute-dtype gradient of a parameter is
// added into its fp32 slice by the hook and released at once, so 64 micro-batches add up in
// fp32 and the all-reduce runs in fp32. Memory: 4 bytes per parameter instead of 2, with no
// compute-dtype gradients held beyond the one being produced. main_grads() are then the
// gradients to step on. Without a process group it is the single process's fp32 buffer.
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <vector>

#include "train/distributed/process_group.h"

namespace dus::dist {

struct DdpOptions {
  double bucket_mb = 25;         ///< bucket size in MiB of gradient (compute dtype)
  bool overlap = true;           ///< all-reduce buckets from backward hooks (else all at finish())
  bool accumulate_fp32 = false;  ///< fp32 buckets fed by the hooks (see above)
};

class DdpGradSync {
 public:
  /// `params`: the model's parameters in model order (all requiring grad, contiguous). `pg`
  /// null: one process (only useful with accumulate_fp32).
  DdpGradSync(std::shared_ptr<ProcessGroup> pg, std::vector<at::Tensor> params, DdpOptions options);
  ~DdpGradSync();
  DdpGradSync(const DdpGradSync&) = delete;
  DdpGradSync& operator=(const DdpGradSync&) = delete;

  /// Copies rank 0's parameters to every rank (identical start, whatever the init did).
  void broadcast_parameters();
  /// Before each micro-step's backward: `last` arms the hooks (communicate this backward).
  void begin_micro_step(bool last);
  /// After the last backward: launches what is left, waits, divides by the world size. Every
  /// parameter's .grad then holds the gradient averaged over ranks.
  void finish();
  /// Zeroes the buckets (the .grad views stay).
  void zero_grads();

  int64_t buckets() const { return static_cast<int64_t>(buckets_.size()); }
  /// Each parameter's gradient as the optimizer must read it: the .grad views, or with
  /// accumulate_fp32 the fp32 slices.
  const std::vector<at::Tensor>& main_grads() const { return main_grads_; }
  bool accumulates_fp32() const { return options_.accumulate_fp32; }
  /// Seconds finish() spent waiting for communication in the last step (what backward did
  /// not hide).
  double last_wait_s() const { return last_wait_s_; }

  /// Called by the hook of parameter i (public for the hook object only).
  void on_grad_ready(size_t param_index);

 private:
  struct Bucket {
    at::Tensor flat;             ///< (n) gradients of its parameters, concatenated
    std::vector<size_t> params;  ///< indices into params_
    size_t pending = 0;          ///< parameters not yet final in this backward
    std::unique_ptr<PendingWork> work;
  };
  void launch_ready();

  std::shared_ptr<ProcessGroup> pg_;
  std::vector<at::Tensor> params_;
  DdpOptions options_;
  std::vector<Bucket> buckets_;
  std::vector<size_t> bucket_of_;       ///< param index -> bucket index
  std::vector<at::Tensor> main_grads_;  ///< param index -> its gradient slice of a bucket
  size_t next_launch_ = 0;
  bool armed_ = false;
  double last_wait_s_ = 0;
};

}  // namespace dus::dist
