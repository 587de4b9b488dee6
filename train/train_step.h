// One optimizer step, the same for every strategy and for both `dus train` and `dus bench
// train`: the micro-batches' forward and backward (gradient accumulation), the gradient
// synchronisation, the global norm and clipping, AdamW, and what the logs need of it.
//
// Host syncs: none per micro-batch (the losses add up on the device); one collective and one
// host copy per step for the loss and the gradient norm together (OptimizerStrategy); at an
// evaluation step, one more each for the per-layer gradient norms and update ratios.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <limits>
#include <vector>

namespace dus {

class TransformerImpl;
class OptimizerStrategy;
class DeviceTimer;
struct FaultInjection;

struct StepOptions {
  int64_t micro_batch = 1;   ///< sequences per forward/backward
  double lr = 0;             ///< learning rate of this step
  double grad_clip = 0;      ///< clip the global norm to this (0: off)
  bool layer_stats = false;  ///< also per-layer gradient norms and update ratios
  int64_t step = 1;          ///< 1-based number of this step (fault injection, logs)
  int rank = 0;              ///< this process's rank (fault injection)
  c10::Device device = c10::Device(c10::DeviceType::CPU);  ///< where the model runs
  const FaultInjection* faults = nullptr;                  ///< test hooks, or none
  /// The loss spike guard's bound: a loss above it skips the update (infinity: no guard).
  double max_loss = std::numeric_limits<double>::infinity();
  /// Times forward, backward and optimizer on the device (CUDA events: no host wait here; the
  /// caller collects). Without one, the host clock fills StepResult's seconds.
  DeviceTimer* timer = nullptr;
};

struct StepResult {
  double loss = 0;       ///< mean loss over the global batch
  double grad_norm = 0;  ///< before clipping
  bool finite = true;    ///< false: non-finite loss or norm, the update was skipped
  bool spike = false;    ///< the loss exceeded max_loss: the update was skipped
  std::vector<double> layer_grad_norms, update_ratios;    ///< with layer_stats (when finite)
  double forward_s = 0, backward_s = 0, optimizer_s = 0;  ///< host seconds (without a timer)
};

/// input_BT / target_BT: this rank's share of the global batch (on the host), split into
/// micro-batches of options.micro_batch. Each micro-batch's mean loss is divided by their
/// number, so the summed gradient is that of the mean over this rank's sequences; the strategy
/// then averages over ranks.
StepResult train_step(TransformerImpl& model, OptimizerStrategy& strategy,
                      const at::Tensor& input_BT, const at::Tensor& target_BT,
                      const StepOptions& options);

}  // namespace dus
