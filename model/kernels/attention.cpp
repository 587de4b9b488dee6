#include "model/kernels/attention.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/scaled_dot_product_attention.h>
#include <ATen/ops/tril.h>
#include <ATen/ops/triu.h>
#include <ATen/record_function.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cmath>

#include "model/kernels/cpu_launch.h"

namespace dus::kernels {

namespace {
bool window_applies(const at::Tensor& q, std::optional<int64_t> sliding_window) {
  return sliding_window && q.size(2) > *sliding_window;
}
}  // namespace

at::Tensor causal_attention_reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                      std::optional<int64_t> sliding_window) {
  if (window_applies(q, sliding_window)) {
    const int64_t T = q.size(2);
    auto ones = at::ones({T, T}, q.options().dtype(at::kBool));
    auto mask_TT = at::tril(ones) & at::triu(ones, -(*sliding_window - 1));  // true = attend
    return at::scaled_dot_product_attention(q, k, v, mask_TT, /*dropout_p=*/0.0,
                                            /*is_causal=*/false, /*scale=*/std::nullopt,
                                            /*enable_gqa=*/true);
  }
  return at::scaled_dot_product_attention(q, k, v, /*attn_mask=*/{}, /*dropout_p=*/0.0,
                                          /*is_causal=*/true, /*scale=*/std::nullopt,
                                          /*enable_gqa=*/true);
}

bool causal_attention_fusable(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  if (!cpu::attention_blas_available()) return false;
  for (const auto* t : {&q, &k, &v})
    if (!cpu::fusable(*t) || t->scalar_type() != q.scalar_type() || t->dim() != 4 ||
        t->stride(3) != 1)
      return false;
  const int64_t Hkv = k.size(1);
  return k.sizes() == v.sizes() && k.size(0) == q.size(0) && k.size(2) == q.size(2) &&
         k.size(3) == q.size(3) && Hkv > 0 && q.size(1) % Hkv == 0;
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// What the CPU loops take: bf16 as it is where MKL's bf16 products are there, else widened to
// fp32 (itself when fp32; strides kept when widened).
at::Tensor loop_input(const at::Tensor& t) {
  const bool native = t.scalar_type() == at::kBFloat16 && cpu::attention_bf16_blas_available();
  return native ? t : t.to(at::kFloat);
}

// Saves q, k, v (which eager autograd keeps anyway), the output and the per-row log-sum-exp,
// as flash attention does; the backward recomputes the probabilities block by block. bf16
// inputs go to MKL's bf16 products (or are widened to fp32 where those are missing); the
// output is computed and saved in fp32 and returned rounded to the inputs' dtype.
struct AttentionFunction : public torch::autograd::Function<AttentionFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& q, const at::Tensor& k,
                            const at::Tensor& v) {
    RECORD_FUNCTION("dus::causal_attention",
                    std::vector<c10::IValue>{});  // named in --profile traces
    const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(3)));
    auto [out, lse] = cpu::attention_forward(loop_input(q), loop_input(k), loop_input(v), scale);
    // The backward's rowsum(dO O) cancels against dO V^T: it needs O before rounding to bf16
    // (with the rounded O the gradients fall outside the bf16 tolerance against fp64).
    ctx->save_for_backward({q, k, v, out, lse});
    ctx->saved_data["scale"] = scale;
    return out.to(q.scalar_type());  // keeps the (B, T, H, d) layout
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    auto dout = grads[0];
    if (dout.stride(3) != 1) dout = dout.contiguous();
    const auto dtype = saved[0].scalar_type();
    auto [dq, dk, dv] = cpu::attention_backward(
        loop_input(dout.to(dtype)), loop_input(saved[0]), loop_input(saved[1]),
        loop_input(saved[2]), saved[3], saved[4], ctx->saved_data["scale"].toDouble());
    return {dq.to(dtype), dk.to(dtype), dv.to(dtype)};
  }
};

}  // namespace

at::Tensor causal_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            bool fused, std::optional<int64_t> sliding_window) {
  if (!fused || window_applies(q, sliding_window) || !causal_attention_fusable(q, k, v))
    return causal_attention_reference(q, k, v, sliding_window);
  return AttentionFunction::apply(q, k, v);
}

}  // namespace dus::kernels
