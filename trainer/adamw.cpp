#include "trainer/adamw.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/_foreach_mul.h>
#include <ATen/ops/_foreach_norm.h>
#include <ATen/ops/linalg_vector_norm.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/zeros_like.h>
#include <c10/core/GradMode.h>

#include <algorithm>
#include <cmath>
#include <optional>

#include "model/kernels/adamw.h"
#include "model/kernels/cpu_launch.h"

namespace dus {

AdamW::AdamW(const std::vector<std::pair<std::string, at::Tensor>>& params,
             OptimizerOptions options)
    : options_(options) {
  for (const auto& [name, p] : params) {
    Slot s;
    s.name = name;
    s.param = p;
    // fp32 params are their own master; bf16 params get an fp32 copy (the precise weights).
    s.master = p.scalar_type() == at::kFloat ? p : p.detach().to(at::kFloat);
    s.exp_avg = at::zeros_like(s.master);
    s.exp_avg_sq = at::zeros_like(s.master);
    const bool is_embedding = name.find("embed_tokens") != std::string::npos;
    s.decay = options.decay_norms_and_embeddings || (p.dim() >= 2 && !is_embedding);
    slots_.push_back(std::move(s));
  }
}

void AdamW::step(double lr) {
  c10::NoGradGuard no_grad;
  ++steps_;
  auto step_params = [&](const Slot& s) {
    const bool decay = s.decay && options_.weight_decay != 0;
    return kernels::AdamWStep{steps_,         lr,           options_.beta1,
                              options_.beta2, options_.eps, decay ? options_.weight_decay : 0.0};
  };
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
  for (auto& s : slots_) {
    const at::Tensor& g_raw = s.param.grad();
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
    kernels::cpu::adamw_step_bf16_param(sp->master, sp->param, sp->param.grad(), sp->exp_avg,
                                        sp->exp_avg_sq, step_params(*sp));
  for (Slot* sp : rest) {
    const at::Tensor& g_raw = sp->param.grad();
    at::Tensor g1 = g_raw.scalar_type() == at::kFloat ? g_raw : g_raw.to(at::kFloat);
    kernels::adamw_step_reference({sp->master}, {g1}, {sp->exp_avg}, {sp->exp_avg_sq},
                                  step_params(*sp));
    if (!sp->master.is_same(sp->param)) sp->param.copy_(sp->master);
  }
}

void AdamW::copy_masters_to_params() {
  c10::NoGradGuard no_grad;
  for (auto& s : slots_)
    if (!s.master.is_same(s.param)) s.param.copy_(s.master);
}

double global_grad_norm(const std::vector<at::Tensor>& params) {
  c10::NoGradGuard no_grad;
  std::vector<at::Tensor> grads;
  for (const auto& p : params)
    if (p.grad().defined()) grads.push_back(p.grad());
  if (grads.empty()) return 0;
  // bf16 on the CPU: LibTorch's norm with an fp32 result copies each gradient to fp32 first
  // (on the 100M bench: 0.3 s a step); the loop reads the bf16 values once.
  if (std::all_of(grads.begin(), grads.end(), [](const at::Tensor& g) {
        return g.is_cpu() && g.scalar_type() == at::kBFloat16 && g.is_contiguous();
      })) {
    double sum = 0;
    for (const auto& g : grads) sum += kernels::cpu::sum_of_squares(g);
    return std::sqrt(sum);
  }
  // One norm per tensor (a reduction that reads the gradient once: no squared copy, as
  // g.pow(2).sum() made), in fp32 for bf16/fp16 gradients; their squares summed in fp64, and a
  // single host sync for the whole model. _foreach_norm is one multi-tensor kernel on CUDA.
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
  return at::stack(norms).to(at::kDouble).pow(2).sum().sqrt().item<double>();
}

void scale_grads(const std::vector<at::Tensor>& params, double scale) {
  c10::NoGradGuard no_grad;
  std::vector<at::Tensor> grads;
  for (const auto& p : params)
    if (p.grad().defined()) grads.push_back(p.grad());
  if (!grads.empty()) at::_foreach_mul_(grads, at::Scalar(scale));
}

}  // namespace dus
