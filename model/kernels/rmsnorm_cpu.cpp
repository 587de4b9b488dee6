// RMSNorm on the CPU in one pass per row: y = w * x * rstd, rstd = 1 / sqrt(mean(x^2) + eps),
// and its backward, dx = rstd * (w dy - x rstd^2 mean(w dy x)), dw = sum over rows of dy x rstd.
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

DUS_CPU_CLONES float sum_of_squares(const float* x, int64_t D) {
  float acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t j = 0; j < D; ++j) acc += x[j] * x[j];
  return acc;
}

DUS_CPU_CLONES void scale_row(const float* x, const float* w, float rstd, float* y, int64_t D) {
  for (int64_t j = 0; j < D; ++j) y[j] = w[j] * (x[j] * rstd);
}

DUS_CPU_CLONES float dot_w(const float* dy, const float* w, const float* x, int64_t D) {
  float acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t j = 0; j < D; ++j) acc += w[j] * dy[j] * x[j];
  return acc;
}

// dx = rstd * w dy - x * c, and dw_partial += dy x rstd.
DUS_CPU_CLONES void backward_row(const float* dy, const float* x, const float* w, float rstd,
                                 float c, float* dx, float* dw_partial, int64_t D) {
  for (int64_t j = 0; j < D; ++j) {
    dx[j] = rstd * (w[j] * dy[j]) - x[j] * c;
    dw_partial[j] += dy[j] * x[j] * rstd;
  }
}

DUS_CPU_CLONES void add_into(float* acc, const float* v, int64_t D) {
  for (int64_t j = 0; j < D; ++j) acc[j] += v[j];
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> rmsnorm_forward(const at::Tensor& x_ND, const at::Tensor& w_D,
                                                   double eps) {
  const int64_t N = x_ND.size(0), D = x_ND.size(1);
  auto x = x_ND.to(at::kFloat).contiguous(), w = w_D.to(at::kFloat).contiguous();
  auto y = at::empty({N, D}, x.options());
  auto rstd = at::empty({N}, x.options());
  const float* xp = x.data_ptr<float>();
  const float* wp = w.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  float* rp = rstd.data_ptr<float>();
  const float inv_D = 1.0f / static_cast<float>(D), epsf = static_cast<float>(eps);
  at::parallel_for(
      0, N, std::max<int64_t>(1, 16384 / std::max<int64_t>(D, 1)), [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          const float r = 1.0f / std::sqrt(sum_of_squares(xp + i * D, D) * inv_D + epsf);
          rp[i] = r;
          scale_row(xp + i * D, wp, r, yp + i * D, D);
        }
      });
  return {y.to(x_ND.scalar_type()), rstd};  // .to is a no-op for fp32
}

std::tuple<at::Tensor, at::Tensor> rmsnorm_backward(const at::Tensor& dy_ND, const at::Tensor& x_ND,
                                                    const at::Tensor& w_D,
                                                    const at::Tensor& rstd_N) {
  const int64_t N = x_ND.size(0), D = x_ND.size(1);
  auto dy = dy_ND.to(at::kFloat).contiguous(), x = x_ND.to(at::kFloat).contiguous(),
       w = w_D.to(at::kFloat).contiguous(), rstd = rstd_N.contiguous();
  auto dx = at::empty({N, D}, x.options());
  const int64_t blocks = (N + kRowsPerBlock - 1) / kRowsPerBlock;
  auto dw_blocks = at::zeros({std::max<int64_t>(blocks, 1), D}, x.options());
  const float* dyp = dy.data_ptr<float>();
  const float* xp = x.data_ptr<float>();
  const float* wp = w.data_ptr<float>();
  const float* rp = rstd.data_ptr<float>();
  float* dxp = dx.data_ptr<float>();
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
  auto dw = at::zeros({D}, x.options());
  for (int64_t b = 0; b < blocks; ++b) add_into(dw.data_ptr<float>(), dwb + b * D, D);
  return {dx.to(x_ND.scalar_type()), dw.to(w_D.scalar_type())};
}

}  // namespace dus::kernels::cpu
