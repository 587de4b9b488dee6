// One chunk of the chunked cross-entropy: per row of logits (n, V), the loss
// lse(row) - row[target] and, in the same launch, the gradient written over the logits:
// (softmax(row) - onehot(target)) * grad_scale. One block per row; pass 1 keeps an online
// (max, sum of exp) per thread (one read of the row), merged across the block; pass 2 reads the
// row again (from L2 for rows up to a few MB) and writes the gradient in the logits' dtype.
// fp32 throughout, whatever the logits' dtype.
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/macros/Macros.h>

#include <cmath>

#include "model/kernels/cuda_check.cuh"
#include "model/kernels/cuda_launch.h"

namespace dus::kernels::cuda {
namespace {

constexpr int64_t kIgnore = -100;

// Merges (m, s) into (max, sum exp relative to max); -inf maxima contribute nothing.
__device__ __forceinline__ void merge(float& m, float& s, float m2, float s2) {
  const float mx = fmaxf(m, m2);
  if (mx == -INFINITY) return;
  s = (m == -INFINITY ? 0.f : s * expf(m - mx)) + (m2 == -INFINITY ? 0.f : s2 * expf(m2 - mx));
  m = mx;
}

template <typename scalar_t>
__global__ void cross_entropy_kernel(scalar_t* __restrict__ logits,
                                     const int64_t* __restrict__ targets,
                                     const float* __restrict__ grad_scale, float* __restrict__ loss,
                                     int64_t V, bool compute_grad) {
  __shared__ float shared_m[32], shared_s[32];
  __shared__ float shared_lse;
  const int64_t row = blockIdx.x;
  scalar_t* lr = logits + row * V;
  const int64_t target = targets[row];
  const bool counted = target != kIgnore;
  CUDA_KERNEL_ASSERT(!counted || (target >= 0 && target < V));
  // Read before pass 2 overwrites the row.
  const float target_logit = (counted && threadIdx.x == 0) ? static_cast<float>(lr[target]) : 0.f;

  float m = -INFINITY, s = 0.f;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
    const float v = static_cast<float>(lr[j]);
    if (v > m) {
      s = (m == -INFINITY ? 0.f : s * expf(m - v)) + 1.f;
      m = v;
    } else if (v != -INFINITY) {
      s += expf(v - m);  // NaN propagates through here
    }
  }
  for (int offset = 16; offset > 0; offset >>= 1) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, offset);
    const float s2 = __shfl_xor_sync(0xffffffffu, s, offset);
    merge(m, s, m2, s2);
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = (blockDim.x + 31) >> 5;
  if (lane == 0) {
    shared_m[warp] = m;
    shared_s[warp] = s;
  }
  __syncthreads();
  if (warp == 0) {
    m = lane < n_warps ? shared_m[lane] : -INFINITY;
    s = lane < n_warps ? shared_s[lane] : 0.f;
    for (int offset = 16; offset > 0; offset >>= 1) {
      const float m2 = __shfl_xor_sync(0xffffffffu, m, offset);
      const float s2 = __shfl_xor_sync(0xffffffffu, s, offset);
      merge(m, s, m2, s2);
    }
    if (lane == 0) shared_lse = m + logf(s);
  }
  __syncthreads();
  const float lse = shared_lse;
  if (threadIdx.x == 0) loss[row] = counted ? lse - target_logit : 0.f;
  if (!compute_grad) return;
  const float scale = counted ? *grad_scale : 0.f;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
    const float p = expf(static_cast<float>(lr[j]) - lse);
    lr[j] = static_cast<scalar_t>((p - (j == target ? 1.f : 0.f)) * scale);
  }
}

}  // namespace

at::Tensor cross_entropy_chunk(at::Tensor& logits_nV, const at::Tensor& targets_n,
                               const at::Tensor& grad_scale, bool compute_grad) {
  TORCH_CHECK(logits_nV.dim() == 2 && logits_nV.is_contiguous(),
              "cross_entropy_chunk: logits must be contiguous (n, V)");
  TORCH_CHECK(targets_n.scalar_type() == at::kLong && targets_n.is_contiguous() &&
                  targets_n.numel() == logits_nV.size(0),
              "cross_entropy_chunk: targets must be contiguous int64 (n)");
  TORCH_CHECK(grad_scale.scalar_type() == at::kFloat && grad_scale.numel() == 1 &&
                  grad_scale.device() == logits_nV.device(),
              "cross_entropy_chunk: grad_scale must be one fp32 on the logits' device");
  c10::cuda::CUDAGuard guard(logits_nV.device());
  const int64_t n = logits_nV.size(0), V = logits_nV.size(1);
  auto loss = at::empty({n}, logits_nV.options().dtype(at::kFloat));
  if (n == 0) return loss;
  TORCH_CHECK(n < (int64_t{1} << 31), "cross_entropy_chunk: too many rows in one chunk");
  const int threads = threads_for_row(V, 1024);
  auto stream = c10::cuda::getCurrentCUDAStream();
  DUS_DISPATCH_FLOAT_TYPES(logits_nV.scalar_type(), "dus_cross_entropy_chunk", [&] {
    cross_entropy_kernel<scalar_t><<<static_cast<unsigned>(n), threads, 0, stream>>>(
        logits_nV.data_ptr<scalar_t>(), targets_n.data_ptr<int64_t>(), grad_scale.data_ptr<float>(),
        loss.data_ptr<float>(), V, compute_grad);
    DUS_CUDA_CHECK_LAUNCH();
  });
  return loss;
}

}  // namespace dus::kernels::cuda
