#include "train/adamw.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/_foreach_mul.h>
#include <ATen/ops/_foreach_norm.h>
#include <ATen/ops/linalg_vector_norm.h>
#include <ATen/ops/scalar_tensor.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <c10/core/GradMode.h>

#include <algorithm>
#include <cmath>
#include <optional>

#include <fmt/format.h>

#include "core/error.h"
#include "model/kernels/adamw.h"
#include "model/kernels/cpu_launch.h"
#include "train/layer_stats.h"

namespace dus {

AdamW::AdamW(const std::vector<std::pair<std::string, at::Tensor>>& params,
             OptimizerOptions options,
             const std::vector<std::pair<std::string, at::Tensor>>* fp32_masters)
    : options_(options) {
  if (options_.chunk_elements <= 0) throw Error("optimizer", "chunk_elements must be positive");
  if (fp32_masters && fp32_masters->size() != params.size())
    throw Error("optimizer", fmt::format("{} master weights for {} parameters",
                                         fp32_masters->size(), params.size()));
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& [name, p] = params[i];
    Slot s;
    s.name = name;
    s.param = p;
    // fp32 params are their own master; bf16 params get fp32 masters (the precise weights).
    if (p.scalar_type() == at::kFloat) {
      s.master = p;
    } else if (fp32_masters) {
      const auto& [master_name, m] = (*fp32_masters)[i];
      if (master_name != name || !m.sizes().equals(p.sizes()))
        throw Error("optimizer", "master weight " + master_name + " does not match parameter " +
                                     name + " (order or shape)");
      s.master = m.detach().to(p.device(), at::kFloat).contiguous();
    } else {
      s.master = p.detach().to(at::kFloat);
    }
    s.exp_avg = at::zeros_like(s.master);
    s.exp_avg_sq = at::zeros_like(s.master);
    const bool is_embedding = name.find("embed_tokens") != std::string::npos;
    s.decay = options.decay_norms_and_embeddings || (p.dim() >= 2 && !is_embedding);
    slots_.push_back(std::move(s));
  }
}

void AdamW::step(double lr, LayerUpdateSums* update_sums) {
  c10::NoGradGuard no_grad;
  ++steps_;
  size_t begin = 0;
  while (begin < slots_.size()) {
    size_t end = begin;
    int64_t elements = 0;
    do {
      elements += slots_[end].master.numel();
      ++end;
    } while (end < slots_.size() &&
             elements + slots_[end].master.numel() <= options_.chunk_elements);
    step_chunk(begin, end, lr, update_sums);
    begin = end;
  }
}

void AdamW::step_chunk(size_t begin, size_t end, double lr, LayerUpdateSums* update_sums) {
  auto step_params = [&](const Slot& s) {
    const bool decay = s.decay && options_.weight_decay != 0;
    return kernels::AdamWStep{steps_,         lr,           options_.beta1,
                              options_.beta2, options_.eps, decay ? options_.weight_decay : 0.0};
  };
  // The old masters of this chunk, for the update ratios (dropped when the chunk is done).
  std::vector<at::Tensor> before;
  if (update_sums)
    for (size_t i = begin; i < end; ++i)
      before.push_back(slots_[i].gradient().defined() ? slots_[i].master.clone() : at::Tensor());
  // Three paths, one formula (model/kernels/adamw.h):
  // - bf16 parameters on the CPU: one loop reads the bf16 gradient and writes master, moments
  //   and the bf16 parameter (kernels/adamw_cpu.cpp) instead of three passes and a temporary;
  // - otherwise LibTorch's fused AdamW kernel (CPU and CUDA; what torch.optim.AdamW(fused=True)
  //   runs): one vectorised pass per tensor instead of eight ops with full-size temporaries,
  //   rounded in another order (within 1e-6 of torch.optim.AdamW, tests/test_optim.cpp); two
  //   calls, with and without weight decay;
  // - slots neither takes (non-contiguous): the reference, torch's single-tensor op sequence.
  std::vector<at::Tensor> p[2], g[2], m[2], v[2];
  std::vector<Slot*> fused, rest, bf16_on_cpu;
  for (size_t i = begin; i < end; ++i) {
    Slot& s = slots_[i];
    const at::Tensor& g_raw = s.gradient();
    if (!g_raw.defined()) continue;
    if (s.param.is_cpu() && s.param.scalar_type() == at::kBFloat16 &&
        g_raw.scalar_type() == at::kBFloat16 && s.param.is_contiguous() && g_raw.is_contiguous() &&
        s.master.is_contiguous() && s.exp_avg.is_contiguous() && s.exp_avg_sq.is_contiguous()) {
      bf16_on_cpu.push_back(&s);
      continue;
    }
    const bool fusable = s.master.is_contiguous() && g_raw.is_contiguous() &&
                         s.exp_avg.is_contiguous() && s.exp_avg_sq.is_contiguous() &&
                         (s.master.is_cpu() || s.master.is_cuda()) &&
                         g_raw.device() == s.master.device();
    if (!fusable) {
      rest.push_back(&s);
      continue;
    }
    const int k = s.decay && options_.weight_decay != 0 ? 1 : 0;
    fused.push_back(&s);
    p[k].push_back(s.master);
    g[k].push_back(g_raw.scalar_type() == at::kFloat ? g_raw : g_raw.to(at::kFloat));
    m[k].push_back(s.exp_avg);
    v[k].push_back(s.exp_avg_sq);
  }
  for (int k = 0; k < 2; ++k) {
    if (p[k].empty()) continue;
    const kernels::AdamWStep hp{steps_,         lr,           options_.beta1,
                                options_.beta2, options_.eps, k ? options_.weight_decay : 0.0};
    kernels::adamw_step_aten_fused(p[k], g[k], m[k], v[k], hp);
  }
  for (Slot* sp : fused)
    if (!sp->master.is_same(sp->param)) sp->param.copy_(sp->master);
  for (Slot* sp : bf16_on_cpu)
    kernels::cpu::adamw_step_bf16_param(sp->master, sp->param, sp->gradient(), sp->exp_avg,
                                        sp->exp_avg_sq, step_params(*sp));
  for (Slot* sp : rest) {
    const at::Tensor& g_raw = sp->gradient();
    at::Tensor g1 = g_raw.scalar_type() == at::kFloat ? g_raw : g_raw.to(at::kFloat);
    kernels::adamw_step_reference({sp->master}, {g1}, {sp->exp_avg}, {sp->exp_avg_sq},
                                  step_params(*sp));
    if (!sp->master.is_same(sp->param)) sp->param.copy_(sp->master);
  }
  if (update_sums)
    for (size_t i = begin; i < end; ++i)
      if (before[i - begin].defined())
        update_sums->add(layer_index_of(slots_[i].name), before[i - begin], slots_[i].master);
}

