// Rotary embedding on the CPU in one pass: per (b, h, t) row of d values, with x = (x1, x2)
// halves and the table halves (c1, c2), (s1, s2):
//   forward   y1 = x1 c1 - x2 s1,  y2 = x2 c2 + x1 s2        (x cos + rotate_half(x) sin)
//   backward  dx1 = dy1 c1 + dy2 s2,  dx2 = dy2 c2 - dy1 s1  (the transpose of that rotation)
#include <ATen/Parallel.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/empty_strided.h>

#include "model/kernels/cpu_launch.h"
#include "model/kernels/cpu_vector.h"

namespace dus::kernels::cpu {
namespace {

DUS_CPU_CLONES void rotate_row(const float* x, const float* c, const float* s, float* y,
                               int64_t half, bool backward) {
  const float *x1 = x, *x2 = x + half, *c1 = c, *c2 = c + half, *s1 = s, *s2 = s + half;
  float *y1 = y, *y2 = y + half;
  if (!backward) {
    for (int64_t j = 0; j < half; ++j) {
      const float a = x1[j], b = x2[j];
      y1[j] = a * c1[j] - b * s1[j];
      y2[j] = b * c2[j] + a * s2[j];
    }
  } else {
    for (int64_t j = 0; j < half; ++j) {
      const float a = x1[j], b = x2[j];
      y1[j] = a * c1[j] + b * s2[j];
      y2[j] = b * c2[j] - a * s1[j];
    }
  }
}

}  // namespace

at::Tensor rope(const at::Tensor& x_BHTd, const at::Tensor& cos_Td, const at::Tensor& sin_Td,
                bool backward, at::IntArrayRef out_strides) {
  auto x = x_BHTd.to(at::kFloat);  // the tensor itself when fp32 (bf16: widened, strides kept)
  if (x.stride(3) != 1) x = x.contiguous();
  auto c = cos_Td.to(at::kFloat).contiguous(), s = sin_Td.to(at::kFloat).contiguous();
  // x's strides where x is dense (the model's transposed view), or the caller's.
  auto y = out_strides.size() == 4 ? at::empty_strided(x.sizes(), out_strides, x.options())
                                   : at::empty_like(x);
  const int64_t B = x.size(0), H = x.size(1), T = x.size(2), d = x.size(3), half = d / 2;
  const float* xp = x.data_ptr<float>();
  const float* cp = c.data_ptr<float>();
  const float* sp = s.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  const auto xs = x.strides(), ys = y.strides();
  at::parallel_for(0, B * H * T, std::max<int64_t>(1, 16384 / std::max<int64_t>(d, 1)),
                   [&](int64_t begin, int64_t end) {
                     for (int64_t n = begin; n < end; ++n) {
                       const int64_t t = n % T, h = (n / T) % H, b = n / (T * H);
                       rotate_row(xp + b * xs[0] + h * xs[1] + t * xs[2], cp + t * d, sp + t * d,
                                  yp + b * ys[0] + h * ys[1] + t * ys[2], half, backward);
                     }
                   });
  return y.to(x_BHTd.scalar_type());
}

}  // namespace dus::kernels::cpu
