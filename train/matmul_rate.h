// The matrix-multiply rate this process actually gets, per dtype: the denominator of MFU on a
// CPU (where no datasheet peak applies) and the evidence for choosing fp32 or bf16 there; on a
// GPU the measured companion of the datasheet peak (train/throughput.h).
#pragma once

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

namespace dus {

struct MatmulRate {
  double gflops = 0;       ///< median GFLOP/s over the timed repeats
  double best_gflops = 0;  ///< fastest repeat: the peak (contention only ever slows a repeat)
  int64_t size = 0;        ///< n of the n x n x n products timed
  int repeats = 0;
  int products = 1;  ///< products per timed repeat (CUDA: launched back to back between events)
};

/// Times n x n by n x n products of `dtype` on `device` for about `budget_seconds` (at least
/// three), n chosen from a short probe so one product takes ~10 ms (128 <= n <= 2048): a slow
/// dtype (bf16 on an AVX2 CPU) costs no more than the budget.
/// On a CUDA device instead: 8192 x 8192 x 8192 products (kCudaMatmulSize), a few untimed
/// warm-up products, then repeats of many products launched back to back between two CUDA
/// events with one host wait per repeat, for about `budget_seconds` (at least three repeats).
/// Needs three n x n tensors of `dtype` on the device (384 MiB in bf16), left in the caching
/// allocator for the tensors that follow.
MatmulRate measure_matmul_rate(c10::ScalarType dtype, c10::Device device, double budget_seconds);

/// n of the products timed on CUDA: large enough that cuBLAS runs at its steady-state rate on
/// A100/H100-class GPUs (smaller products leave SMs idle in the tail wave).
constexpr int64_t kCudaMatmulSize = 8192;

}  // namespace dus
