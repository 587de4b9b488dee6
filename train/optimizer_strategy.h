// Gradient synchronisation and the optimizer behind one interface, so that one training step
// (train/train_step.h) serves every strategy:
//
//   strategy    gradients after reduce_gradients()        optimizer state per rank
//   single      the model's .grad, or an fp32 buffer       AdamW (masters, moments) for all of P
//   ddp         all-reduced buckets (.grad views, or fp32)  the same, replicated on every rank
//   zero1       this rank's fp32 shard of the bf16 buffer  masters and moments for P / W
//   zero2       this rank's fp32 shard, accumulated fp32   the same
//
// The model code knows nothing of it: a strategy is built on the model's parameters (which it
// places on the compute device, in the compute dtype) and the fp32 master weights (which may
// stay on the host until the strategy takes what this rank needs of them).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "model/safetensors.h"
#include "train/adamw.h"
#include "train/checkpoint.h"

namespace dus {

namespace dist {
class ProcessGroup;
}

/// What the logs need of one optimizer step, from one collective and one host sync.
struct StepScalars {
  double loss = 0;       ///< mean loss over the global batch
  double grad_norm = 0;  ///< global L2 norm of the averaged gradient
};

class OptimizerStrategy {
 public:
  virtual ~OptimizerStrategy() = default;
  /// "single", "ddp" or "zero1", and a line on how gradients travel.
  virtual std::string name() const = 0;
  virtual std::string describe() const = 0;

  /// Before each micro-batch's backward; `last` is the optimizer step's final micro-batch.
  virtual void begin_micro_step(bool /*last*/) {}
  /// After the last backward: the gradient averaged over ranks (all of it, or this rank's
  /// shard).
  virtual void reduce_gradients() = 0;
  /// `local_loss_sum`: this rank's sum of micro-batch losses (each already divided by the
  /// number of micro-batches), a 0-dim tensor on the compute device. Returns the global mean
  /// loss and the global gradient norm.
  virtual StepScalars loss_and_grad_norm(const at::Tensor& local_loss_sum) = 0;
  /// L2 norm of each decoder layer's (averaged) gradient, the same on every rank.
  virtual std::vector<double> layer_grad_norms(int64_t num_layers) = 0;
  virtual void scale_gradients(double scale) = 0;
  /// One AdamW step. With `update_ratios`, also ||update|| / ||weight|| per decoder layer of
  /// the fp32 masters (the same on every rank), at the cost of one chunk of copies.
  virtual std::vector<double> step(double lr, int64_t num_layers, bool update_ratios) = 0;
  /// Ready for the next step's micro-batches.
  virtual void zero_grads() = 0;

  /// Gradient bytes this rank sends into reductions per optimizer step with `micro_batches`
  /// micro-batches (0 for one process); zero stages add an all-gather of the parameters.
  virtual double reduce_bytes_per_step(int64_t micro_batches) const = 0;

  virtual int64_t steps_taken() const = 0;
  virtual void set_steps_taken(int64_t steps) = 0;

  /// Writes the checkpoint of step `contents.step` (its state, config and recipe filled in by
  /// the caller; the strategy adds the weights, moments and RNG state). Collective: every rank
  /// calls it. Returns the directory written (on rank 0; "" elsewhere).
  virtual std::string save_checkpoint(const std::string& run_dir, CheckpointContents contents,
                                      int64_t keep) = 0;
  /// Masters and moments from any checkpoint (re-sharded as needed); the parameters follow.
  virtual void load(const LoadedCheckpoint& ck) = 0;
  /// Every master weight (fp32, whole; gathered over ranks when sharded), in model order.
  virtual NamedTensors gather_masters() = 0;
};

struct StrategyOptions {
  std::string strategy = "ddp";  ///< ddp | zero1 (a single process runs ddp's as "single")
  OptimizerOptions optimizer;    ///< AdamW
  double bucket_mb = 25;         ///< ddp: gradient bucket size
  c10::Device device = c10::Device(c10::DeviceType::CPU);  ///< compute device
  c10::ScalarType compute_dtype = c10::ScalarType::Float;  ///< parameters' dtype
  /// single/ddp in bf16: accumulate and all-reduce the gradients in an fp32 buffer (zero1
  /// always uses the compute dtype, zero2 always fp32).
  bool grad_accumulation_fp32 = true;
  int64_t micro_batches = 1;  ///< per optimizer step on this rank
};

/// Places `params` (Hugging Face name, the model's parameter; any device and dtype) on the
/// compute device in the compute dtype and builds the strategy. `fp32_masters` (same order)
/// hold the precise weights; they may be host tensors and are not kept (a strategy copies what
/// it needs), so the caller frees them by dropping its references. `pg` null: one process.
std::unique_ptr<OptimizerStrategy> make_optimizer_strategy(
    const StrategyOptions& options, std::shared_ptr<dist::ProcessGroup> pg,
    const std::vector<std::pair<std::string, at::Tensor>>& params,
    const NamedTensors& fp32_masters);

}  // namespace dus
