#include "trainer/precision.h"

#include <ATen/ops/linear.h>
#include <ATen/ops/randn.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "model/error.h"

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
    double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best = std::max(best, flops / t / 1e9);
  } while (++runs < 3 || std::chrono::steady_clock::now() < deadline);
  return best;
}

}  // namespace

PrecisionChoice choose_precision(const std::string& requested, c10::Device device, int64_t width) {
  PrecisionChoice c;
  auto set = [&](bool bf16, std::string reason) {
    c.compute = bf16 ? c10::ScalarType::BFloat16 : c10::ScalarType::Float;
    c.name = bf16 ? "bf16" : "fp32";
    c.reason = std::move(reason);
  };
  if (requested == "fp32") {
    set(false, "train.precision = fp32");
  } else if (requested == "bf16") {
    set(true, "train.precision = bf16");
  } else if (requested != "auto") {
    throw Error("train.precision", "\"" + requested + "\" is not one of auto|fp32|bf16");
  } else if (device.is_cuda()) {
    set(true, "auto: CUDA device");
  } else {
    // A short measurement decides: cpuid flags say what exists, not whether the kernels this
    // torch build dispatches to use it. bf16 must beat fp32 by a margin to be worth its error.
    width = std::clamp<int64_t>(width, 64, 2048);
    c.fp32_gflops = linear_gflops(c10::ScalarType::Float, width, 0.05);
    c.bf16_gflops = linear_gflops(c10::ScalarType::BFloat16, width, 0.05);
    char reason[160];
    const bool bf16 = c.bf16_gflops > 1.25 * c.fp32_gflops;
    std::snprintf(reason, sizeof reason, "auto on CPU: bf16 linear %.1f GFLOP/s vs fp32 %.1f GFLOP/s -> %s",
                  c.bf16_gflops, c.fp32_gflops, bf16 ? "bf16" : "fp32");
    set(bf16, reason);
  }
  return c;
}

}  // namespace dus
