#include "train/distributed/sharded_optimizer.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/_foreach_norm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/linalg_vector_norm.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/zeros.h>
#include <c10/core/GradMode.h>

#include <cmath>

#include <fmt/format.h>

#include "core/error.h"
#include "model/kernels/adamw.h"
#include "train/distributed/grad_ready_hooks.h"
#include "train/layer_stats.h"

namespace dus::dist {

ShardedOptimizer::ShardedOptimizer(int stage, std::shared_ptr<ProcessGroup> pg,
                                   const std::vector<std::pair<std::string, at::Tensor>>& params,
                                   const StrategyOptions& options, const NamedTensors& fp32_masters)
    : stage_(stage), pg_(std::move(pg)), options_(options.optimizer) {
  if (stage_ != 1 && stage_ != 2)
    throw Error("distributed.strategy", fmt::format("ZeRO stage {} is not 1 or 2", stage_));
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
    decay_.push_back(options_.decay_norms_and_embeddings || (p.dim() >= 2 && !is_embedding));
  }
  shard_ = (total_ + world_ - 1) / world_;
  padded_ = shard_ * world_;
  begin_ = static_cast<int64_t>(rank_) * shard_;
  end_ = std::max(begin_, std::min(begin_ + shard_, total_));

  c10::NoGradGuard no_grad;
  const auto popt = at::TensorOptions().dtype(options.compute_dtype).device(options.device);
  flat_params_ = at::zeros({padded_}, popt);
  master_ = at::zeros({shard_}, popt.dtype(at::kFloat));
  exp_avg_ = at::zeros({shard_}, master_.options());
  exp_avg_sq_ = at::zeros({shard_}, master_.options());
  for (size_t i = 0; i < params_.size(); ++i) {
    const FlatParam& f = layout_[i];
    auto& p = params_[i];
    if (fp32_masters[i].first != f.name || fp32_masters[i].second.numel() != f.numel)
      throw Error("zero1", "master weight " + fp32_masters[i].first + " does not match parameter " +
                               f.name + " (order or size)");
    // The parameter's storage becomes its slice of the flat buffer (converted to the compute
    // device and dtype on the way); its old storage is freed here unless the caller holds it.
    flat_params_.narrow(0, f.offset, f.numel).copy_(p.detach().reshape({-1}));
    p.set_data(flat_params_.narrow(0, f.offset, f.numel).view(f.shape));
    const auto [s, t] = owned(i);
    if (s < t)
      master_.narrow(0, s - begin_, t - s)
          .copy_(fp32_masters[i].second.reshape({-1}).narrow(0, s - f.offset, t - s));
  }
  if (stage_ == 1) {
    // The gradient buffer only now: while the parameters moved in, their old copies (on this
    // device when the caller placed them there) and the flat buffer coexisted.
    flat_grads_ = at::zeros({padded_}, popt);
    for (size_t i = 0; i < params_.size(); ++i) {
      const FlatParam& f = layout_[i];
      // autograd accumulates each micro-batch's gradient into this view in place.
      params_[i].mutable_grad() = flat_grads_.narrow(0, f.offset, f.numel).view(f.shape);
    }
  }
  if (stage_ == 2) grad_shard_ = at::zeros({shard_}, master_.options());
  build_buckets(options.bucket_mb);
  install_grad_ready_hooks(params_, this);
  // Every rank's parameters from the shard owners: identical everywhere from the first step.
  all_gather_params();
}

ShardedOptimizer::~ShardedOptimizer() {
  remove_grad_ready_hooks(params_);
}

void ShardedOptimizer::build_buckets(double bucket_mb) {
  // Reverse model order: the last layers' gradients are final first. A bucket holds whole
  // parameters, so it is complete when its parameters' hooks have all fired.
  const double cap = bucket_mb * 1024 * 1024 / 4;  // elements (sized as fp32)
  bucket_of_.assign(params_.size(), 0);
  std::vector<std::vector<size_t>> groups;
  double elements = cap;
  for (size_t k = params_.size(); k-- > 0;) {
    const double n = static_cast<double>(layout_[k].numel);
    if (groups.empty() || elements + n > cap) {
      groups.emplace_back();
      elements = 0;
    }
    groups.back().push_back(k);
    elements += n;
  }
  for (auto& g : groups) {
    Bucket b;
    b.params = g;
    b.lo = layout_[g.back()].offset;  // g runs from the last parameter down
    b.hi = layout_[g.front()].offset + layout_[g.front()].numel;
    for (size_t k : g) bucket_of_[k] = buckets_.size();
    for (int r = 0; r < world_; ++r) {
      const auto [s, e] = shard_range(r);
      const int64_t lo = std::max(b.lo, s), hi = std::min(b.hi, e);
      if (lo < hi) b.pieces.push_back({r, lo, hi});
    }
    buckets_.push_back(std::move(b));
  }
}

