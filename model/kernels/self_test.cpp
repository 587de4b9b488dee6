// run_kernel_self_test: each fused op against its reference on fresh random inputs. The inputs
// come from a private CPU generator (the global RNG, which seeds training, is not touched) and
// are moved to the device, so the same seed gives the same inputs on every GPU.
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/TensorOperators.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/randint.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros_like.h>
#include <torch/csrc/autograd/autograd.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>

#include "model/kernels/adamw.h"
#include "model/kernels/attention.h"
#include "model/kernels/cpu_launch.h"
#include "model/kernels/cross_entropy.h"
#include "model/kernels/cuda_launch.h"
#include "model/kernels/kernel_set.h"
#include "model/kernels/rmsnorm.h"
#include "model/kernels/rope.h"
#include "model/kernels/swiglu.h"
#include "model/loss.h"

namespace dus::kernels {
namespace {

// atol is relative to the reference tensor's RMS, so one number serves values and gradients of
// any scale; rtol is relative to each element.
struct Tolerance {
  double atol, rtol;
};

Tolerance tolerance(const std::string& op, at::ScalarType dtype, bool backward) {
  // The loss gradients cancel (d h = sum_v p_v W_v - W_target): in bf16 the plain loss's own
  // gradients measure up to 0.7 of the 3.2e-2 tolerance against fp64 on these inputs, and the
  // chunked path sums per-chunk bf16 products: judged at 1e-1 (tests/test_kernels.cpp).
  if (op == "cross_entropy" && backward && (dtype == at::kBFloat16 || dtype == at::kHalf))
    return {1e-1, 1e-1};
  if (dtype == at::kBFloat16 || dtype == at::kHalf)
    return backward ? Tolerance{3.2e-2, 3.2e-2} : Tolerance{1.6e-2, 1.6e-2};
  if (op == "cross_entropy") return {2e-3, 2e-3};
  if (op == "adamw") return {1e-5, 1e-5};
  return backward ? Tolerance{1e-4, 1e-4} : Tolerance{1e-5, 1e-5};
}

// Folds one tensor's comparison into the op's result.
void compare(OpSelfTest& r, const at::Tensor& got, const at::Tensor& want, Tolerance tol,
             bool backward) {
  double rel = std::numeric_limits<double>::infinity(), abs_err = rel;
  if (got.defined() && want.defined() && got.sizes() == want.sizes()) {
    auto g = got.detach().to(at::kDouble), w = want.detach().to(at::kDouble);
    auto diff = (g - w).abs();
    const double rms = std::max(w.pow(2).mean().sqrt().item<double>(), 1e-30);
    rel = (diff / (tol.atol * rms + tol.rtol * w.abs())).max().item<double>();
    abs_err = diff.max().item<double>();
    if (std::isnan(rel)) rel = abs_err = std::numeric_limits<double>::infinity();
  }
  double& e = backward ? r.max_error_backward : r.max_error_forward;
  double& a = backward ? r.max_abs_backward : r.max_abs_forward;
  e = std::max(e, rel);
  a = std::max(a, abs_err);
}

struct Inputs {
  at::Generator gen;
  c10::Device device;
  at::Tensor randn(at::IntArrayRef shape, at::ScalarType dtype, double scale = 1.0) {
    return (at::randn(shape, gen, at::TensorOptions().dtype(at::kFloat)) * scale).to(device, dtype);
  }
};

// Runs f(fused) -> {outputs..., grads...}: the first n_forward are forward values.
using Run = std::function<std::vector<at::Tensor>(bool fused)>;

void check_op(OpSelfTest& r, at::ScalarType dtype, size_t n_forward, const Run& run) {
  auto want = run(false), got = run(true);
  for (size_t i = 0; i < want.size(); ++i) {
    const bool backward = i >= n_forward;
    compare(r, got[i], want[i], tolerance(r.op, dtype, backward), backward);
  }
}

std::vector<at::Tensor> with_grads(const at::Tensor& y, const std::vector<at::Tensor>& inputs,
                                   const at::Tensor& dy) {
  auto grads = torch::autograd::grad({y}, inputs, {dy});
  std::vector<at::Tensor> out{y.detach()};
  out.insert(out.end(), grads.begin(), grads.end());
  return out;
}

at::Tensor leaf(const at::Tensor& t) {
  return t.detach().clone().requires_grad_(true);
}

void test_rmsnorm(OpSelfTest& r, Inputs& in, const SelfTestSizes& s) {
  for (auto dtype : {at::kFloat, at::kBFloat16}) {
    auto x0 = in.randn({s.rows, s.hidden}, dtype);
    auto w0 = (in.randn({s.hidden}, at::kFloat, 0.1) + 1.0).to(dtype);
    auto dy = in.randn({s.rows, s.hidden}, dtype);
    if (!rms_norm_fusable(x0, w0)) r.note = "inputs not fusable";
    check_op(r, dtype, 1, [&](bool fused) {
      auto x = leaf(x0), w = leaf(w0);
      return with_grads(rms_norm(x, w, 1e-5, fused), {x, w}, dy);
    });
  }
}

void test_rope(OpSelfTest& r, Inputs& in, const SelfTestSizes& s) {
  const int64_t B = s.batch, H = s.heads, T = s.seq, d = s.head_dim;
  for (auto dtype : {at::kFloat, at::kBFloat16}) {
    auto angles = in.randn({T, d / 2}, at::kFloat, 3.0);
    auto emb = at::cat({angles, angles}, -1);  // (T, d), as rotary_tables lays them out
    auto cos = emb.cos().to(dtype), sin = emb.sin().to(dtype);
    auto x0 = in.randn({B, T, H, d}, dtype);  // the model's q: (B, T, H, d) viewed (B, H, T, d)
    auto dy = in.randn({B, H, T, d}, dtype);
    if (!rotary_fusable(x0.transpose(1, 2), cos, sin)) r.note = "inputs not fusable";
    check_op(r, dtype, 1, [&](bool fused) {
      auto x_BTHd = leaf(x0);
      auto y = rotary(x_BTHd.transpose(1, 2), cos, sin, fused);
      return with_grads(y, {x_BTHd}, dy);
    });
  }
}

void test_swiglu(OpSelfTest& r, Inputs& in, const SelfTestSizes& s) {
  for (auto dtype : {at::kFloat, at::kBFloat16}) {
    auto g0 = in.randn({s.rows, s.ffn}, dtype, 3.0), u0 = in.randn({s.rows, s.ffn}, dtype);
    auto dy = in.randn({s.rows, s.ffn}, dtype);
    if (!swiglu_fusable(g0, u0)) r.note = "inputs not fusable";
    check_op(r, dtype, 1, [&](bool fused) {
      auto g = leaf(g0), u = leaf(u0);
      return with_grads(swiglu(g, u, fused), {g, u}, dy);
    });
  }
}

void test_cross_entropy(OpSelfTest& r, Inputs& in, const SelfTestSizes& s) {
  for (auto dtype : {at::kFloat, at::kBFloat16}) {
    auto h0 = in.randn({s.rows, s.hidden}, dtype);
    auto w0 = in.randn({s.vocab, s.hidden}, dtype, 2.0 / std::sqrt(double(s.hidden)));
    auto t = at::randint(0, s.vocab, {s.rows}, in.gen, at::TensorOptions().dtype(at::kLong));
    auto ignored = at::randint(0, 5, {s.rows}, in.gen, at::TensorOptions().dtype(at::kLong)).eq(0);
    t = at::where(ignored, kIgnoreIndex, t).to(in.device);
    if (!cuda::fusable(h0) && !cpu::fusable(h0)) r.note = "inputs not fusable";
    auto one = in.randn({}, at::kFloat).fill_(1.0);
    // The reference is what runs with the op off (the chunked loss with the plain per-chunk
    // step, cross_entropy_chunk_reference), in fp64 on the same (rounded) inputs: in bf16 the
    // unfused path's lm_head gradient is itself about one bf16 ulp off at its largest entries
    // (as far as the fused path's), so two bf16 paths differ by twice the tolerance.
    check_op(r, dtype, 1, [&](bool fused) {
      const auto as = fused ? dtype : at::kDouble;
      auto h = leaf(h0.to(as)), w = leaf(w0.to(as));
      return with_grads(chunked_cross_entropy(h, w, t, s.loss_chunk_rows, fused), {h, w},
                        fused ? one : one.to(at::kDouble));
    });
  }
}

// The reference is SDPA in fp64 on the same (rounded) inputs, so the result measures the fused
// op's own error.
void test_attention(OpSelfTest& r, Inputs& in, const SelfTestSizes& s) {
  const int64_t B = s.batch, H = s.heads, Hkv = s.kv_heads, T = s.attention_seq, d = s.head_dim;
  for (auto dtype : {at::kFloat, at::kBFloat16}) {
    auto q0 = in.randn({B, T, H, d}, dtype), k0 = in.randn({B, T, Hkv, d}, dtype);
    auto v0 = in.randn({B, T, Hkv, d}, dtype), dy = in.randn({B, H, T, d}, dtype);
    if (!causal_attention_fusable(q0.transpose(1, 2), k0.transpose(1, 2), v0.transpose(1, 2)))
      r.note = "inputs not fusable (does this LibTorch's BLAS export sgemm_?)";
    check_op(r, dtype, 1, [&](bool fused) {
      const auto as = fused ? dtype : at::kDouble;
      auto q = leaf(q0.to(as)), k = leaf(k0.to(as)), v = leaf(v0.to(as));
      auto y = causal_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), fused);
      return with_grads(y, {q, k, v}, dy.to(as));
    });
  }
}

