// SwiGLU on the CPU in one pass: y = silu(g) u with silu(g) = g sigmoid(g), and its backward
// from the inputs alone: d up = dy silu(g), d gate = dy u sigmoid(g) (1 + g (1 - sigmoid(g))).
// sigmoid uses exp_approx (cpu_vector.h) so the loops vectorise.
#include <ATen/Parallel.h>
#include <ATen/ops/empty_like.h>

#include "model/kernels/cpu_launch.h"
#include "model/kernels/cpu_vector.h"

namespace dus::kernels::cpu {
namespace {

constexpr int64_t kGrain = 32768;  // elements per parallel task

DUS_CPU_CLONES void forward_span(const float* g, const float* u, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float sig = 1.0f / (1.0f + exp_approx(-g[i]));
    y[i] = g[i] * sig * u[i];
  }
}

DUS_CPU_CLONES void backward_span(const float* dy, const float* g, const float* u, float* dg,
                                  float* du, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float sig = 1.0f / (1.0f + exp_approx(-g[i]));
    const float silu = g[i] * sig;
    du[i] = dy[i] * silu;
    dg[i] = dy[i] * u[i] * (sig * (1.0f + g[i] * (1.0f - sig)));
  }
}

}  // namespace

at::Tensor swiglu_forward(const at::Tensor& gate, const at::Tensor& up) {
  auto g = gate.to(at::kFloat).contiguous(), u = up.to(at::kFloat).contiguous();
  auto y = at::empty_like(g);
  const float* gp = g.data_ptr<float>();
  const float* up_ = u.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  at::parallel_for(0, g.numel(), kGrain, [&](int64_t begin, int64_t end) {
    forward_span(gp + begin, up_ + begin, yp + begin, end - begin);
  });
  return y.to(gate.scalar_type());
}

std::tuple<at::Tensor, at::Tensor> swiglu_backward(const at::Tensor& dy, const at::Tensor& gate,
                                                   const at::Tensor& up) {
  auto d = dy.to(at::kFloat).contiguous(), g = gate.to(at::kFloat).contiguous(),
       u = up.to(at::kFloat).contiguous();
  auto dg = at::empty_like(g), du = at::empty_like(u);
  const float* dp = d.data_ptr<float>();
  const float* gp = g.data_ptr<float>();
  const float* up_ = u.data_ptr<float>();
  float* dgp = dg.data_ptr<float>();
  float* dup = du.data_ptr<float>();
  at::parallel_for(0, g.numel(), kGrain, [&](int64_t begin, int64_t end) {
    backward_span(dp + begin, gp + begin, up_ + begin, dgp + begin, dup + begin, end - begin);
  });
  return {dg.to(gate.scalar_type()), du.to(up.scalar_type())};
}

}  // namespace dus::kernels::cpu