void AdamW::copy_masters_to_params() {
  c10::NoGradGuard no_grad;
  for (auto& s : slots_)
    if (!s.master.is_same(s.param)) s.param.copy_(s.master);
}

std::vector<at::Tensor> grads_of(const std::vector<at::Tensor>& params) {
  std::vector<at::Tensor> grads;
  for (const auto& p : params) grads.push_back(p.grad());
  return grads;
}

at::Tensor grad_norm_squared(const std::vector<at::Tensor>& all) {
  c10::NoGradGuard no_grad;
  std::vector<at::Tensor> grads;
  for (const auto& g : all)
    if (g.defined()) grads.push_back(g);
  if (grads.empty()) return at::zeros({}, at::TensorOptions().dtype(at::kDouble));
  // bf16 on the CPU: LibTorch's norm with an fp32 result copies each gradient to fp32 first;
  // the loop reads the bf16 values once.
  if (std::all_of(grads.begin(), grads.end(), [](const at::Tensor& g) {
        return g.is_cpu() && g.scalar_type() == at::kBFloat16 && g.is_contiguous();
      })) {
    double sum = 0;
    for (const auto& g : grads) sum += kernels::cpu::sum_of_squares(g);
    return at::scalar_tensor(sum, at::TensorOptions().dtype(at::kDouble));
  }
  // One norm per tensor (a reduction that reads the gradient once: no squared copy, as
  // g.pow(2).sum() made), in fp32 for bf16/fp16 gradients; their squares summed in fp64.
  // _foreach_norm is one multi-tensor kernel on CUDA.
  const auto dtype = grads[0].scalar_type();
  const bool uniform = std::all_of(grads.begin(), grads.end(),
                                   [&](const at::Tensor& g) { return g.scalar_type() == dtype; });
  auto accumulate = [](at::ScalarType t) -> std::optional<at::ScalarType> {
    if (t == at::kBFloat16 || t == at::kHalf) return at::kFloat;
    return std::nullopt;
  };
  std::vector<at::Tensor> norms;
  if (uniform) {
    norms = at::_foreach_norm(grads, 2, accumulate(dtype));
  } else {
    for (const auto& g : grads)
      norms.push_back(
          at::linalg_vector_norm(g, 2, std::nullopt, false, accumulate(g.scalar_type())));
  }
  return at::stack(norms).to(at::kDouble).pow(2).sum();
}

double global_grad_norm(const std::vector<at::Tensor>& params) {
  // sqrt on the host of the fp64 sum: the same double as the device's sqrt (IEEE-exact).
  return std::sqrt(grad_norm_squared(grads_of(params)).item<double>());
}

void scale_gradients(const std::vector<at::Tensor>& all, double scale) {
  c10::NoGradGuard no_grad;
  std::vector<at::Tensor> grads;
  for (const auto& g : all)
    if (g.defined()) grads.push_back(g);
  if (!grads.empty()) at::_foreach_mul_(grads, at::Scalar(scale));
}

}  // namespace dus
