// Compute precision for training: bf16 compute with fp32 master weights, or all fp32. `auto`
// picks bf16 on CUDA, and on a CPU only where bf16 matrix products are measurably faster there
// (AVX-512 BF16 / AMX machines); on AVX2-only CPUs bf16 is many times slower, so fp32.
#pragma once

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <string>

namespace dus {

struct PrecisionChoice {
  c10::ScalarType compute = c10::ScalarType::Float;  ///< parameter/activation dtype
  std::string name;                                  ///< "fp32" | "bf16"
  std::string reason;                       ///< why (logged and written into the run directory)
  double fp32_gflops = 0, bf16_gflops = 0;  ///< the measurement behind an auto choice on CPU
};

/// bf16 must beat fp32 by this factor on a CPU before `auto` takes it: bf16 costs precision
/// (8 mantissa bits in activations and gradients), so a marginal gain is not worth it.
inline constexpr double kBf16MinSpeedup = 1.25;

/// The pure decision of `auto` on a CPU, given the measured `linear` rates (GFLOP/s): bf16 when
/// bf16_gflops > kBf16MinSpeedup * fp32_gflops, else fp32 (also for a zero, NaN or negative
/// rate: a failed measurement falls back to the safe choice). The reason names both rates.
PrecisionChoice decide_cpu_precision(double fp32_gflops, double bf16_gflops);

/// `requested`: auto | fp32 | bf16. `width`: the model's hidden size (the measured products
/// have the shape of a projection: 256 tokens x width x width).
PrecisionChoice choose_precision(const std::string& requested, c10::Device device, int64_t width);

}  // namespace dus
