#include "trainer/distributed/zero1.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/linalg_vector_norm.h>
#include <ATen/ops/zeros.h>
#include <c10/core/GradMode.h>

#include <cmath>

#include "model/error.h"
#include "model/kernels/adamw.h"

namespace dus::dist {

Zero1Optimizer::Zero1Optimizer(std::shared_ptr<ProcessGroup> pg,
                               const std::vector<std::pair<std::string, at::Tensor>>& params,
                               OptimizerOptions options, const NamedTensors& fp32_masters)
    : pg_(std::move(pg)), options_(options) {
  if (pg_) {
    world_ = pg_->size();
    rank_ = pg_->rank();
  }
  if (params.empty()) throw Error("zero1", "the model has no parameters");
  if (fp32_masters.size() != params.size())
    throw Error("zero1", "masters and parameters differ in number");
  for (const auto& [name, p] : params) {
    FlatParam f;
    f.name = name;
    f.shape = p.sizes().vec();
    f.offset = total_;
    f.numel = p.numel();
    total_ += f.numel;
    layout_.push_back(f);
    params_.push_back(p);
    const bool is_embedding = name.find("embed_tokens") != std::string::npos;
    decay_.push_back(options.decay_norms_and_embeddings || (p.dim() >= 2 && !is_embedding));
  }
  shard_ = (total_ + world_ - 1) / world_;
  padded_ = shard_ * world_;
  begin_ = static_cast<int64_t>(rank_) * shard_;
  end_ = std::max(begin_, std::min(begin_ + shard_, total_));

  c10::NoGradGuard no_grad;
  const auto popt = params_[0].options().requires_grad(false);
  flat_params_ = at::zeros({padded_}, popt);
  flat_grads_ = at::zeros({padded_}, popt);
  master_ = at::zeros({shard_}, popt.dtype(at::kFloat));
  exp_avg_ = at::zeros({shard_}, master_.options());
  exp_avg_sq_ = at::zeros({shard_}, master_.options());
  for (size_t i = 0; i < params_.size(); ++i) {
    const FlatParam& f = layout_[i];
    auto& p = params_[i];
    if (p.scalar_type() != flat_params_.scalar_type())
      throw Error("zero1", "parameters differ in dtype");
    // The parameter's storage becomes its slice of the flat buffer; its .grad a slice of the
    // flat gradient buffer (autograd then accumulates into it in place).
    flat_params_.narrow(0, f.offset, f.numel).copy_(p.reshape({-1}));
    p.set_data(flat_params_.narrow(0, f.offset, f.numel).view(f.shape));
    p.mutable_grad() = flat_grads_.narrow(0, f.offset, f.numel).view(f.shape);
    const int64_t s = std::max(begin_, f.offset), t = std::min(end_, f.offset + f.numel);
    if (s < t)
      master_.narrow(0, s - begin_, t - s)
          .copy_(fp32_masters[i].second.reshape({-1}).narrow(0, s - f.offset, t - s));
  }
  // Every rank's parameters from the shard owners: identical everywhere from the first step.
  all_gather_params();
}

void Zero1Optimizer::reduce_gradients() {
  c10::NoGradGuard no_grad;
  if (world_ == 1) {
    grad_shard_ = flat_grads_.to(at::kFloat);
    return;
  }
  at::Tensor out = at::empty({shard_}, flat_grads_.options());
  pg_->reduce_scatter_sum(out, flat_grads_);
  out.mul_(1.0 / static_cast<double>(world_));  // sum -> mean, as ddp does
  grad_shard_ = out.to(at::kFloat);
}

double Zero1Optimizer::grad_norm() {
  c10::NoGradGuard no_grad;
  // Per parameter segment: its L2 norm, squared and summed in double, as global_grad_norm
  // does per tensor (a parameter split across ranks contributes its two parts' squares).
  double sq = 0;
  for (const auto& f : layout_) {
    const int64_t s = std::max(begin_, f.offset), t = std::min(end_, f.offset + f.numel);
    if (s < t) {
      const double n =
          at::linalg_vector_norm(grad_shard_.narrow(0, s - begin_, t - s), 2).item<double>();
      sq += n * n;
    }
  }
  if (world_ > 1) {
    at::Tensor v = at::full({1}, sq, at::TensorOptions().dtype(at::kDouble));
    pg_->all_reduce_sum(v);
    sq = v.item<double>();
  }
  return std::sqrt(sq);
}

void Zero1Optimizer::scale_gradients(double scale) {
  c10::NoGradGuard no_grad;
  grad_shard_.mul_(scale);
}

void Zero1Optimizer::step(double lr) {
  c10::NoGradGuard no_grad;
  ++steps_;
  for (size_t i = 0; i < layout_.size(); ++i) {
    const FlatParam& f = layout_[i];
    const int64_t s = std::max(begin_, f.offset), t = std::min(end_, f.offset + f.numel);
    if (s >= t) continue;
    at::Tensor m = master_.narrow(0, s - begin_, t - s);
    at::Tensor ea = exp_avg_.narrow(0, s - begin_, t - s);
    at::Tensor eas = exp_avg_sq_.narrow(0, s - begin_, t - s);
    at::Tensor g = grad_shard_.narrow(0, s - begin_, t - s);
    // torch.optim.AdamW's single-tensor path on this rank's segment of the flat shards.
    const bool decay = decay_[i] && options_.weight_decay != 0;
    const kernels::AdamWStep hp{steps_,         lr,           options_.beta1,
                                options_.beta2, options_.eps, decay ? options_.weight_decay : 0.0};
    kernels::adamw_step_reference({m}, {g}, {ea}, {eas}, hp);
  }
  all_gather_params();
}

void Zero1Optimizer::all_gather_params() {
  c10::NoGradGuard no_grad;
  at::Tensor local = master_.to(flat_params_.scalar_type()).contiguous();
  if (local.is_same(master_)) local = master_.clone();  // never hand the collective an alias
  if (world_ == 1) {
    flat_params_.narrow(0, 0, shard_).copy_(local);
    return;
  }
  pg_->all_gather(flat_params_, local);
}

void Zero1Optimizer::zero_grads() {
  c10::NoGradGuard no_grad;
  flat_grads_.zero_();
  grad_shard_ = at::Tensor();
}

NamedTensors Zero1Optimizer::shard_tensors() const {
  const int64_t n = end_ - begin_;
  return {{"master", master_.narrow(0, 0, n)},
          {"exp_avg", exp_avg_.narrow(0, 0, n)},
          {"exp_avg_sq", exp_avg_sq_.narrow(0, 0, n)}};
}

void Zero1Optimizer::load(const LoadedCheckpoint& ck) {
  c10::NoGradGuard no_grad;
  const int64_t n = end_ - begin_;
  master_.zero_();
  exp_avg_.zero_();
  exp_avg_sq_.zero_();
  if (n > 0) {
    master_.narrow(0, 0, n).copy_(checkpoint_flat_range(ck, "master", layout_, begin_, end_));
    exp_avg_.narrow(0, 0, n).copy_(checkpoint_flat_range(ck, "exp_avg", layout_, begin_, end_));
    exp_avg_sq_.narrow(0, 0, n).copy_(
        checkpoint_flat_range(ck, "exp_avg_sq", layout_, begin_, end_));
  }
  all_gather_params();
}

NamedTensors Zero1Optimizer::gather_masters() {
  c10::NoGradGuard no_grad;
  at::Tensor all;
  if (world_ == 1) {
    all = master_;
  } else {
    all = at::empty({padded_}, master_.options());
    at::Tensor local = master_.clone();
    pg_->all_gather(all, local);
  }
  NamedTensors out;
  for (const auto& f : layout_)
    out.emplace_back(f.name, all.narrow(0, f.offset, f.numel).view(f.shape));
  return out;
}

}  // namespace dus::dist
