#include "train/optimizer_strategy.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/ops/scalar_tensor.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/zeros_like.h>
#include <c10/core/GradMode.h>

#include <cmath>

#include <fmt/format.h>

#include "core/error.h"
#include "train/distributed/ddp.h"
#include "train/distributed/process_group.h"
#include "train/distributed/sharded_optimizer.h"
#include "train/layer_stats.h"

namespace dus {

namespace {

// Single process and ddp: every rank holds the whole optimizer. Under ddp the gradients live in
// flat buckets that are all-reduced during the last micro-batch's backward (distributed/ddp.h),
// so every rank takes the same step.
class ReplicatedStrategy : public OptimizerStrategy {
 public:
  ReplicatedStrategy(const StrategyOptions& o, std::shared_ptr<dist::ProcessGroup> pg,
                     const std::vector<std::pair<std::string, at::Tensor>>& params,
                     const NamedTensors& fp32_masters)
      : pg_(std::move(pg)), bucket_mb_(o.bucket_mb) {
    c10::NoGradGuard no_grad;
    for (const auto& [name, p] : params) {
      at::Tensor placed = p.detach().to(o.device, o.compute_dtype);
      if (!placed.is_same(p)) p.set_data(placed);
      params_.push_back(p);
    }
    optimizer_ = std::make_unique<AdamW>(params, o.optimizer, &fp32_masters);
    // fp32 accumulation matters only when the parameters (and so autograd's gradients) are not
    // fp32 already, and something is added up: micro-batches, or ranks. One backward of one
    // process gives a compute-dtype gradient that widening would not make more exact.
    const bool fp32_buffer =
        o.grad_accumulation_fp32 && o.compute_dtype != at::kFloat && (pg_ || o.micro_batches > 1);
    if (!pg_ && !fp32_buffer) return;
    ddp_ = std::make_unique<dist::DdpGradSync>(
        pg_, params_, dist::DdpOptions{o.bucket_mb, /*overlap=*/true, fp32_buffer});
    if (fp32_buffer)
      for (size_t i = 0; i < params_.size(); ++i)
        optimizer_->slots()[i].grad = ddp_->main_grads()[i];
    if (!pg_) return;
    // Every rank starts from rank 0's weights (fp32 masters included), whatever its init did.
    for (auto& slot : optimizer_->slots()) pg_->broadcast(slot.master, 0);
    optimizer_->copy_masters_to_params();
  }

  std::string name() const override { return pg_ ? "ddp" : "single"; }
  std::string describe() const override {
    const std::string grads = ddp_ && ddp_->accumulates_fp32()
                                  ? "gradients accumulated in an fp32 buffer"
                                  : "gradients in the compute dtype";
    if (!pg_) return "single process: AdamW with the whole optimizer state; " + grads;
    return fmt::format(
        "{} gradient buckets of <= {:.0f} MiB, all-reduce overlapped with backward; {}",
        ddp_->buckets(), bucket_mb_, grads);
  }

  void begin_micro_step(bool last) override {
    if (ddp_) ddp_->begin_micro_step(last);  // communicate on the last micro-step only
  }
  void reduce_gradients() override {
    if (ddp_) ddp_->finish();  // every .grad now the mean over ranks
  }

  StepScalars loss_and_grad_norm(const at::Tensor& local_loss_sum) override {
    c10::NoGradGuard no_grad;
    at::Tensor norm_sq = grad_norm_squared(grads());
    at::Tensor loss = local_loss_sum.to(at::kDouble);
    if (pg_) {
      // The gradients are the same on every rank after the all-reduce: rank 0 alone
      // contributes the norm, so the sum over ranks is its value exactly.
      if (pg_->rank() != 0) norm_sq = at::zeros_like(norm_sq);
      at::Tensor v = at::stack({loss, norm_sq.to(loss.device())});
      pg_->all_reduce_sum(v);
      v = v.cpu();
      return {v[0].item<double>() / static_cast<double>(pg_->size()),
              std::sqrt(v[1].item<double>())};
    }
    at::Tensor v = at::stack({loss.cpu(), norm_sq.cpu()});
    return {v[0].item<double>(), std::sqrt(v[1].item<double>())};
  }

