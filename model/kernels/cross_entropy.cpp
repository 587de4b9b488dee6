#include "model/kernels/cross_entropy.h"

#include <ATen/TensorOperators.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/exp.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/logsumexp.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>
#include <ATen/record_function.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>

#include "core/error.h"
#include "model/kernels/cpu_launch.h"
#include "model/kernels/cuda_launch.h"
#include "model/loss.h"

namespace dus::kernels {

int64_t default_loss_chunk_rows(int64_t vocab) {
  constexpr int64_t kChunkFloats = int64_t{1} << 26;  // 256 MiB of fp32 logits
  return std::max<int64_t>(1, kChunkFloats / std::max<int64_t>(1, vocab));
}

at::Tensor cross_entropy_chunk_reference(at::Tensor& logits_nV, const at::Tensor& targets_n,
                                         const at::Tensor& grad_scale, bool compute_grad) {
  const auto acc = logits_nV.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  auto l = logits_nV.to(acc);                                   // (n, V)
  auto lse = at::logsumexp(l, {1}, /*keepdim=*/true);           // (n, 1)
  auto counted = targets_n.ne(kIgnoreIndex).unsqueeze(1);       // (n, 1) bool
  auto safe_t = at::where(counted, targets_n.unsqueeze(1), 0);  // (n, 1), ignored -> 0
  auto picked = l.gather(1, safe_t);                            // (n, 1)
  auto loss = at::where(counted, lse - picked, 0).squeeze(1);   // (n)
  if (compute_grad) {
    auto counted_f = counted.to(acc);  // (n, 1)
    auto g = at::exp(l - lse);         // softmax (n, V)
    g.scatter_add_(1, safe_t, -counted_f);
    g.mul_(counted_f * grad_scale.to(acc));
    logits_nV.copy_(g);
  }
  return loss;
}

at::Tensor cross_entropy_chunk(at::Tensor& logits_nV, const at::Tensor& targets_n,
                               const at::Tensor& grad_scale, bool compute_grad, bool fused) {
  if (fused && cuda::fusable(logits_nV) && logits_nV.is_contiguous())
    return cuda::cross_entropy_chunk(logits_nV, targets_n.contiguous(), grad_scale, compute_grad);
  if (fused && cpu::fusable(logits_nV) && logits_nV.is_contiguous() && grad_scale.is_cpu()) {
    RECORD_FUNCTION("dus::cross_entropy_chunk", std::vector<c10::IValue>{});
    return cpu::cross_entropy_chunk(logits_nV, targets_n, grad_scale, compute_grad);
  }
  return cross_entropy_chunk_reference(logits_nV, targets_n, grad_scale, compute_grad);
}

namespace {

struct ChunkedResult {
  at::Tensor loss;    // 0-dim
  at::Tensor grad_h;  // (N, D) in hidden's dtype, or undefined
  at::Tensor grad_w;  // (V, D) in weight's dtype, or undefined
};

// The whole pass over the chunks. The gradients are those of the mean loss (grad_scale =
// 1 / counted targets is folded into d logits).
ChunkedResult run_chunks(const at::Tensor& hidden_ND, const at::Tensor& weight_VD,
                         const at::Tensor& targets_N, int64_t chunk_rows, bool fused, bool need_h,
                         bool need_w) {
  const int64_t N = hidden_ND.size(0), V = weight_VD.size(0), D = weight_VD.size(1);
  const auto acc = hidden_ND.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const auto acc_opts = hidden_ND.options().dtype(acc);
  // 0-dim, on the device (no host sync); fp32, or fp64 for fp64 inputs (the CUDA kernel sees
  // only the fp32 case).
  auto n_counted = targets_N.ne(kIgnoreIndex).sum().to(acc);
  auto grad_scale = n_counted.clamp_min(1.0).reciprocal();
  const bool need_grad = need_h || need_w;
  ChunkedResult r;
  auto loss_sum = at::zeros({}, acc_opts);
  at::Tensor grad_w_acc;  // (V, D) fp32 (fp64): chunk products added without bf16 rounding
  if (need_h) r.grad_h = at::empty_like(hidden_ND);
  if (need_w) grad_w_acc = at::zeros({V, D}, acc_opts);
  for (int64_t start = 0; start < N; start += chunk_rows) {
    const int64_t n = std::min(chunk_rows, N - start);
    auto h_nD = hidden_ND.narrow(0, start, n);
    auto t_n = targets_N.narrow(0, start, n).contiguous();
    auto logits_nV = at::linear(h_nD, weight_VD).contiguous();  // weight's dtype
    loss_sum.add_(cross_entropy_chunk(logits_nV, t_n, grad_scale, need_grad, fused).sum());
    if (!need_grad) continue;
    // logits_nV now holds d loss / d logits (n, V).
    if (need_h) {
      auto grad_h_nD = r.grad_h.narrow(0, start, n);  // contiguous rows of grad_h
      at::mm_out(grad_h_nD, logits_nV, weight_VD);    // (n, V) x (V, D)
    }
    if (need_w) {
      if (logits_nV.scalar_type() == acc)
        grad_w_acc.addmm_(logits_nV.t(), h_nD);  // (V, n) x (n, D)
      else
        grad_w_acc.add_(at::mm(logits_nV.t(), h_nD));
    }
  }
  r.loss = loss_sum / n_counted;  // NaN when nothing counts, as the plain loss
  if (need_w) r.grad_w = grad_w_acc.to(weight_VD.scalar_type());
  return r;
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Forward computes the gradients too (they cost two matmuls per chunk, which the backward would
// otherwise have to redo with a recomputation of the logits); backward only scales them.
struct ChunkedCrossEntropyFunction : public torch::autograd::Function<ChunkedCrossEntropyFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& hidden_ND,
                            const at::Tensor& weight_VD, const at::Tensor& targets_N,
                            int64_t chunk_rows, bool fused, bool need_h, bool need_w) {
    RECORD_FUNCTION("dus::chunked_cross_entropy",
                    std::vector<c10::IValue>{});  // named in --profile traces
    auto r = run_chunks(hidden_ND, weight_VD, targets_N, chunk_rows, fused, need_h, need_w);
    ctx->saved_data["grad_h"] = r.grad_h;
    ctx->saved_data["grad_w"] = r.grad_w;
    return r.loss;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto& g = grads[0];  // 0-dim
    auto saved = [&](const char* key) {
      const auto& v = ctx->saved_data[key];
      return v.isTensor() ? v.toTensor() : at::Tensor();
    };
    auto grad_h = saved("grad_h"), grad_w = saved("grad_w");
    at::Tensor dh, dw;
    if (grad_h.defined()) dh = grad_h * g.to(grad_h.scalar_type());
    if (grad_w.defined()) dw = grad_w * g.to(grad_w.scalar_type());
    return {dh, dw, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor chunked_cross_entropy(const at::Tensor& hidden_ND, const at::Tensor& weight_VD,
                                 const at::Tensor& targets_N, int64_t chunk_rows, bool fused) {
  if (hidden_ND.dim() != 2 || weight_VD.dim() != 2 || hidden_ND.size(1) != weight_VD.size(1) ||
      targets_N.dim() != 1 || targets_N.size(0) != hidden_ND.size(0))
    throw dus::Error("chunked_cross_entropy", "expected hidden (N, D), weight (V, D), targets (N)");
  if (hidden_ND.scalar_type() != weight_VD.scalar_type())
    throw dus::Error("chunked_cross_entropy", "hidden and lm_head weight differ in dtype",
                     "cast the hidden states to the parameters' dtype");
  if (chunk_rows <= 0) chunk_rows = default_loss_chunk_rows(weight_VD.size(0));
  const bool grad = at::GradMode::is_enabled();
  const bool need_h = grad && hidden_ND.requires_grad();
  const bool need_w = grad && weight_VD.requires_grad();
  if (!need_h && !need_w)
    return run_chunks(hidden_ND, weight_VD, targets_N, chunk_rows, fused, false, false).loss;
  return ChunkedCrossEntropyFunction::apply(hidden_ND, weight_VD, targets_N, chunk_rows, fused,
                                            need_h, need_w);
}

at::Tensor chunked_next_token_loss(const at::Tensor& hidden_BTD, const at::Tensor& weight_VD,
                                   const at::Tensor& labels_BT, int64_t chunk_rows, bool fused) {
  const int64_t T = hidden_BTD.size(1), D = hidden_BTD.size(2);
  auto hidden = hidden_BTD.narrow(1, 0, T - 1).reshape({-1, D});  // (B*(T-1), D)
  auto targets = labels_BT.narrow(1, 1, T - 1).reshape({-1});     // (B*(T-1))
  return chunked_cross_entropy(hidden, weight_VD, targets, chunk_rows, fused);
}

}  // namespace dus::kernels
