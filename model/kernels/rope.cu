// Fused rotary embedding for one of q or k, x (B, H, T, d) with any strides but a contiguous
// last dimension (the model's q/k are transposed views of (B, T, H, d)).
// forward : y = x * cos + rotate_half(x) * sin,   rotate_half(x1, x2) = (-x2, x1)
// backward: dx = dy * cos - rotate_half(dy * sin)  (the transpose of the rotation)
// Each thread takes one (j, j + d/2) pair. Products and the sum are rounded separately in the
// I/O dtype (__fmul_rn/__fadd_rn: no fused multiply-add), exactly as the eager expression rounds,
// so fused and reference agree bit for bit in fp32 and bf16.
#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

#include "model/kernels/cuda_check.cuh"
#include "model/kernels/cuda_launch.h"

namespace dus::kernels::cuda {
namespace {

template <typename scalar_t>
__device__ __forceinline__ float round_mul(float a, float b) {
  return static_cast<float>(static_cast<scalar_t>(__fmul_rn(a, b)));
}

struct Strides4 {
  int64_t b, h, t;
};

template <typename scalar_t>
__global__ void rope_kernel(const scalar_t* __restrict__ x, scalar_t* __restrict__ y,
                            const scalar_t* __restrict__ cos_Td,
                            const scalar_t* __restrict__ sin_Td, int64_t H, int64_t T, int64_t half,
                            Strides4 sx, Strides4 sy, int64_t total, bool backward) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    const int64_t j = i % half;
    int64_t rest = i / half;
    const int64_t t = rest % T;
    rest /= T;
    const int64_t h = rest % H;
    const int64_t b = rest / H;
    const scalar_t* xp = x + b * sx.b + h * sx.h + t * sx.t;
    scalar_t* yp = y + b * sy.b + h * sy.h + t * sy.t;
    const scalar_t* c = cos_Td + t * 2 * half;
    const scalar_t* s = sin_Td + t * 2 * half;
    const float x1 = static_cast<float>(xp[j]), x2 = static_cast<float>(xp[j + half]);
    const float c1 = static_cast<float>(c[j]), c2 = static_cast<float>(c[j + half]);
    const float s1 = static_cast<float>(s[j]), s2 = static_cast<float>(s[j + half]);
    float y1, y2;
    if (!backward) {
      y1 = __fadd_rn(round_mul<scalar_t>(x1, c1), round_mul<scalar_t>(-x2, s1));
      y2 = __fadd_rn(round_mul<scalar_t>(x2, c2), round_mul<scalar_t>(x1, s2));
    } else {  // here x is dy: dx1 = dy1 c1 + dy2 s2, dx2 = dy2 c2 - dy1 s1
      y1 = __fadd_rn(round_mul<scalar_t>(x1, c1), round_mul<scalar_t>(x2, s2));
      y2 = __fadd_rn(round_mul<scalar_t>(x2, c2), -round_mul<scalar_t>(x1, s1));
    }
    yp[j] = static_cast<scalar_t>(y1);
    yp[j + half] = static_cast<scalar_t>(y2);
  }
}

}  // namespace

at::Tensor rope(const at::Tensor& x_BHTd, const at::Tensor& cos_Td, const at::Tensor& sin_Td,
                bool backward) {
  TORCH_CHECK(x_BHTd.dim() == 4 && x_BHTd.stride(3) == 1 && x_BHTd.size(3) % 2 == 0,
              "rope: x must be (B, H, T, d), d even, last dim contiguous");
  const int64_t B = x_BHTd.size(0), H = x_BHTd.size(1), T = x_BHTd.size(2), d = x_BHTd.size(3);
  TORCH_CHECK(cos_Td.is_contiguous() && sin_Td.is_contiguous() && cos_Td.size(0) == T &&
                  cos_Td.size(1) == d && sin_Td.sizes() == cos_Td.sizes() &&
                  cos_Td.scalar_type() == x_BHTd.scalar_type() &&
                  sin_Td.scalar_type() == x_BHTd.scalar_type(),
              "rope: cos/sin must be contiguous (T, d) in x's dtype");
  c10::cuda::CUDAGuard guard(x_BHTd.device());
  auto y = at::empty_like(x_BHTd);  // same strides as x (dense, non-overlapping)
  const int64_t half = d / 2, total = B * H * T * half;
  if (total == 0) return y;
  const int threads = 256;
  const int blocks = static_cast<int>(
      std::min<int64_t>((total + threads - 1) / threads, multiprocessor_count() * 32));
  const Strides4 sx{x_BHTd.stride(0), x_BHTd.stride(1), x_BHTd.stride(2)};
  const Strides4 sy{y.stride(0), y.stride(1), y.stride(2)};
  TORCH_CHECK(y.stride(3) == 1, "rope: output layout");
  auto stream = c10::cuda::getCurrentCUDAStream();
  DUS_DISPATCH_FLOAT_TYPES(x_BHTd.scalar_type(), "dus_rope", [&] {
    rope_kernel<scalar_t><<<blocks, threads, 0, stream>>>(
        x_BHTd.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), cos_Td.data_ptr<scalar_t>(),
        sin_Td.data_ptr<scalar_t>(), H, T, half, sx, sy, total, backward);
    DUS_CUDA_CHECK_LAUNCH();
  });
  return y;
}

}  // namespace dus::kernels::cuda
