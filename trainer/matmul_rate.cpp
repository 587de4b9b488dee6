#include "trainer/matmul_rate.h"

#include <ATen/Context.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/randn.h>
#include <torch/cuda.h>

#include <algorithm>
#include <chrono>
#include <vector>

namespace dus {

namespace {
double seconds_for(const at::Tensor& a, const at::Tensor& b, c10::Device device) {
  auto start = std::chrono::steady_clock::now();
  auto c = at::mm(a, b);
  if (device.is_cuda()) torch::cuda::synchronize();
  (void)c;
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}
}  // namespace

MatmulRate measure_matmul_rate(c10::ScalarType dtype, c10::Device device, double budget_seconds) {
  auto options = at::TensorOptions().dtype(dtype).device(device);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(budget_seconds);
  // Probe at n = 128 (best of three, so a moment of contention does not decide), then pick n
  // so that one product takes about 10 ms: large enough for a kernel's steady state, small
  // enough that a slow dtype (bf16 on an AVX2 CPU: ~0.3 GFLOP/s) stays within the budget.
  auto a = at::randn({128, 128}, options), b = at::randn({128, 128}, options);
  seconds_for(a, b, device);  // first call: allocation, kernel selection, thread pool start
  double probe = 1e9;
  for (int i = 0; i < 3; ++i) probe = std::min(probe, seconds_for(a, b, device));
  const double probe_gflops = 2.0 * 128 * 128 * 128 / probe / 1e9;
  int64_t n = 128;
  while (n < 2048 && 2.0 * (2 * n) * (2 * n) * (2 * n) / (probe_gflops * 1e9) < 0.010) n *= 2;
  a = at::randn({n, n}, options);
  b = at::randn({n, n}, options);
  seconds_for(a, b, device);
  std::vector<double> rates;
  do {
    double t = seconds_for(a, b, device);
    rates.push_back(2.0 * n * n * n / t / 1e9);
  } while (std::chrono::steady_clock::now() < deadline || rates.size() < 3);
  std::sort(rates.begin(), rates.end());
  MatmulRate r;
  r.gflops = rates[rates.size() / 2];
  r.best_gflops = rates.back();
  r.size = n;
  r.repeats = static_cast<int>(rates.size());
  return r;
}

}  // namespace dus