double ShardedOptimizer::reduce_bytes_per_step(int64_t micro_batches) const {
  if (world_ == 1) return 0;
  const double bytes = stage_ == 1 ? static_cast<double>(flat_params_.element_size()) : 4.0;
  return static_cast<double>(total_) * bytes * static_cast<double>(stage_ == 1 ? 1 : micro_batches);
}

void ShardedOptimizer::begin_micro_step(bool last) {
  // zero2 reduces every micro-batch: what the previous backward left in flight completes now
  // (it overlapped this micro-batch's forward). zero1 communicates in the last one only.
  if (stage_ == 2 && armed_) flush();
  armed_ = stage_ == 2 || last;
  next_launch_ = 0;
  for (auto& b : buckets_) {
    b.pending = b.params.size();
    b.launched = false;
  }
}

void ShardedOptimizer::on_grad_ready(size_t k) {
  if (stage_ == 2) {
    // Into the bucket's fp32 staging, then the compute-dtype gradient is released: zero2 never
    // holds more than the parameters being differentiated plus the staged buckets.
    c10::NoGradGuard no_grad;
    Bucket& b = buckets_[bucket_of_[k]];
    at::Tensor& g = params_[k].mutable_grad();
    if (!b.staging.defined()) b.staging = at::zeros({b.hi - b.lo}, g.options().dtype(at::kFloat));
    const FlatParam& f = layout_[k];
    b.staging.narrow(0, f.offset - b.lo, f.numel).add_(g.reshape({-1}));
    g = at::Tensor();
  }
  if (!armed_) return;
  Bucket& b = buckets_[bucket_of_[k]];
  if (b.pending > 0) --b.pending;
  launch_ready();
}

void ShardedOptimizer::launch_ready() {
  // In index order only: the collectives must pair up across ranks.
  while (next_launch_ < buckets_.size() && buckets_[next_launch_].pending == 0) {
    Bucket& b = buckets_[next_launch_++];
    launch(b);
  }
}

void ShardedOptimizer::launch(Bucket& b) {
  c10::NoGradGuard no_grad;
  b.launched = true;
  if (stage_ == 2) {
    if (!b.staging.defined())  // no parameter of it had a gradient: zeros still take part
      b.staging = at::zeros({b.hi - b.lo}, master_.options());
    // Bounded staging: the oldest bucket in flight completes before another one is added.
    while (in_flight_.size() >= max_in_flight_) {
      complete(buckets_[in_flight_.front()]);
      in_flight_.erase(in_flight_.begin());
    }
    in_flight_.push_back(static_cast<size_t>(&b - buckets_.data()));
  }
  if (world_ == 1) return;
  at::Tensor flat = stage_ == 1 ? flat_grads_.narrow(0, b.lo, b.hi - b.lo) : b.staging;
  for (const Piece& piece : b.pieces)
    b.work.push_back(
        pg_->reduce_sum_async(flat.narrow(0, piece.lo - b.lo, piece.hi - piece.lo), piece.owner));
}

void ShardedOptimizer::complete(Bucket& b) {
  for (auto& w : b.work) w->wait();
  b.work.clear();
  if (stage_ != 2) return;
  c10::NoGradGuard no_grad;
  for (const Piece& piece : b.pieces)
    if (piece.owner == rank_)
      grad_shard_.narrow(0, piece.lo - begin_, piece.hi - piece.lo)
          .add_(b.staging.narrow(0, piece.lo - b.lo, piece.hi - piece.lo));
  b.staging = at::Tensor();
}

void ShardedOptimizer::flush() {
  // Buckets whose parameters got no gradient this backward: launch the rest now, in order.
  for (auto& b : buckets_) b.pending = 0;
  launch_ready();
  if (stage_ == 2) {
    for (size_t i : in_flight_) complete(buckets_[i]);
    in_flight_.clear();
  } else {
    for (auto& b : buckets_) complete(b);
  }
  armed_ = false;
}

