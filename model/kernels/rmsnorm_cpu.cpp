// RMSNorm on the CPU in one pass per row: y = w * x * rstd, rstd = 1 / sqrt(mean(x^2) + eps),
// and its backward, dx = rstd * (w dy - x rstd^2 mean(w dy x)), dw = sum over rows of dy x rstd.
// bf16 rows are read and written as bf16 (no fp32 copies of the tensors).
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>

#include <cmath>

#include "model/kernels/cpu_launch.h"
#include "model/kernels/cpu_vector.h"

namespace dus::kernels::cpu {
namespace {

// Rows per dw partial sum: a fixed split (not one per thread), so dw is the same sum in the same
// order for any number of threads.
constexpr int64_t kRowsPerBlock = 32;

// Rows are T (float, or uint16_t holding bf16: widened in registers, rounded once on store); the
// weight and the accumulators are fp32.
template <typename T>
DUS_CPU_INLINE void scale_row_body(const T* x, const float* w, float rstd, T* y, int64_t D) {
  for (int64_t j = 0; j < D; ++j) store(y + j, w[j] * (load(x[j]) * rstd));
}

template <typename T>
DUS_CPU_INLINE float dot_w_body(const T* dy, const float* w, const T* x, int64_t D) {
  float acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t j = 0; j < D; ++j) acc += w[j] * load(dy[j]) * load(x[j]);
  return acc;
}

// dx = rstd * w dy - x * c, and dw_partial += dy x rstd.
template <typename T>
DUS_CPU_INLINE void backward_row_body(const T* dy, const T* x, const float* w, float rstd, float c,
                                      T* dx, float* dw_partial, int64_t D) {
  for (int64_t j = 0; j < D; ++j) {
    const float dyj = load(dy[j]), xj = load(x[j]);
    store(dx + j, rstd * (w[j] * dyj) - xj * c);
    dw_partial[j] += dyj * xj * rstd;
  }
}

#define DUS_RMSNORM_ROW_LOOPS(T)                                                                 \
  DUS_CPU_CLONES void scale_row(const T* x, const float* w, float rstd, T* y, int64_t D) {       \
    scale_row_body(x, w, rstd, y, D);                                                            \
  }                                                                                              \
  DUS_CPU_CLONES float dot_w(const T* dy, const float* w, const T* x, int64_t D) {               \
    return dot_w_body(dy, w, x, D);                                                              \
  }                                                                                              \
  DUS_CPU_CLONES void backward_row(const T* dy, const T* x, const float* w, float rstd, float c, \
                                   T* dx, float* dw_partial, int64_t D) {                        \
    backward_row_body(dy, x, w, rstd, c, dx, dw_partial, D);                                     \
  }
DUS_RMSNORM_ROW_LOOPS(float)
DUS_RMSNORM_ROW_LOOPS(uint16_t)
#undef DUS_RMSNORM_ROW_LOOPS

DUS_CPU_CLONES void add_into(float* acc, const float* v, int64_t D) {
  for (int64_t j = 0; j < D; ++j) acc[j] += v[j];
}

template <typename T>
std::tuple<at::Tensor, at::Tensor> forward_as(const at::Tensor& x_ND, const at::Tensor& w_D,
                                              double eps) {
  const int64_t N = x_ND.size(0), D = x_ND.size(1);
  auto x = x_ND.contiguous(), w = w_D.to(at::kFloat).contiguous();
  auto y = at::empty({N, D}, x.options());
  auto rstd = at::empty({N}, x.options().dtype(at::kFloat));
  const T* xp = data_of<T>(x);
  const float* wp = w.data_ptr<float>();
  T* yp = data_of<T>(y);
  float* rp = rstd.data_ptr<float>();
  const float inv_D = 1.0f / static_cast<float>(D), epsf = static_cast<float>(eps);
  at::parallel_for(
      0, N, std::max<int64_t>(1, 16384 / std::max<int64_t>(D, 1)), [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          const float r = 1.0f / std::sqrt(row_sum_of_squares(xp + i * D, D) * inv_D + epsf);
          rp[i] = r;
          scale_row(xp + i * D, wp, r, yp + i * D, D);
        }
      });
  return {y, rstd};
}

template <typename T>
std::tuple<at::Tensor, at::Tensor> backward_as(const at::Tensor& dy_ND, const at::Tensor& x_ND,
                                               const at::Tensor& w_D, const at::Tensor& rstd_N) {
  const int64_t N = x_ND.size(0), D = x_ND.size(1);
  auto dy = dy_ND.to(x_ND.scalar_type()).contiguous(), x = x_ND.contiguous(),
       w = w_D.to(at::kFloat).contiguous(), rstd = rstd_N.contiguous();
  auto dx = at::empty({N, D}, x.options());
  const int64_t blocks = (N + kRowsPerBlock - 1) / kRowsPerBlock;
  const auto f32 = x.options().dtype(at::kFloat);
  auto dw_blocks = at::zeros({std::max<int64_t>(blocks, 1), D}, f32);
  const T* dyp = data_of<T>(dy);
  const T* xp = data_of<T>(x);
  const float* wp = w.data_ptr<float>();
  const float* rp = rstd.data_ptr<float>();
  T* dxp = data_of<T>(dx);
  float* dwb = dw_blocks.data_ptr<float>();
  const float inv_D = 1.0f / static_cast<float>(D);
  at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      for (int64_t i = b * kRowsPerBlock; i < std::min(N, (b + 1) * kRowsPerBlock); ++i) {
        const float r = rp[i];
        const float c = dot_w(dyp + i * D, wp, xp + i * D, D) * inv_D * r * r * r;
        backward_row(dyp + i * D, xp + i * D, wp, r, c, dxp + i * D, dwb + b * D, D);
      }
    }
  });
  auto dw = at::zeros({D}, f32);
  for (int64_t b = 0; b < blocks; ++b) add_into(dw.data_ptr<float>(), dwb + b * D, D);
  return {dx, dw.to(w_D.scalar_type())};
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> rmsnorm_forward(const at::Tensor& x_ND, const at::Tensor& w_D,
                                                   double eps) {
  return x_ND.scalar_type() == at::kBFloat16 ? forward_as<uint16_t>(x_ND, w_D, eps)
                                             : forward_as<float>(x_ND, w_D, eps);
}

std::tuple<at::Tensor, at::Tensor> rmsnorm_backward(const at::Tensor& dy_ND, const at::Tensor& x_ND,
                                                    const at::Tensor& w_D,
                                                    const at::Tensor& rstd_N) {
  return x_ND.scalar_type() == at::kBFloat16 ? backward_as<uint16_t>(dy_ND, x_ND, w_D, rstd_N)
                                             : backward_as<float>(dy_ND, x_ND, w_D, rstd_N);
}

}  // namespace dus::kernels::cpu
