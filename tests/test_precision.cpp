// The CPU precision decision of `train.precision: auto`, with injected matmul rates (no
// measurement): bf16 only where it is clearly faster, fp32 on AVX2-only CPUs.
#include "torch_test.h"

#include <cmath>

#include "core/error.h"
#include "train/precision.h"

TEST_CASE("auto picks fp32 where bf16 is slower (AVX2 CPUs)", "[unit]") {
  // Rates of an AVX2-only CPU: fp32 ~140 GFLOP/s, bf16 linear ~20 GFLOP/s.
  auto c = dus::decide_cpu_precision(140.0, 20.0);
  CHECK(c.name == "fp32");
  CHECK(c.compute == c10::ScalarType::Float);
  CHECK(c.fp32_gflops == 140.0);
  CHECK(c.bf16_gflops == 20.0);
  CHECK_THAT(c.reason, Catch::Contains("bf16 linear 20.0") && Catch::Contains("fp32 140.0") &&
                           Catch::EndsWith("-> fp32"));
  CHECK(dus::decide_cpu_precision(140.0, 0.3).name == "fp32");  // bf16 `matmul` there
}

TEST_CASE("auto picks bf16 where it is clearly faster (AVX-512 BF16 / AMX)", "[unit]") {
  auto c = dus::decide_cpu_precision(380.0, 2400.0);  // this workplace's AMX Xeon
  CHECK(c.name == "bf16");
  CHECK(c.compute == c10::ScalarType::BFloat16);
  CHECK_THAT(c.reason, Catch::EndsWith("-> bf16"));
  CHECK(dus::decide_cpu_precision(140.0, 950.0).name == "bf16");
}

TEST_CASE("a marginal bf16 gain or a failed measurement keeps fp32", "[unit]") {
  CHECK(dus::decide_cpu_precision(100.0, 125.0).name == "fp32");  // exactly 1.25x: not enough
  CHECK(dus::decide_cpu_precision(100.0, 126.0).name == "bf16");
  CHECK(dus::decide_cpu_precision(0.0, 10.0).name == "fp32");
  CHECK(dus::decide_cpu_precision(std::nan(""), 10.0).name == "fp32");
  CHECK(dus::decide_cpu_precision(10.0, std::nan("")).name == "fp32");
}

TEST_CASE("forced precisions and bad values", "[unit]") {
  const auto cpu = c10::Device(c10::DeviceType::CPU);
  CHECK(dus::choose_precision("fp32", cpu, 256).name == "fp32");
  CHECK(dus::choose_precision("bf16", cpu, 256).name == "bf16");
  CHECK(dus::choose_precision("auto", c10::Device(c10::DeviceType::CUDA, 0), 256).name == "bf16");
  CHECK_THROWS_AS(dus::choose_precision("fp16", cpu, 256), dus::Error);
  // auto on this CPU measures; whatever it picks, the reason carries both rates.
  auto c = dus::choose_precision("auto", cpu, 256);
  CHECK(c.fp32_gflops > 0);
  CHECK(c.bf16_gflops > 0);
  CHECK_THAT(c.reason, Catch::StartsWith("auto on CPU: bf16 linear"));
}
