#include "model/kernels/rope.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/cat.h>
#include <ATen/record_function.h>
#include <torch/csrc/autograd/custom_function.h>

#include "model/kernels/cpu_launch.h"
#include "model/kernels/cuda_launch.h"

namespace dus::kernels {

at::Tensor rotary_reference(const at::Tensor& x, const at::Tensor& cos_Td,
                            const at::Tensor& sin_Td) {
  const int64_t half = x.size(-1) / 2;
  auto x1 = x.narrow(-1, 0, half), x2 = x.narrow(-1, half, half);
  auto c1 = cos_Td.narrow(-1, 0, half), c2 = cos_Td.narrow(-1, half, half);
  auto s1 = sin_Td.narrow(-1, 0, half), s2 = sin_Td.narrow(-1, half, half);
  return at::cat({x1 * c1 - x2 * s1, x2 * c2 + x1 * s2}, -1);
}

bool rotary_fusable(const at::Tensor& x, const at::Tensor& cos_Td, const at::Tensor& sin_Td) {
  if (!(cuda::fusable(x) || cpu::fusable(x)) || x.dim() != 4 || x.stride(3) != 1 ||
      x.size(3) % 2 != 0)
    return false;
  for (const auto* t : {&cos_Td, &sin_Td}) {
    if (t->dim() != 2 || t->size(0) != x.size(2) || t->size(1) != x.size(3) ||
        t->scalar_type() != x.scalar_type() || t->device() != x.device() || t->requires_grad())
      return false;
  }
  return true;
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct RotaryFunction : public torch::autograd::Function<RotaryFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& cos_Td,
                            const at::Tensor& sin_Td) {
    RECORD_FUNCTION("dus::rotary", std::vector<c10::IValue>{});  // named in --profile traces
    auto cos_c = cos_Td.contiguous(), sin_c = sin_Td.contiguous();
    ctx->save_for_backward({cos_c, sin_c});
    // The CPU backward writes dx in x's layout where that layout is a plain permutation.
    ctx->saved_data["strides"] =
        x.is_non_overlapping_and_dense() ? x.strides().vec() : std::vector<int64_t>{};
    return x.is_cuda() ? cuda::rope(x, cos_c, sin_c, /*backward=*/false)
                       : cpu::rope(x, cos_c, sin_c, /*backward=*/false);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    auto dy = grads[0];
    if (dy.stride(-1) != 1) dy = dy.contiguous();
    auto dx = dy.is_cuda() ? cuda::rope(dy, saved[0], saved[1], /*backward=*/true)
                           : cpu::rope(dy, saved[0], saved[1], /*backward=*/true,
                                       ctx->saved_data["strides"].toIntVector());
    return {dx, at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor rotary(const at::Tensor& x, const at::Tensor& cos_Td, const at::Tensor& sin_Td,
                  bool fused) {
  if (!fused || !rotary_fusable(x, cos_Td, sin_Td)) return rotary_reference(x, cos_Td, sin_Td);
  return RotaryFunction::apply(x, cos_Td, sin_Td);
}

}  // namespace dus::kernels
