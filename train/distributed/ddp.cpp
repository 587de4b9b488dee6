#include "train/distributed/ddp.h"

#include <ATen/ops/zeros.h>
#include <c10/core/GradMode.h>

#include <chrono>

#include <fmt/format.h>

#include "core/clock.h"
#include "core/error.h"
#include "train/distributed/grad_ready_hooks.h"

namespace dus::dist {

DdpGradSync::DdpGradSync(std::shared_ptr<ProcessGroup> pg, std::vector<at::Tensor> params,
                         DdpOptions options)
    : pg_(std::move(pg)), params_(std::move(params)), options_(options) {
  // Buckets in reverse model order: the last layers' gradients are final first.
  const double cap = options_.bucket_mb * 1024 * 1024;
  bucket_of_.assign(params_.size(), 0);
  main_grads_.assign(params_.size(), at::Tensor());
  std::vector<std::vector<size_t>> groups;
  double bytes = cap;  // start a new bucket at once
  at::ScalarType dtype = at::kFloat;
  for (size_t k = params_.size(); k-- > 0;) {
    const auto& p = params_[k];
    if (!p.is_contiguous()) throw Error("ddp", fmt::format("parameter {} is not contiguous", k));
    const double b = static_cast<double>(p.numel() * p.element_size());
    if (groups.empty() || bytes + b > cap ||
        (!options_.accumulate_fp32 && p.scalar_type() != dtype)) {
      groups.emplace_back();
      bytes = 0;
      dtype = p.scalar_type();
    }
    groups.back().push_back(k);
    bytes += b;
  }
  c10::NoGradGuard no_grad;
  for (auto& g : groups) {
    Bucket bucket;
    int64_t n = 0;
    for (size_t k : g) n += params_[k].numel();
    auto options = params_[g[0]].options().requires_grad(false);
    if (options_.accumulate_fp32) options = options.dtype(at::kFloat);
    bucket.flat = at::zeros({n}, options);
    int64_t off = 0;
    for (size_t k : g) {
      auto& p = params_[k];
      main_grads_[k] = bucket.flat.narrow(0, off, p.numel()).view(p.sizes());
      if (!options_.accumulate_fp32) p.mutable_grad() = main_grads_[k];
      off += p.numel();
      bucket_of_[k] = buckets_.size();
    }
    bucket.params = g;
    buckets_.push_back(std::move(bucket));
  }
  install_grad_ready_hooks(params_, this);
}

DdpGradSync::~DdpGradSync() {
  remove_grad_ready_hooks(params_);
}

void DdpGradSync::broadcast_parameters() {
  c10::NoGradGuard no_grad;
  for (auto& p : params_) {
    at::Tensor t = p.detach();
    pg_->broadcast(t, 0);
  }
}

void DdpGradSync::begin_micro_step(bool last) {
  armed_ = last;
  if (last) {
    next_launch_ = 0;
    for (auto& b : buckets_) {
      b.pending = b.params.size();
      b.work.reset();
    }
  }
}

void DdpGradSync::on_grad_ready(size_t k) {
  if (options_.accumulate_fp32) {
    // Into the fp32 slice; the compute-dtype gradient is released at once.
    c10::NoGradGuard no_grad;
    at::Tensor& g = params_[k].mutable_grad();
    main_grads_[k].add_(g);
    g = at::Tensor();
  }
  if (!pg_ || !armed_ || !options_.overlap) return;
  Bucket& b = buckets_[bucket_of_[k]];
  if (b.pending > 0) --b.pending;
  launch_ready();
}

void DdpGradSync::launch_ready() {
  // In index order only: the collectives must pair up across ranks.
  while (next_launch_ < buckets_.size() && buckets_[next_launch_].pending == 0) {
    Bucket& b = buckets_[next_launch_++];
    b.work = pg_->all_reduce_sum_async(b.flat);
  }
}

void DdpGradSync::finish() {
  if (!pg_) {
    armed_ = false;
    return;
  }
  // Buckets whose parameters got no gradient (unused this step) or all of them when the hooks
  // were off: launch the rest now, in order.
  for (auto& b : buckets_) b.pending = 0;
  launch_ready();
  const auto t0 = std::chrono::steady_clock::now();
  c10::NoGradGuard no_grad;
  const double inv = 1.0 / static_cast<double>(pg_->size());
  for (auto& b : buckets_) {
    if (b.work) b.work->wait();
    b.work.reset();
    b.flat.mul_(inv);  // sum -> mean: the gradient of the global batch's mean loss
  }
  last_wait_s_ = seconds_since(t0);
  armed_ = false;
}

void DdpGradSync::zero_grads() {
  c10::NoGradGuard no_grad;
  for (auto& b : buckets_) b.flat.zero_();
  if (options_.accumulate_fp32)
    for (auto& p : params_) p.mutable_grad() = at::Tensor();
}

}  // namespace dus::dist
