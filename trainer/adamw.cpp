#include "trainer/adamw.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/zeros_like.h>
#include <c10/core/GradMode.h>

#include <cmath>

namespace dus {

AdamW::AdamW(const std::vector<std::pair<std::string, at::Tensor>>& params, OptimizerOptions options)
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
  const double bias1 = 1.0 - std::pow(options_.beta1, static_cast<double>(steps_));
  const double bias2 = 1.0 - std::pow(options_.beta2, static_cast<double>(steps_));
  const double step_size = lr / bias1;
  const double bias2_sqrt = std::sqrt(bias2);
  for (auto& s : slots_) {
    const at::Tensor& g_raw = s.param.grad();
    if (!g_raw.defined()) continue;
    at::Tensor g = g_raw.scalar_type() == at::kFloat ? g_raw : g_raw.to(at::kFloat);
    // Same operation order as torch.optim.AdamW's single-tensor path.
    if (s.decay && options_.weight_decay != 0) s.master.mul_(1.0 - lr * options_.weight_decay);
    s.exp_avg.lerp_(g, 1.0 - options_.beta1);
    s.exp_avg_sq.mul_(options_.beta2).addcmul_(g, g, 1.0 - options_.beta2);
    at::Tensor denom = (s.exp_avg_sq.sqrt() / bias2_sqrt).add_(options_.eps);
    s.master.addcdiv_(s.exp_avg, denom, -step_size);
    if (!s.master.is_same(s.param)) s.param.copy_(s.master);
  }
}

void AdamW::copy_masters_to_params() {
  c10::NoGradGuard no_grad;
  for (auto& s : slots_)
    if (!s.master.is_same(s.param)) s.param.copy_(s.master);
}

}  // namespace dus
