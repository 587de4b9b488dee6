#include "train/matmul_rate.h"

#include <ATen/Context.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/randn.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include "core/clock.h"
#include "train/cuda_events.h"

namespace dus {

namespace {

// The median and the best of the timed repeats' rates (GFLOP/s).
MatmulRate summarize(std::vector<double> rates, int64_t n, int products) {
  std::sort(rates.begin(), rates.end());
  MatmulRate r;
  r.gflops = rates[rates.size() / 2];
  r.best_gflops = rates.back();
  r.size = n;
  r.repeats = static_cast<int>(rates.size());
  r.products = products;
  return r;
}

double seconds_for(const at::Tensor& a, const at::Tensor& b) {
  auto start = std::chrono::steady_clock::now();
  auto c = at::mm(a, b);
  (void)c;
  return seconds_since(start);
}
// CUDA: a host clock around one product times its launch plus a synchronize, which at
// 8192^3 on an H100 (~1.5 ms) would understate the rate; events around many back-to-back
// products time the device, and the host waits once per repeat.
MatmulRate measure_cuda_matmul_rate(c10::ScalarType dtype, c10::Device device,
                                    double budget_seconds) {
  const int64_t n = kCudaMatmulSize;
  auto options = at::TensorOptions().dtype(dtype).device(device);
  auto a = at::randn({n, n}, options), b = at::randn({n, n}, options);
  auto c = at::empty({n, n}, options);  // one output, rewritten: no allocation in the timed loop
  CudaIntervals events(device.has_index() ? device.index() : -1);
  // Warm-up, not in the result: the first product creates the cuBLAS handle and workspace on
  // the host (untimed: the start event passes only after it), the next ones let the clocks ramp
  // up from idle, and their time sizes the repeats.
  at::mm_out(c, a, b);
  constexpr int kWarmup = 3;
  events.begin();
  for (int i = 0; i < kWarmup; ++i) at::mm_out(c, a, b);
  events.end();
  const double per_product = std::max(events.take_seconds() / kWarmup, 1e-6);
  // Repeats of ~1/5 of the budget each (5..200 products), so the median has several samples.
  const int products = static_cast<int>(std::clamp(budget_seconds / 5 / per_product, 5.0, 200.0));
  const double flops = 2.0 * static_cast<double>(n * n * n) * products;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(budget_seconds);
  std::vector<double> rates;
  do {
    events.begin();
    for (int i = 0; i < products; ++i) at::mm_out(c, a, b);
    events.end();
    rates.push_back(flops / events.take_seconds() / 1e9);
  } while (std::chrono::steady_clock::now() < deadline || rates.size() < 3);
  return summarize(std::move(rates), n, products);
}

}  // namespace

MatmulRate measure_matmul_rate(c10::ScalarType dtype, c10::Device device, double budget_seconds) {
  if (device.is_cuda()) return measure_cuda_matmul_rate(dtype, device, budget_seconds);
  auto options = at::TensorOptions().dtype(dtype).device(device);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(budget_seconds);
  // Probe at n = 128 (best of three, so a moment of contention does not decide), then pick n
  // so that one product takes about 10 ms: large enough for a kernel's steady state, small
  // enough that a slow dtype (bf16 on an AVX2 CPU, hundreds of times slower than fp32) stays
  // within the budget.
  auto a = at::randn({128, 128}, options), b = at::randn({128, 128}, options);
  seconds_for(a, b);  // first call: allocation, kernel selection, thread pool start
  double probe = 1e9;
  for (int i = 0; i < 3; ++i) probe = std::min(probe, seconds_for(a, b));
  const double probe_gflops = 2.0 * 128 * 128 * 128 / probe / 1e9;
  int64_t n = 128;
  while (n < 2048 && 2.0 * (2 * n) * (2 * n) * (2 * n) / (probe_gflops * 1e9) < 0.010) n *= 2;
  a = at::randn({n, n}, options);
  b = at::randn({n, n}, options);
  seconds_for(a, b);
  std::vector<double> rates;
  do {
    double t = seconds_for(a, b);
    rates.push_back(2.0 * n * n * n / t / 1e9);
  } while (std::chrono::steady_clock::now() < deadline || rates.size() < 3);
  return summarize(std::move(rates), n, 1);
}

}  // namespace dus