std::string ShardedOptimizer::describe() const {
  std::string d = fmt::format(
      "fp32 masters and moments sharded over {} rank(s) ({} of {} parameters here); {} gradient "
      "buckets ",
      world_, shard_, total_, buckets_.size());
  d += stage_ == 1 ? "reduced in the compute dtype during the last micro-batch's backward"
                   : "accumulated and reduced in fp32 every micro-batch into a sharded fp32 "
                     "gradient";
  return d;
}

void ShardedOptimizer::reduce_gradients() {
  c10::NoGradGuard no_grad;
  flush();
  const double inv = 1.0 / static_cast<double>(world_);  // sum -> mean, as ddp does
  if (stage_ == 1)
    grad_shard_ = flat_grads_.narrow(0, begin_, shard_).to(at::kFloat).mul_(inv);
  else if (world_ > 1)
    grad_shard_.mul_(inv);
}

std::vector<double> ShardedOptimizer::sum_over_ranks(std::vector<double> v) {
  if (world_ == 1 || v.empty()) return v;
  return pg_->all_reduce_scalars(std::move(v));
}

StepScalars ShardedOptimizer::loss_and_grad_norm(const at::Tensor& local_loss_sum) {
  c10::NoGradGuard no_grad;
  // Per parameter segment: its L2 norm, squared and summed in fp64, as global_grad_norm does
  // per tensor (a parameter split across ranks contributes its two parts' squares); the sum and
  // the loss travel in one all-reduce and reach the host in one copy.
  std::vector<at::Tensor> segments;
  for (size_t i = 0; i < layout_.size(); ++i) {
    const auto [s, t] = owned(i);
    if (s < t) segments.push_back(grad_shard_.narrow(0, s - begin_, t - s));
  }
  at::Tensor loss = local_loss_sum.to(at::kDouble).to(master_.device());
  at::Tensor norm_sq = segments.empty()
                           ? at::zeros({}, loss.options())
                           : at::stack(at::_foreach_norm(segments, 2)).to(at::kDouble).pow(2).sum();
  at::Tensor v = at::stack({loss, norm_sq});
  if (world_ > 1) pg_->all_reduce_sum(v);
  v = v.cpu();
  return {v[0].item<double>() / static_cast<double>(world_), std::sqrt(v[1].item<double>())};
}

std::vector<double> ShardedOptimizer::layer_grad_norms(int64_t num_layers) {
  // Each rank sums its shard's segments per layer; a parameter split across ranks contributes
  // its parts' squares.
  std::vector<std::pair<int64_t, at::Tensor>> segments;
  for (size_t i = 0; i < layout_.size(); ++i) {
    const auto [s, t] = owned(i);
    if (s < t)
      segments.emplace_back(layer_index_of(layout_[i].name),
                            grad_shard_.narrow(0, s - begin_, t - s));
  }
  std::vector<double> out = sum_over_ranks(layer_sums_of_squares(segments, num_layers));
  for (double& x : out) x = std::sqrt(x);
  return out;
}

void ShardedOptimizer::scale_gradients(double scale) {
  c10::NoGradGuard no_grad;
  grad_shard_.mul_(scale);
}

std::vector<double> ShardedOptimizer::step(double lr, int64_t num_layers, bool update_ratios) {
  c10::NoGradGuard no_grad;
  ++steps_;
  LayerUpdateSums sums(num_layers);
  // This rank's segments in chunks of at most chunk_elements, each through LibTorch's fused
  // AdamW (two calls: with and without weight decay); with update ratios, a chunk's old masters
  // are copied first and compared after.
  size_t i = 0;
  while (i < layout_.size()) {
    std::vector<at::Tensor> p[2], g[2], m[2], v[2];
    std::vector<std::pair<size_t, at::Tensor>> before;  // (parameter, old master segment)
    int64_t elements = 0;
    for (; i < layout_.size(); ++i) {
      const auto [s, t] = owned(i);
      if (s >= t) continue;
      if (elements > 0 && elements + (t - s) > options_.chunk_elements) break;
      elements += t - s;
      const int k = decay_[i] && options_.weight_decay != 0 ? 1 : 0;
      at::Tensor seg = master_.narrow(0, s - begin_, t - s);
      if (update_ratios) before.emplace_back(i, seg.clone());
      p[k].push_back(seg);
      g[k].push_back(grad_shard_.narrow(0, s - begin_, t - s));
      m[k].push_back(exp_avg_.narrow(0, s - begin_, t - s));
      v[k].push_back(exp_avg_sq_.narrow(0, s - begin_, t - s));
    }
    for (int k = 0; k < 2; ++k) {
      if (p[k].empty()) continue;
      const kernels::AdamWStep hp{steps_,         lr,           options_.beta1,
                                  options_.beta2, options_.eps, k ? options_.weight_decay : 0.0};
      kernels::adamw_step_aten_fused(p[k], g[k], m[k], v[k], hp);
    }
    for (const auto& [j, old] : before) {
      const auto [s, t] = owned(j);
      sums.add(layer_index_of(layout_[j].name), old, master_.narrow(0, s - begin_, t - s));
    }
  }
  all_gather_params();
  if (!update_ratios) return {};
  return LayerUpdateSums::ratios(sum_over_ranks(sums.values()));
}

