#include "model/kernels/swiglu.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/silu.h>
#include <ATen/record_function.h>
#include <torch/csrc/autograd/custom_function.h>

#include "model/kernels/cpu_launch.h"
#include "model/kernels/cuda_launch.h"

namespace dus::kernels {

at::Tensor swiglu_reference(const at::Tensor& gate, const at::Tensor& up) {
  return at::silu(gate) * up;
}

bool swiglu_fusable(const at::Tensor& gate, const at::Tensor& up) {
  return (cuda::fusable(gate) || cpu::fusable(gate)) && up.device() == gate.device() &&
         up.scalar_type() == gate.scalar_type() && up.sizes() == gate.sizes();
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Saves gate and up (the inputs; no extra activation memory beyond what eager keeps).
struct SwigluFunction : public torch::autograd::Function<SwigluFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& gate, const at::Tensor& up) {
    RECORD_FUNCTION("dus::swiglu", std::vector<c10::IValue>{});  // named in --profile traces
    auto g = gate.contiguous(), u = up.contiguous();
    ctx->save_for_backward({g, u});
    return g.is_cuda() ? cuda::swiglu_forward(g, u) : cpu::swiglu_forward(g, u);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    auto dy = grads[0].contiguous();
    auto [dgate, dup] = dy.is_cuda() ? cuda::swiglu_backward(dy, saved[0], saved[1])
                                     : cpu::swiglu_backward(dy, saved[0], saved[1]);
    return {dgate, dup};
  }
};

}  // namespace

at::Tensor swiglu(const at::Tensor& gate, const at::Tensor& up, bool fused) {
  if (!fused || !swiglu_fusable(gate, up)) return swiglu_reference(gate, up);
  return SwigluFunction::apply(gate, up);
}

}  // namespace dus::kernels
