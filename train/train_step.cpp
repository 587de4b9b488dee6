#include "train/train_step.h"

#include <ATen/ops/zeros.h>
#include <c10/core/GradMode.h>

#include <chrono>
#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "core/clock.h"
#include "core/error.h"
#include "model/loss.h"
#include "model/transformer.h"
#include "train/device_timer.h"
#include "train/fault_injection.h"
#include "train/optimizer_strategy.h"

namespace dus {

namespace {
using Clock = std::chrono::steady_clock;
}  // namespace

StepResult train_step(TransformerImpl& model, OptimizerStrategy& strategy,
                      const at::Tensor& input_BT, const at::Tensor& target_BT,
                      const StepOptions& o) {
  const int64_t rows = input_BT.size(0);
  if (o.micro_batch <= 0 || rows % o.micro_batch != 0)
    throw Error("train_step", fmt::format("{} sequences do not split into micro-batches of {}",
                                          rows, o.micro_batch));
  const int64_t accum = rows / o.micro_batch;
  StepResult r;
  // This rank's loss, summed on the device in fp64 as the micro-batches go: reading each
  // micro-batch's loss on the host would stall the GPU's queue once per micro-batch.
  at::Tensor loss_sum = at::zeros({}, at::TensorOptions().dtype(at::kDouble).device(o.device));
  for (int64_t m = 0; m < accum; ++m) {
    auto input = input_BT.narrow(0, m * o.micro_batch, o.micro_batch).to(o.device);
    auto target = target_BT.narrow(0, m * o.micro_batch, o.micro_batch).to(o.device);
    auto tf = Clock::now();
    if (o.timer) o.timer->start(Phase::forward);
    // Chunked lm_head + loss when the kernel set says so.
    at::Tensor loss = training_loss(model, input, target) / static_cast<double>(accum);
    if (o.timer) o.timer->stop(Phase::forward);
    r.forward_s += seconds_since(tf);
    if (o.faults) o.faults->inside_step(o.step, o.rank);
    auto tb = Clock::now();
    if (o.timer) o.timer->start(Phase::backward);
    strategy.begin_micro_step(m + 1 == accum);
    loss.backward();
    if (o.timer) o.timer->stop(Phase::backward);
    r.backward_s += seconds_since(tb);
    {
      c10::NoGradGuard no_grad;
      loss_sum.add_(loss.detach().to(at::kDouble));
    }
  }

  auto to = Clock::now();
  if (o.timer) o.timer->start(Phase::optimizer);
  strategy.reduce_gradients();
  const StepScalars s = strategy.loss_and_grad_norm(loss_sum);
  r.loss = s.loss;
  r.grad_norm = s.grad_norm;
  if (o.faults && o.faults->nonfinite_at(o.step)) r.loss = std::numeric_limits<double>::quiet_NaN();
  if (o.faults && o.faults->spike_at(o.step)) r.loss *= 1000;
  r.finite = std::isfinite(r.loss) && std::isfinite(r.grad_norm);
  r.spike = r.finite && r.loss > o.max_loss;
  if (r.finite && !r.spike) {
    if (o.grad_clip > 0 && r.grad_norm > o.grad_clip)
      strategy.scale_gradients(o.grad_clip / (r.grad_norm + 1e-6));
    if (o.layer_stats) r.layer_grad_norms = strategy.layer_grad_norms(model.num_layers());
    r.update_ratios = strategy.step(o.lr, model.num_layers(), o.layer_stats);
  }
  strategy.zero_grads();
  if (o.timer) o.timer->stop(Phase::optimizer);
  r.optimizer_s = seconds_since(to);
  return r;
}

}  // namespace dus
