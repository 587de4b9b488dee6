// Fused SwiGLU: y = silu(gate) * up, elementwise over contiguous tensors of one dtype.
// forward : s = cast(gate * sigmoid(gate)); y = cast(s * up)     (rounded as the eager ops round)
// backward: du = cast(dy * s); dg = cast(cast(dy * up) * sig * (1 + gate * (1 - sig)))
// fp32 arithmetic inside, one rounding to the I/O dtype where eager rounds.
#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

#include "model/kernels/cuda_check.cuh"
#include "model/kernels/cuda_launch.h"

namespace dus::kernels::cuda {
namespace {

__device__ __forceinline__ float sigmoid(float g) {
  return 1.f / (1.f + expf(-g));
}

template <typename scalar_t>
__global__ void swiglu_forward_kernel(const scalar_t* __restrict__ gate,
                                      const scalar_t* __restrict__ up, scalar_t* __restrict__ y,
                                      int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    const float g = static_cast<float>(gate[i]);
    const float s = static_cast<float>(static_cast<scalar_t>(g / (1.f + expf(-g))));
    y[i] = static_cast<scalar_t>(__fmul_rn(s, static_cast<float>(up[i])));
  }
}

template <typename scalar_t>
__global__ void swiglu_backward_kernel(const scalar_t* __restrict__ dy,
                                       const scalar_t* __restrict__ gate,
                                       const scalar_t* __restrict__ up,
                                       scalar_t* __restrict__ dgate, scalar_t* __restrict__ dup,
                                       int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    const float g = static_cast<float>(gate[i]);
    const float d = static_cast<float>(dy[i]);
    const float sig = sigmoid(g);
    const float s = static_cast<float>(static_cast<scalar_t>(g / (1.f + expf(-g))));
    const float ds =
        static_cast<float>(static_cast<scalar_t>(__fmul_rn(d, static_cast<float>(up[i]))));
    dup[i] = static_cast<scalar_t>(__fmul_rn(d, s));
    dgate[i] = static_cast<scalar_t>(ds * sig * (1.f + g * (1.f - sig)));
  }
}

int blocks_for(int64_t n, int threads) {
  return static_cast<int>(std::max<int64_t>(
      1, std::min<int64_t>((n + threads - 1) / threads, multiprocessor_count() * 32)));
}

}  // namespace

at::Tensor swiglu_forward(const at::Tensor& gate, const at::Tensor& up) {
  TORCH_CHECK(gate.is_contiguous() && up.is_contiguous() && gate.sizes() == up.sizes() &&
                  gate.scalar_type() == up.scalar_type(),
              "swiglu_forward: gate and up must be contiguous, same shape and dtype");
  c10::cuda::CUDAGuard guard(gate.device());
  auto y = at::empty_like(gate);
  const int64_t n = gate.numel();
  if (n == 0) return y;
  const int threads = 256;
  auto stream = c10::cuda::getCurrentCUDAStream();
  DUS_DISPATCH_FLOAT_TYPES(gate.scalar_type(), "dus_swiglu_forward", [&] {
    swiglu_forward_kernel<scalar_t><<<blocks_for(n, threads), threads, 0, stream>>>(
        gate.data_ptr<scalar_t>(), up.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), n);
    DUS_CUDA_CHECK_LAUNCH();
  });
  return y;
}

std::tuple<at::Tensor, at::Tensor> swiglu_backward(const at::Tensor& dy, const at::Tensor& gate,
                                                   const at::Tensor& up) {
  TORCH_CHECK(
      dy.is_contiguous() && dy.sizes() == gate.sizes() && dy.scalar_type() == gate.scalar_type(),
      "swiglu_backward: dy must be contiguous, shaped and typed like gate");
  c10::cuda::CUDAGuard guard(gate.device());
  auto dgate = at::empty_like(gate);
  auto dup = at::empty_like(up);
  const int64_t n = gate.numel();
  if (n == 0) return {dgate, dup};
  const int threads = 256;
  auto stream = c10::cuda::getCurrentCUDAStream();
  DUS_DISPATCH_FLOAT_TYPES(gate.scalar_type(), "dus_swiglu_backward", [&] {
    swiglu_backward_kernel<scalar_t><<<blocks_for(n, threads), threads, 0, stream>>>(
        dy.data_ptr<scalar_t>(), gate.data_ptr<scalar_t>(), up.data_ptr<scalar_t>(),
        dgate.data_ptr<scalar_t>(), dup.data_ptr<scalar_t>(), n);
    DUS_CUDA_CHECK_LAUNCH();
  });
  return {dgate, dup};
}

}  // namespace dus::kernels::cuda