  std::vector<double> layer_grad_norms(int64_t num_layers) override {
    std::vector<std::pair<int64_t, at::Tensor>> grads;
    for (const auto& slot : optimizer_->slots())
      grads.emplace_back(layer_index_of(slot.name), slot.gradient());
    std::vector<double> out = layer_sums_of_squares(grads, num_layers);
    for (double& x : out) x = std::sqrt(x);
    return out;
  }

  void scale_gradients(double scale) override { dus::scale_gradients(grads(), scale); }

  std::vector<double> step(double lr, int64_t num_layers, bool update_ratios) override {
    if (!update_ratios) {
      optimizer_->step(lr);
      return {};
    }
    LayerUpdateSums sums(num_layers);
    optimizer_->step(lr, &sums);
    return LayerUpdateSums::ratios(sums.values());
  }

  void zero_grads() override {
    if (ddp_) {
      ddp_->zero_grads();  // the .grad views into the buckets (or the fp32 buffer) stay
      return;
    }
    for (auto& p : params_) p.mutable_grad() = at::Tensor();
  }

  double reduce_bytes_per_step(int64_t /*micro_batches*/) const override {
    if (!pg_) return 0;
    double bytes = 0;  // one all-reduce of every gradient per step, in the buckets' dtype
    for (size_t i = 0; i < params_.size(); ++i)
      bytes += static_cast<double>(params_[i].numel()) *
               (ddp_->accumulates_fp32() ? 4.0 : static_cast<double>(params_[i].element_size()));
    return bytes;
  }

  int64_t steps_taken() const override { return optimizer_->steps_taken(); }
  void set_steps_taken(int64_t steps) override { optimizer_->set_steps_taken(steps); }

  std::string save_checkpoint(const std::string& run_dir, CheckpointContents c,
                              int64_t keep) override {
    if (pg_ && pg_->rank() != 0) return "";  // every rank holds the same state; rank 0 writes
    for (auto& slot : optimizer_->slots()) {
      c.model.emplace_back(slot.name, slot.master);
      c.optimizer.emplace_back("exp_avg." + slot.name, slot.exp_avg);
      c.optimizer.emplace_back("exp_avg_sq." + slot.name, slot.exp_avg_sq);
    }
    c.optimizer.emplace_back("rng.cpu", at::detail::getDefaultCPUGenerator().get_state());
    return dus::save_checkpoint(run_dir, c, keep);
  }

  void load(const LoadedCheckpoint& ck) override {
    c10::NoGradGuard no_grad;
    for (auto& slot : optimizer_->slots()) {
      slot.master.copy_(checkpoint_tensor(ck, "master", slot.name));
      slot.exp_avg.copy_(checkpoint_tensor(ck, "exp_avg", slot.name));
      slot.exp_avg_sq.copy_(checkpoint_tensor(ck, "exp_avg_sq", slot.name));
    }
    optimizer_->copy_masters_to_params();
  }

  NamedTensors gather_masters() override {
    NamedTensors out;
    for (auto& slot : optimizer_->slots()) out.emplace_back(slot.name, slot.master);
    return out;
  }

 private:
  /// The gradients AdamW steps on, in parameter order.
  std::vector<at::Tensor> grads() const {
    if (ddp_ && ddp_->accumulates_fp32()) return ddp_->main_grads();
    return grads_of(params_);
  }

  std::shared_ptr<dist::ProcessGroup> pg_;
  double bucket_mb_;
  std::vector<at::Tensor> params_;
  std::unique_ptr<AdamW> optimizer_;
  std::unique_ptr<dist::DdpGradSync> ddp_;
};

}  // namespace

std::unique_ptr<OptimizerStrategy> make_optimizer_strategy(
    const StrategyOptions& options, std::shared_ptr<dist::ProcessGroup> pg,
    const std::vector<std::pair<std::string, at::Tensor>>& params,
    const NamedTensors& fp32_masters) {
  if (options.strategy == "zero1" || options.strategy == "zero2")
    return std::make_unique<dist::ShardedOptimizer>(options.strategy == "zero1" ? 1 : 2,
                                                    std::move(pg), params, options, fp32_masters);
  if (options.strategy != "ddp")
    throw Error("distributed.strategy",
                "\"" + options.strategy + "\" is not one of ddp|zero1|zero2");
  return std::make_unique<ReplicatedStrategy>(options, std::move(pg), params, fp32_masters);
}

}  // namespace dus
