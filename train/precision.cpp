#include "train/precision.h"

#include <ATen/Parallel.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/randn.h>

#include <algorithm>
#include <chrono>

#include <fmt/format.h>

#include "core/clock.h"
#include "core/error.h"

namespace dus {

namespace {

// Best-of-N rate of `linear` (what the model's projections run) in `dtype`, within ~budget.
double linear_gflops(c10::ScalarType dtype, int64_t width, double budget_seconds) {
  const int64_t tokens = 256;
  auto options = at::TensorOptions().dtype(dtype);
  auto x = at::randn({tokens, width}, options), w = at::randn({width, width}, options);
  at::linear(x, w);  // first call: kernel selection, packing
  const double flops = 2.0 * tokens * width * width;
  double best = 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(budget_seconds);
  int runs = 0;
  do {
    auto start = std::chrono::steady_clock::now();
    at::linear(x, w);
    double t = seconds_since(start);
    best = std::max(best, flops / t / 1e9);
  } while (++runs < 3 || std::chrono::steady_clock::now() < deadline);
  return best;
}

}  // namespace

namespace {
PrecisionChoice make_choice(bool bf16, std::string reason) {
  PrecisionChoice c;
  c.compute = bf16 ? c10::ScalarType::BFloat16 : c10::ScalarType::Float;
  c.name = bf16 ? "bf16" : "fp32";
  c.reason = std::move(reason);
  return c;
}
}  // namespace

PrecisionChoice decide_cpu_precision(double fp32_gflops, double bf16_gflops) {
  // Written so that NaN compares false: no valid measurement, no bf16.
  const bool bf16 = fp32_gflops > 0 && bf16_gflops > kBf16MinSpeedup * fp32_gflops;
  const std::string reason = fmt::format(
      "auto on CPU: bf16 linear {:.1f} GFLOP/s vs fp32 {:.1f} GFLOP/s ({:.2f}x; bf16 needs > "
      "{:.2f}x) -> {}",
      bf16_gflops, fp32_gflops, fp32_gflops > 0 ? bf16_gflops / fp32_gflops : 0.0, kBf16MinSpeedup,
      bf16 ? "bf16" : "fp32");
  PrecisionChoice c = make_choice(bf16, reason);
  c.fp32_gflops = fp32_gflops;
  c.bf16_gflops = bf16_gflops;
  return c;
}

PrecisionChoice choose_precision(const std::string& requested, c10::Device device, int64_t width) {
  if (requested == "fp32") return make_choice(false, "train.precision = fp32");
  if (requested == "bf16") return make_choice(true, "train.precision = bf16");
  if (requested != "auto")
    throw Error("train.precision", "\"" + requested + "\" is not one of auto|fp32|bf16");
  if (device.is_cuda()) return make_choice(true, "auto: CUDA device");
  // A short measurement decides: cpuid flags say what exists, not whether the kernels this
  // torch build dispatches to use it. On one thread, alternating fp32 and bf16 rounds, best of
  // each: the bf16/fp32 ratio is a property of a core, and a one-thread product is immune to
  // what a shared 2-core machine does to a multi-thread one (a descheduled worker stalls every
  // parallel region, and a multi-thread measurement there can come out far below the core's
  // rate and pick the wrong precision).
  width = std::clamp<int64_t>(width, 64, 2048);
  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  double fp32 = 0, bf16 = 0;
  for (int round = 0; round < 4; ++round) {
    fp32 = std::max(fp32, linear_gflops(c10::ScalarType::Float, width, 0.02));
    bf16 = std::max(bf16, linear_gflops(c10::ScalarType::BFloat16, width, 0.02));
  }
  at::set_num_threads(threads);
  return decide_cpu_precision(fp32, bf16);
}

}  // namespace dus