void ShardedOptimizer::all_gather_params() {
  c10::NoGradGuard no_grad;
  at::Tensor local = master_.to(flat_params_.scalar_type()).contiguous();
  if (local.is_same(master_)) local = master_.clone();  // never hand the collective an alias
  if (world_ == 1) {
    flat_params_.narrow(0, 0, shard_).copy_(local);
    return;
  }
  pg_->all_gather(flat_params_, local);
}

void ShardedOptimizer::zero_grads() {
  c10::NoGradGuard no_grad;
  if (stage_ == 1) {
    flat_grads_.zero_();
    grad_shard_ = at::Tensor();  // the fp32 shard exists from reduce_gradients to the step
  } else {
    grad_shard_.zero_();
    for (auto& p : params_) p.mutable_grad() = at::Tensor();
  }
}

NamedTensors ShardedOptimizer::shard_tensors() const {
  const int64_t n = end_ - begin_;
  return {{"master", master_.narrow(0, 0, n)},
          {"exp_avg", exp_avg_.narrow(0, 0, n)},
          {"exp_avg_sq", exp_avg_sq_.narrow(0, 0, n)}};
}

void ShardedOptimizer::load(const LoadedCheckpoint& ck) {
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

NamedTensors ShardedOptimizer::gather_masters() {
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

std::string ShardedOptimizer::save_checkpoint(const std::string& run_dir, CheckpointContents c,
                                              int64_t keep) {
  // Every rank writes its shard into step_N.tmp; rank 0 then the manifest (state.json, last)
  // and the rename: the checkpoint appears whole or not at all. A rank whose part fails (disk
  // full) still takes part in every collective below, so that all ranks learn of the failure
  // together and go on training rather than wait for one another.
  const bool root = rank_ == 0;
  const std::string tmp = run_dir + "/checkpoints/" + checkpoint_dir_name(c.step) + ".tmp";
  std::string failure;
  auto attempt = [&failure](const auto& write) {
    if (!failure.empty()) return;
    try {
      write();
    } catch (const std::exception& e) {
      failure = e.what();
    }
  };
  if (root) attempt([&] { begin_checkpoint(run_dir, c.step); });
  if (pg_) pg_->barrier();
  NamedTensors shard = shard_tensors();
  if (root) shard.emplace_back("rng.cpu", at::detail::getDefaultCPUGenerator().get_state());
  attempt([&] {
    write_safetensors(tmp + "/" + zero1_shard_file(rank_), shard,
                      {{"step", std::to_string(c.step)},
                       {"begin", std::to_string(begin_)},
                       {"end", std::to_string(end_)}});
  });
  const bool all_written = !pg_ || pg_->all_reduce_scalars({failure.empty() ? 0.0 : 1.0})[0] == 0;
  std::string dir;
  if (root && all_written) {
    json::Array shards;
    for (int r = 0; r < world_; ++r) {
      auto [b, e] = shard_range(r);
      shards.push_back(json::Value(
          json::Array{json::Value(zero1_shard_file(r)), json::Value(b), json::Value(e)}));
    }
    json::Value manifest(json::Object{});
    manifest.set("world_size", json::Value(world_));
    manifest.set("params", flat_layout_to_json(layout_));
    manifest.set("shards", json::Value(std::move(shards)));
    c.state.set("zero1", manifest);
    attempt([&] { dir = commit_checkpoint(run_dir, c, keep); });
  }
  if (pg_) pg_->barrier();
  if (!failure.empty()) throw Error(tmp, failure);
  if (!all_written) throw Error(tmp, "another rank could not write its shard");
  return dir;
}

}  // namespace dus::dist
