#include "model/kernels/adamw.h"

#include <ATen/TensorOperators.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/_fused_adamw.h>
#include <ATen/ops/full.h>

#include <cmath>
#include <map>
#include <tuple>

#include "core/error.h"

namespace dus::kernels {

namespace {
void check_lists(const std::vector<at::Tensor>& params, const std::vector<at::Tensor>& grads,
                 const std::vector<at::Tensor>& exp_avgs,
                 const std::vector<at::Tensor>& exp_avg_sqs) {
  if (grads.size() != params.size() || exp_avgs.size() != params.size() ||
      exp_avg_sqs.size() != params.size())
    throw dus::Error("adamw", "params, grads, exp_avgs and exp_avg_sqs differ in length");
}
}  // namespace

void adamw_step_reference(const std::vector<at::Tensor>& params,
                          const std::vector<at::Tensor>& grads,
                          const std::vector<at::Tensor>& exp_avgs,
                          const std::vector<at::Tensor>& exp_avg_sqs, const AdamWStep& hp) {
  check_lists(params, grads, exp_avgs, exp_avg_sqs);
  at::NoGradGuard no_grad;
  const double bias_correction1 = 1.0 - std::pow(hp.beta1, static_cast<double>(hp.step));
  const double bias_correction2 = 1.0 - std::pow(hp.beta2, static_cast<double>(hp.step));
  const double step_size = hp.lr / bias_correction1;
  for (size_t i = 0; i < params.size(); ++i) {
    auto p = params[i], m = exp_avgs[i], v = exp_avg_sqs[i];
    const auto& g = grads[i];
    // torch.optim.AdamW's single-tensor path, in its order (m by lerp, as torch does).
    if (hp.weight_decay != 0) p.mul_(1.0 - hp.lr * hp.weight_decay);
    m.lerp_(g, 1.0 - hp.beta1);
    v.mul_(hp.beta2).addcmul_(g, g, 1.0 - hp.beta2);
    auto denom = (v.sqrt() / std::sqrt(bias_correction2)).add_(hp.eps);
    p.addcdiv_(m, denom, -step_size);
  }
}

void adamw_step_aten_fused(const std::vector<at::Tensor>& params,
                           const std::vector<at::Tensor>& grads,
                           const std::vector<at::Tensor>& exp_avgs,
                           const std::vector<at::Tensor>& exp_avg_sqs, const AdamWStep& hp) {
  check_lists(params, grads, exp_avgs, exp_avg_sqs);
  if (params.empty()) return;
  at::NoGradGuard no_grad;
  // torch.optim increments its fp32 step tensors before the call; the kernel reads them and
  // never writes them, so one tensor holding this step serves every parameter.
  auto step = at::full({}, static_cast<double>(hp.step), params[0].options().dtype(at::kFloat));
  std::vector<at::Tensor> steps(params.size(), step);
  at::_fused_adamw_(params, grads, exp_avgs, exp_avg_sqs, /*max_exp_avg_sqs=*/{}, steps, hp.lr,
                    hp.beta1, hp.beta2, hp.weight_decay, hp.eps, /*amsgrad=*/false,
                    /*maximize=*/false);
}

void fused_adamw_step(const std::vector<at::Tensor>& params, const std::vector<at::Tensor>& grads,
                      const std::vector<at::Tensor>& exp_avgs,
                      const std::vector<at::Tensor>& exp_avg_sqs, int64_t step, double lr,
                      double beta1, double beta2, double eps, double weight_decay, bool fused) {
  check_lists(params, grads, exp_avgs, exp_avg_sqs);
  const AdamWStep hp{step, lr, beta1, beta2, eps, weight_decay};
  // Group by (device, dtype) as torch.optim does: the fused kernel takes one of each per call.
  using Key = std::tuple<int, int, int>;  // device type, device index, dtype
  struct Group {
    std::vector<at::Tensor> p, g, m, v;
  };
  std::map<Key, Group> fused_groups;
  Group rest;
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& p = params[i];
    const bool fusable = fused && p.is_cuda() && p.is_contiguous() && grads[i].is_contiguous() &&
                         exp_avgs[i].is_contiguous() && exp_avg_sqs[i].is_contiguous() &&
                         grads[i].scalar_type() == p.scalar_type() &&
                         (p.scalar_type() == at::kFloat || p.scalar_type() == at::kBFloat16 ||
                          p.scalar_type() == at::kHalf || p.scalar_type() == at::kDouble);
    Group& grp = fusable ? fused_groups[Key{static_cast<int>(p.device().type()), p.device().index(),
                                            static_cast<int>(p.scalar_type())}]
                         : rest;
    grp.p.push_back(p);
    grp.g.push_back(grads[i]);
    grp.m.push_back(exp_avgs[i]);
    grp.v.push_back(exp_avg_sqs[i]);
  }
  for (auto& [key, grp] : fused_groups) adamw_step_aten_fused(grp.p, grp.g, grp.m, grp.v, hp);
  if (!rest.p.empty()) adamw_step_reference(rest.p, rest.g, rest.m, rest.v, hp);
}

}  // namespace dus::kernels
