// The matrix-multiply rate this process actually gets, per dtype: the denominator of MFU on a
// CPU (where no datasheet peak applies) and the evidence for choosing fp32 or bf16 there.
#pragma once

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

namespace dus {

struct MatmulRate {
  double gflops = 0;       ///< median GFLOP/s over the timed repeats
  double best_gflops = 0;  ///< fastest repeat: the peak (contention only ever slows a repeat)
  int64_t size = 0;   ///< n of the n x n x n products timed
  int repeats = 0;
};

/// Times n x n by n x n products of `dtype` on `device` for about `budget_seconds` (at least
/// three), n chosen from a short probe so one product takes ~10 ms (128 <= n <= 2048): a slow
/// dtype (bf16 on an AVX2 CPU) costs no more than the budget.
MatmulRate measure_matmul_rate(c10::ScalarType dtype, c10::Device device, double budget_seconds);

}  // namespace dus
