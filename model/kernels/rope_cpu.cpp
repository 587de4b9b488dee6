// Rotary embedding on the CPU in one pass: per (b, h, t) row of d values, with x = (x1, x2)
// halves and the table halves (c1, c2), (s1, s2):
//   forward   y1 = x1 c1 - x2 s1,  y2 = x2 c2 + x1 s2        (x cos + rotate_half(x) sin)
//   backward  dx1 = dy1 c1 + dy2 s2,  dx2 = dy2 c2 - dy1 s1  (the transpose of that rotation)
// bf16 rows are read and written as bf16 (no fp32 copies of q and k).
#include <ATen/Parallel.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/empty_strided.h>

#include "model/kernels/cpu_launch.h"
#include "model/kernels/cpu_vector.h"

namespace dus::kernels::cpu {
namespace {

// Rows are T (float, or uint16_t holding bf16: widened in registers, rounded once on store);
// the tables are fp32.
template <typename T>
DUS_CPU_INLINE void rotate_row_body(const T* x, const float* c, const float* s, T* y, int64_t half,
                                    bool backward) {
  const T *x1 = x, *x2 = x + half;
  const float *c1 = c, *c2 = c + half, *s1 = s, *s2 = s + half;
  T *y1 = y, *y2 = y + half;
  if (!backward) {
    for (int64_t j = 0; j < half; ++j) {
      const float a = load(x1[j]), b = load(x2[j]);
      store(y1 + j, a * c1[j] - b * s1[j]);
      store(y2 + j, b * c2[j] + a * s2[j]);
    }
  } else {
    for (int64_t j = 0; j < half; ++j) {
      const float a = load(x1[j]), b = load(x2[j]);
      store(y1 + j, a * c1[j] + b * s2[j]);
      store(y2 + j, b * c2[j] - a * s1[j]);
    }
  }
}

DUS_CPU_CLONES void rotate_row(const float* x, const float* c, const float* s, float* y,
                               int64_t half, bool backward) {
  rotate_row_body(x, c, s, y, half, backward);
}
DUS_CPU_CLONES void rotate_row(const uint16_t* x, const float* c, const float* s, uint16_t* y,
                               int64_t half, bool backward) {
  rotate_row_body(x, c, s, y, half, backward);
}

template <typename T>
void rope_as(const at::Tensor& x, const at::Tensor& c, const at::Tensor& s, const at::Tensor& y,
             bool backward) {
  const int64_t B = x.size(0), H = x.size(1), T_ = x.size(2), d = x.size(3), half = d / 2;
  const T* xp = data_of<T>(x);
  const float* cp = c.data_ptr<float>();
  const float* sp = s.data_ptr<float>();
  T* yp = data_of<T>(y);
  const auto xs = x.strides(), ys = y.strides();
  at::parallel_for(0, B * H * T_, std::max<int64_t>(1, 16384 / std::max<int64_t>(d, 1)),
                   [&](int64_t begin, int64_t end) {
                     for (int64_t n = begin; n < end; ++n) {
                       const int64_t t = n % T_, h = (n / T_) % H, b = n / (T_ * H);
                       rotate_row(xp + b * xs[0] + h * xs[1] + t * xs[2], cp + t * d, sp + t * d,
                                  yp + b * ys[0] + h * ys[1] + t * ys[2], half, backward);
                     }
                   });
}

}  // namespace

at::Tensor rope(const at::Tensor& x_BHTd, const at::Tensor& cos_Td, const at::Tensor& sin_Td,
                bool backward, at::IntArrayRef out_strides) {
  auto x = x_BHTd.stride(3) == 1 ? x_BHTd : x_BHTd.contiguous();
  auto c = cos_Td.to(at::kFloat).contiguous(), s = sin_Td.to(at::kFloat).contiguous();
  // x's strides where x is dense (the model's transposed view), or the caller's.
  auto y = out_strides.size() == 4 ? at::empty_strided(x.sizes(), out_strides, x.options())
                                   : at::empty_like(x);
  if (x.scalar_type() == at::kBFloat16)
    rope_as<uint16_t>(x, c, s, y, backward);
  else
    rope_as<float>(x, c, s, y, backward);
  return y;
}

}  // namespace dus::kernels::cpu
