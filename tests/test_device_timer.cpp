// The phase timer: on CPU it accumulates host time per phase and resets on collect, and misuse
// (nesting, stopping the wrong phase, collecting mid-phase) throws. [gpu]: CUDA events agree with
// a synchronised host clock without the host waiting per phase, and the CUDA matmul rate is a
// plausible fraction of the datasheet peak.
#include "torch_test.h"

#include <chrono>
#include <cstdio>
#include <thread>

#include "core/error.h"
#include "train/cuda_events.h"
#include "train/device_timer.h"
#include "train/matmul_rate.h"
#include "train/throughput.h"

using dus::Phase;
using Clock = std::chrono::steady_clock;

namespace {
void sleep_ms(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}
double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}
size_t idx(Phase p) {
  return static_cast<size_t>(p);
}
}  // namespace

TEST_CASE("CPU phase timer accumulates per phase and resets on collect", "[unit]") {
  dus::DeviceTimer timer(c10::Device(c10::DeviceType::CPU));
  const auto wall_start = Clock::now();
  for (int micro = 0; micro < 2; ++micro) {  // two micro-batches: forward and backward twice
    timer.start(Phase::forward);
    sleep_ms(20);
    timer.stop(Phase::forward);
    timer.start(Phase::backward);
    sleep_ms(40);
    timer.stop(Phase::backward);
  }
  sleep_ms(30);  // between phases: counted nowhere
  auto s = timer.collect();
  const double wall = seconds_since(wall_start);
  CHECK(s[idx(Phase::forward)] >= 0.040);
  CHECK(s[idx(Phase::backward)] >= 0.080);
  CHECK(s[idx(Phase::optimizer)] == 0.0);
  // The phases are disjoint parts of the wall time, and the 30 ms gap is in none of them.
  CHECK(s[idx(Phase::forward)] + s[idx(Phase::backward)] <= wall - 0.030);

  auto again = timer.collect();  // reset: nothing since the last collect
  CHECK(again[0] == 0.0);
  CHECK(again[1] == 0.0);
  CHECK(again[2] == 0.0);
  timer.start(Phase::optimizer);
  sleep_ms(10);
  timer.stop(Phase::optimizer);
  auto next = timer.collect();
  CHECK(next[idx(Phase::optimizer)] >= 0.010);
  CHECK(next[idx(Phase::forward)] == 0.0);
}

TEST_CASE("phase timer misuse throws and names the phases", "[unit]") {
  dus::DeviceTimer timer(c10::Device(c10::DeviceType::CPU));
  CHECK_THROWS_WITH(timer.stop(Phase::forward),
                    Catch::Contains("stop(forward)") && Catch::Contains("no phase is open"));
  timer.start(Phase::forward);
  CHECK_THROWS_WITH(
      timer.start(Phase::backward),
      Catch::Contains("start(backward) while forward is open") && Catch::Contains("do not nest"));
  CHECK_THROWS_WITH(timer.start(Phase::forward), Catch::Contains("while forward is open"));
  CHECK_THROWS_WITH(timer.stop(Phase::optimizer),
                    Catch::Contains("stop(optimizer) but forward is open"));
  CHECK_THROWS_WITH(timer.collect(), Catch::Contains("collect() while forward is open"));
  timer.stop(Phase::forward);  // still usable after the refused calls
  CHECK_NOTHROW(timer.collect());
  CHECK(std::string(dus::phase_name(Phase::optimizer)) == "optimizer");
}

namespace {
bool cuda_ready() {
  if (!torch::cuda::is_available()) {
    WARN("skipped: no CUDA device");
    return false;
  }
  if (!dus::cuda_events_built()) {
    WARN("skipped: this build has no CUDA support (DUS_CUDA=OFF or no toolkit)");
    return false;
  }
  return true;
}
}  // namespace

TEST_CASE("CUDA phase timer: event time matches a synchronised clock, no wait per phase", "[gpu]") {
  if (!cuda_ready()) return;
  const c10::Device cuda(c10::DeviceType::CUDA, 0);
  auto a = torch::randn({8192, 8192}, torch::TensorOptions().dtype(torch::kBFloat16).device(cuda));
  auto c = torch::mm(a, a);
  dus::DeviceTimer timer(cuda);
  for (int round = 0; round < 2; ++round) {  // the second round reuses the events
    torch::cuda::synchronize();
    const auto wall_start = Clock::now();
    timer.start(Phase::forward);
    for (int i = 0; i < 20; ++i) c = torch::mm(a, a);
    timer.stop(Phase::forward);
    timer.start(Phase::backward);
    for (int i = 0; i < 20; ++i) c = torch::mm(a, a);
    timer.stop(Phase::backward);
    const double host_queue = seconds_since(wall_start);  // launches only: nothing waited
    torch::cuda::synchronize();
    const double wall = seconds_since(wall_start);
    auto s = timer.collect();
    const double device = s[idx(Phase::forward)] + s[idx(Phase::backward)];
    INFO("round " << round << ": forward " << s[0] << " s, backward " << s[1] << " s, wall " << wall
                  << " s, host queueing " << host_queue << " s");
    CHECK(s[idx(Phase::forward)] > 0);
    CHECK(s[idx(Phase::backward)] == Approx(s[idx(Phase::forward)]).epsilon(0.3));
    CHECK(s[idx(Phase::optimizer)] == 0.0);
    CHECK(device <= wall * 1.01);
    CHECK(device >= 0.8 * wall);
    CHECK(host_queue < 0.5 * wall);  // start/stop did not wait for the GPU
    auto again = timer.collect();
    CHECK(again[0] == 0.0);
    CHECK(again[1] == 0.0);
  }
}

TEST_CASE("CUDA matmul rate: 8192^3 products timed by events, near the datasheet peak", "[gpu]") {
  if (!cuda_ready()) return;
  const c10::Device cuda(c10::DeviceType::CUDA, 0);
  const auto name = dus::cuda_device_name(0);
  const auto r = dus::measure_matmul_rate(c10::ScalarType::BFloat16, cuda, 0.5);
  WARN(name << ": bf16 " << r.gflops / 1e3 << " TFLOP/s median, " << r.best_gflops / 1e3
            << " best, " << r.repeats << " repeats of " << r.products << " products");
  CHECK(r.size == dus::kCudaMatmulSize);
  CHECK(r.repeats >= 3);
  CHECK(r.products >= 5);
  CHECK(r.best_gflops >= r.gflops);
  if (auto peak = dus::datasheet_bf16_peak_tflops(name)) {
    // cuBLAS at 8192^3 reaches 60-90% of the dense datasheet peak on A100/H100/H200; a wrong
    // FLOP count (x2) or a host sync per product would leave this band.
    CHECK(r.best_gflops / 1e3 / *peak > 0.4);
    CHECK(r.best_gflops / 1e3 / *peak < 1.05);
  } else {
    WARN("no datasheet peak for " << name << ": only the measurement's shape was checked");
  }
}
