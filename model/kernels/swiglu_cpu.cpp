// SwiGLU on the CPU in one pass: y = silu(g) u with silu(g) = g sigmoid(g), and its backward
// from the inputs alone: d up = dy silu(g), d gate = dy u sigmoid(g) (1 + g (1 - sigmoid(g))).
// sigmoid uses exp_approx (cpu_vector.h) so the loops vectorise. bf16 is read and written as
// bf16 (widened in registers, rounded once), with no fp32 copies of the tensors.
#include <ATen/Parallel.h>
#include <ATen/ops/empty_like.h>

#include "model/kernels/cpu_launch.h"
#include "model/kernels/cpu_vector.h"

namespace dus::kernels::cpu {
namespace {

constexpr int64_t kGrain = 32768;  // elements per parallel task

template <typename T>
DUS_CPU_INLINE void forward_body(const T* g, const T* u, T* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float gi = load(g[i]);
    const float sig = 1.0f / (1.0f + exp_approx(-gi));
    store(y + i, gi * sig * load(u[i]));
  }
}

template <typename T>
DUS_CPU_INLINE void backward_body(const T* dy, const T* g, const T* u, T* dg, T* du, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float gi = load(g[i]), di = load(dy[i]);
    const float sig = 1.0f / (1.0f + exp_approx(-gi));
    const float silu = gi * sig;
    store(du + i, di * silu);
    store(dg + i, di * load(u[i]) * (sig * (1.0f + gi * (1.0f - sig))));
  }
}

DUS_CPU_CLONES void forward_span(const float* g, const float* u, float* y, int64_t n) {
  forward_body(g, u, y, n);
}
DUS_CPU_CLONES void forward_span(const uint16_t* g, const uint16_t* u, uint16_t* y, int64_t n) {
  forward_body(g, u, y, n);
}
DUS_CPU_CLONES void backward_span(const float* dy, const float* g, const float* u, float* dg,
                                  float* du, int64_t n) {
  backward_body(dy, g, u, dg, du, n);
}
DUS_CPU_CLONES void backward_span(const uint16_t* dy, const uint16_t* g, const uint16_t* u,
                                  uint16_t* dg, uint16_t* du, int64_t n) {
  backward_body(dy, g, u, dg, du, n);
}

template <typename T>
at::Tensor forward_as(const at::Tensor& gate, const at::Tensor& up) {
  auto g = gate.contiguous(), u = up.contiguous();
  auto y = at::empty_like(g);
  const T *gp = data_of<T>(g), *up_ = data_of<T>(u);
  T* yp = data_of<T>(y);
  at::parallel_for(0, g.numel(), kGrain, [&](int64_t begin, int64_t end) {
    forward_span(gp + begin, up_ + begin, yp + begin, end - begin);
  });
  return y;
}

template <typename T>
std::tuple<at::Tensor, at::Tensor> backward_as(const at::Tensor& dy, const at::Tensor& gate,
                                               const at::Tensor& up) {
  auto d = dy.to(gate.scalar_type()).contiguous(), g = gate.contiguous(), u = up.contiguous();
  auto dg = at::empty_like(g), du = at::empty_like(u);
  const T *dp = data_of<T>(d), *gp = data_of<T>(g), *up_ = data_of<T>(u);
  T *dgp = data_of<T>(dg), *dup = data_of<T>(du);
  at::parallel_for(0, g.numel(), kGrain, [&](int64_t begin, int64_t end) {
    backward_span(dp + begin, gp + begin, up_ + begin, dgp + begin, dup + begin, end - begin);
  });
  return {dg, du};
}

}  // namespace

at::Tensor swiglu_forward(const at::Tensor& gate, const at::Tensor& up) {
  return gate.scalar_type() == at::kBFloat16 ? forward_as<uint16_t>(gate, up)
                                             : forward_as<float>(gate, up);
}

std::tuple<at::Tensor, at::Tensor> swiglu_backward(const at::Tensor& dy, const at::Tensor& gate,
                                                   const at::Tensor& up) {
  return gate.scalar_type() == at::kBFloat16 ? backward_as<uint16_t>(dy, gate, up)
                                             : backward_as<float>(dy, gate, up);
}

}  // namespace dus::kernels::cpu
