// Shared by the .cu files: the CUDA error-check macro (file and line in the error), the launch
// geometry helpers and block reductions. Device code accumulates in fp32 whatever the I/O dtype.
#pragma once

#include <ATen/Dispatch.h>
#include <cuda_runtime.h>

#include <string>

#include <fmt/format.h>

#include "core/error.h"

namespace dus::kernels::cuda {

[[noreturn]] inline void cuda_fail(cudaError_t err, const char* expr, const char* file, int line) {
  throw dus::Error(fmt::format("{}:{}", file, line),
                   std::string(expr) + " failed: " + cudaGetErrorString(err),
                   "set `kernels: off` to run the reference ops; CUDA_LAUNCH_BLOCKING=1 pins "
                   "an asynchronous error to its launch");
}

/// Checks a CUDA runtime call; throws dus::Error naming the file and line.
#define DUS_CUDA_CHECK(expr)                                                     \
  do {                                                                           \
    cudaError_t dus_cuda_err_ = (expr);                                          \
    if (dus_cuda_err_ != cudaSuccess)                                            \
      ::dus::kernels::cuda::cuda_fail(dus_cuda_err_, #expr, __FILE__, __LINE__); \
  } while (0)

/// After a <<<...>>> launch: reports a bad configuration at the launch's file and line.
#define DUS_CUDA_CHECK_LAUNCH() DUS_CUDA_CHECK(cudaGetLastError())

inline int multiprocessor_count() {
  int device = 0, sms = 0;
  DUS_CUDA_CHECK(cudaGetDevice(&device));
  DUS_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  return sms;
}

/// Threads per block for a row of `n` elements: a multiple of 32, at most `cap`.
inline int threads_for_row(int64_t n, int cap) {
  int64_t t = ((n + 31) / 32) * 32;
  return static_cast<int>(t < 32 ? 32 : (t > cap ? cap : t));
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

/// Sum over the block; every thread gets the result. `shared` holds at least 33 floats.
__device__ __forceinline__ float block_sum(float v, float* shared) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int n_warps = (blockDim.x + 31) >> 5;
  v = warp_sum(v);
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float w = lane < n_warps ? shared[lane] : 0.f;
    w = warp_sum(w);
    if (lane == 0) shared[32] = w;
  }
  __syncthreads();
  const float total = shared[32];
  __syncthreads();  // `shared` may be reused right after
  return total;
}

}  // namespace dus::kernels::cuda

// fp32, fp16 and bf16 only: the kernels accumulate in fp32, which would lose fp64's precision
// (fp64 tensors take the reference path).
#define DUS_DISPATCH_FLOAT_TYPES(TYPE, NAME, ...)                                \
  AT_DISPATCH_SWITCH(TYPE, NAME,                                                 \
                     AT_DISPATCH_CASE(at::kFloat, __VA_ARGS__) AT_DISPATCH_CASE( \
                         at::kHalf, __VA_ARGS__) AT_DISPATCH_CASE(at::kBFloat16, __VA_ARGS__))
