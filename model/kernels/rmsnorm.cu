// Fused RMSNorm, forward and backward, for x (N, D) and weight (D) of one dtype.
// forward : y = w * cast(x * rstd), rstd = 1 / sqrt(mean(x^2) + eps), statistics in fp32 and the
//           normalised value rounded to x's dtype before the scale, as the model (and
//           transformers) do.
// backward: with g = dy * w and n = x * rstd (fp32),
//           dx = rstd * (g - n * mean(g * n)),  dw = sum over rows of dy * cast(n).
// One block per row (grid-strided); dw is accumulated per block in an fp32 (blocks, D) buffer
// that each thread owns by column (no atomics), then summed over blocks.
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

#include "model/kernels/cuda_check.cuh"
#include "model/kernels/cuda_launch.h"

namespace dus::kernels::cuda {
namespace {

template <typename scalar_t>
__global__ void rmsnorm_forward_kernel(const scalar_t* __restrict__ x,
                                       const scalar_t* __restrict__ w, scalar_t* __restrict__ y,
                                       float* __restrict__ rstd, int64_t rows, int64_t D,
                                       float eps) {
  __shared__ float shared[33];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const scalar_t* xr = x + row * D;
    scalar_t* yr = y + row * D;
    float sum_sq = 0.f;
    for (int64_t j = threadIdx.x; j < D; j += blockDim.x) {
      const float v = static_cast<float>(xr[j]);
      sum_sq += v * v;
    }
    sum_sq = block_sum(sum_sq, shared);
    const float r = rsqrtf(sum_sq / static_cast<float>(D) + eps);
    if (threadIdx.x == 0) rstd[row] = r;
    for (int64_t j = threadIdx.x; j < D; j += blockDim.x) {
      const scalar_t n = static_cast<scalar_t>(__fmul_rn(static_cast<float>(xr[j]), r));
      yr[j] = static_cast<scalar_t>(__fmul_rn(static_cast<float>(w[j]), static_cast<float>(n)));
    }
  }
}

template <typename scalar_t>
__global__ void rmsnorm_backward_kernel(const scalar_t* __restrict__ dy,
                                        const scalar_t* __restrict__ x,
                                        const scalar_t* __restrict__ w,
                                        const float* __restrict__ rstd, scalar_t* __restrict__ dx,
                                        float* __restrict__ dw_partial, int64_t rows, int64_t D) {
  __shared__ float shared[33];
  float* dw_block = dw_partial + static_cast<int64_t>(blockIdx.x) * D;  // (D) of (blocks, D)
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const scalar_t* dyr = dy + row * D;
    const scalar_t* xr = x + row * D;
    scalar_t* dxr = dx + row * D;
    const float r = rstd[row];
    float dot = 0.f;
    for (int64_t j = threadIdx.x; j < D; j += blockDim.x) {
      const float g = static_cast<float>(dyr[j]) * static_cast<float>(w[j]);
      const float n = static_cast<float>(xr[j]) * r;
      dot += g * n;
      const float n_cast = static_cast<float>(static_cast<scalar_t>(n));
      dw_block[j] += static_cast<float>(dyr[j]) * n_cast;
    }
    const float mean_gn = block_sum(dot, shared) / static_cast<float>(D);
    for (int64_t j = threadIdx.x; j < D; j += blockDim.x) {
      const float g = static_cast<float>(dyr[j]) * static_cast<float>(w[j]);
      const float n = static_cast<float>(xr[j]) * r;
      dxr[j] = static_cast<scalar_t>(r * (g - n * mean_gn));
    }
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> rmsnorm_forward(const at::Tensor& x_ND, const at::Tensor& w_D,
                                                   double eps) {
  TORCH_CHECK(x_ND.dim() == 2 && x_ND.is_contiguous() && w_D.is_contiguous() &&
                  w_D.numel() == x_ND.size(1) && w_D.scalar_type() == x_ND.scalar_type(),
              "rmsnorm_forward: bad shapes/dtypes");
  c10::cuda::CUDAGuard guard(x_ND.device());
  const int64_t rows = x_ND.size(0), D = x_ND.size(1);
  auto y = at::empty_like(x_ND);
  auto rstd = at::empty({rows}, x_ND.options().dtype(at::kFloat));
  if (rows == 0) return {y, rstd};
  const int threads = threads_for_row(D, 512);
  const int blocks = static_cast<int>(std::min<int64_t>(rows, multiprocessor_count() * 16));
  auto stream = c10::cuda::getCurrentCUDAStream();
  DUS_DISPATCH_FLOAT_TYPES(x_ND.scalar_type(), "dus_rmsnorm_forward", [&] {
    rmsnorm_forward_kernel<scalar_t><<<blocks, threads, 0, stream>>>(
        x_ND.data_ptr<scalar_t>(), w_D.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(),
        rstd.data_ptr<float>(), rows, D, static_cast<float>(eps));
    DUS_CUDA_CHECK_LAUNCH();
  });
  return {y, rstd};
}

std::tuple<at::Tensor, at::Tensor> rmsnorm_backward(const at::Tensor& dy_ND, const at::Tensor& x_ND,
                                                    const at::Tensor& w_D,
                                                    const at::Tensor& rstd_N) {
  TORCH_CHECK(dy_ND.is_contiguous() && x_ND.is_contiguous() && dy_ND.sizes() == x_ND.sizes() &&
                  dy_ND.scalar_type() == x_ND.scalar_type() && rstd_N.numel() == x_ND.size(0),
              "rmsnorm_backward: bad shapes/dtypes");
  c10::cuda::CUDAGuard guard(x_ND.device());
  const int64_t rows = x_ND.size(0), D = x_ND.size(1);
  auto dx = at::empty_like(x_ND);
  if (rows == 0) return {dx, at::zeros_like(w_D)};
  const int threads = threads_for_row(D, 512);
  const int blocks = static_cast<int>(std::min<int64_t>(rows, multiprocessor_count() * 4));
  auto dw_partial = at::zeros({blocks, D}, x_ND.options().dtype(at::kFloat));  // (blocks, D)
  auto stream = c10::cuda::getCurrentCUDAStream();
  DUS_DISPATCH_FLOAT_TYPES(x_ND.scalar_type(), "dus_rmsnorm_backward", [&] {
    rmsnorm_backward_kernel<scalar_t><<<blocks, threads, 0, stream>>>(
        dy_ND.data_ptr<scalar_t>(), x_ND.data_ptr<scalar_t>(), w_D.data_ptr<scalar_t>(),
        rstd_N.data_ptr<float>(), dx.data_ptr<scalar_t>(), dw_partial.data_ptr<float>(), rows, D);
    DUS_CUDA_CHECK_LAUNCH();
  });
  return {dx, dw_partial.sum(0).to(w_D.scalar_type())};
}

}  // namespace dus::kernels::cuda