void test_adamw(OpSelfTest& r, Inputs& in, const SelfTestSizes& s) {
  std::vector<std::vector<int64_t>> shapes{{s.rows, 7}, {s.hidden}, {13, 5}};
  std::vector<at::Tensor> p0, grads;
  for (const auto& shape : shapes) {
    p0.push_back(in.randn(shape, at::kFloat));
    grads.push_back(in.randn(shape, at::kFloat));
  }
  auto run = [&](bool fused) {
    std::vector<at::Tensor> p, m, v;
    for (const auto& t : p0) {
      p.push_back(t.clone());
      m.push_back(at::zeros_like(t));
      v.push_back(at::zeros_like(t));
    }
    for (int64_t step = 1; step <= 3; ++step)
      fused_adamw_step(p, grads, m, v, step, 1e-2, 0.9, 0.95, 1e-8, 0.1, fused);
    std::vector<at::Tensor> out = p;
    out.insert(out.end(), m.begin(), m.end());
    out.insert(out.end(), v.begin(), v.end());
    return out;
  };
  check_op(r, at::kFloat, p0.size(), run);  // params as "forward", moments as "backward"
}

}  // namespace

KernelSelfTestReport run_kernel_self_test(c10::Device device, uint64_t seed,
                                          const SelfTestSizes& sizes) {
  using Test = void (*)(OpSelfTest&, Inputs&, const SelfTestSizes&);
  struct Case {
    std::string op;
    Test test;
    bool has_cpu_kernel;   // the *_cpu.cpp loops
    bool has_cuda_kernel;  // the *.cu kernels
  };
  const std::vector<Case> tests{
      {"rmsnorm", test_rmsnorm, true, true},      {"rope", test_rope, true, true},
      {"swiglu", test_swiglu, true, true},        {"cross_entropy", test_cross_entropy, true, true},
      {"attention", test_attention, true, false}, {"adamw", test_adamw, false, true}};
  KernelSelfTestReport report;
  std::string skip;
  if (device.is_cuda() && !cuda_kernels_built())
    skip = "skipped: this build has no CUDA kernels";
  else if (!device.is_cuda() && !device.is_cpu())
    skip = "skipped: no kernels for " + device.str();
  at::AutoGradMode grad_mode(true);
  Inputs in{at::make_generator<at::CPUGeneratorImpl>(seed), device};
  for (const auto& [name, test, has_cpu_kernel, has_cuda_kernel] : tests) {
    OpSelfTest r;
    r.op = name;
    const bool cpu_missing = device.is_cpu() && !has_cpu_kernel;
    const bool cuda_missing = device.is_cuda() && !has_cuda_kernel;
    if (!skip.empty() || cpu_missing || cuda_missing) {
      r.note = !skip.empty() ? skip
               : cpu_missing ? "skipped: a CUDA kernel only"
                             : "skipped: a CPU loop only (CUDA attention is SDPA's flash kernel)";
      report.ops.push_back(r);
      continue;
    }
    try {
      test(r, in, sizes);
      r.passed = r.note.empty() && r.max_error_forward <= 1.0 && r.max_error_backward <= 1.0;
    } catch (const std::exception& e) {
      r.passed = false;
      r.note = std::string("error: ") + e.what();
      const auto nl = r.note.find('\n');
      if (nl != std::string::npos) r.note.resize(nl);
    }
    report.ops.push_back(r);
  }
  return report;
}

}  // namespace dus::kernels
