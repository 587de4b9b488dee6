// Throughput and MFU per device from injected numbers: the ranks' tokens divided by the world
// size before meeting one device's peak, both MFUs, the console text, and the datasheet table
// matched on the names CUDA reports.
#include <catch2/catch.hpp>

#include "core/error.h"
#include "train/throughput.h"

using dus::datasheet_bf16_peak_tflops;

TEST_CASE("datasheet bf16 peaks match the names CUDA reports", "[unit]") {
  CHECK(datasheet_bf16_peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0);
  CHECK(datasheet_bf16_peak_tflops("NVIDIA A100-SXM4-40GB") == 312.0);
  CHECK(datasheet_bf16_peak_tflops("NVIDIA A100-PCIE-40GB") == 312.0);
  CHECK(datasheet_bf16_peak_tflops("NVIDIA A100 80GB PCIe") == 312.0);
  // H100: PCIe says so; the SXM part is named by its memory, so a bare H100 is SXM.
  CHECK(datasheet_bf16_peak_tflops("NVIDIA H100 80GB HBM3") == 989.0);
  CHECK(datasheet_bf16_peak_tflops("NVIDIA H100") == 989.0);
  CHECK(datasheet_bf16_peak_tflops("NVIDIA H100 PCIe") == 756.0);
  CHECK(datasheet_bf16_peak_tflops("nvidia h100 pcie") == 756.0);
  CHECK(datasheet_bf16_peak_tflops("NVIDIA H200") == 989.0);
  CHECK(datasheet_bf16_peak_tflops("NVIDIA GH200 480GB") == 989.0);
  CHECK(datasheet_bf16_peak_tflops("NVIDIA L40S") == 362.0);
}

TEST_CASE("devices not in the table, NVL parts and look-alike names have no datasheet peak",
          "[unit]") {
  for (const char* name : {"NVIDIA H100 NVL", "NVIDIA H200 NVL", "NVIDIA RTX A1000", "NVIDIA A10",
                           "NVIDIA A10G", "NVIDIA L40", "NVIDIA H20", "NVIDIA H800", "NVIDIA B200",
                           "NVIDIA GeForce RTX 4090", "Tesla V100-SXM2-16GB", "", "cpu"}) {
    INFO(name);
    CHECK_FALSE(datasheet_bf16_peak_tflops(name).has_value());
  }
}

TEST_CASE("8 GPUs: tokens/s and MFU are per device, not all ranks over one peak", "[unit]") {
  dus::ThroughputInput in;
  in.tokens = 16000;  // all 8 ranks, 2 s: 8000 tok/s in all, 1000 per GPU
  in.seconds = 2;
  in.world_size = 8;
  in.flops_per_token = 4e11;    // 1000 tok/s x 4e11 FLOP = 400 TFLOP/s per GPU
  in.datasheet_tflops = 989;    // H100 SXM
  in.measured_gflops = 800000;  // 800 TFLOP/s measured
  in.gpu = true;
  in.device_name = "NVIDIA H100 80GB HBM3";
  auto t = dus::compute_throughput(in);
  CHECK(t.tokens_per_s == Approx(8000));
  CHECK(t.tokens_per_s_per_device == Approx(1000));
  CHECK(t.achieved_tflops == Approx(400));
  REQUIRE(t.mfu_datasheet);
  CHECK(*t.mfu_datasheet == Approx(400.0 / 989.0));
  REQUIRE(t.mfu_measured);
  CHECK(*t.mfu_measured == Approx(0.5));  // all ranks over one device's peak would say 4.0
  CHECK(dus::format_throughput(in, t) ==
        "1000 tok/s/GPU (8000 all) | MFU 40.4% of 989 TF datasheet, 50.0% of 800 TF measured");
}

TEST_CASE("one GPU without a datasheet peak says so and keeps the measured MFU", "[unit]") {
  dus::ThroughputInput in;
  in.tokens = 3000;
  in.seconds = 3;
  in.flops_per_token = 1e11;  // 100 TFLOP/s
  in.measured_gflops = 250000;
  in.gpu = true;
  in.device_name = "NVIDIA GeForce RTX 4090";
  in.datasheet_tflops = datasheet_bf16_peak_tflops(in.device_name);
  auto t = dus::compute_throughput(in);
  CHECK(t.tokens_per_s == Approx(1000));
  CHECK(t.tokens_per_s_per_device == Approx(1000));
  CHECK_FALSE(t.mfu_datasheet);
  CHECK(*t.mfu_measured == Approx(0.4));
  CHECK(dus::format_throughput(in, t) ==
        "1000 tok/s/GPU | MFU 40.0% of 250 TF measured (no datasheet peak for NVIDIA GeForce "
        "RTX 4090)");
  in.measured_gflops = 0;  // not measured either
  CHECK(dus::format_throughput(in, dus::compute_throughput(in)) ==
        "1000 tok/s/GPU | MFU n/a (no datasheet peak for NVIDIA GeForce RTX 4090)");
}

TEST_CASE("CPU: measured peak only, per-rank wording with several ranks", "[unit]") {
  dus::ThroughputInput in;
  in.tokens = 2600;
  in.seconds = 2;
  in.flops_per_token = 3e7;  // 6 x 5M parameters: 1300 tok/s -> 39 GFLOP/s
  in.measured_gflops = 50;
  auto t = dus::compute_throughput(in);
  CHECK(t.achieved_tflops == Approx(0.039));
  CHECK(*t.mfu_measured == Approx(0.78));
  CHECK_FALSE(t.mfu_datasheet);
  CHECK(dus::format_throughput(in, t) == "1300 tok/s | MFU 78% of measured 50 GFLOP/s");

  in.tokens = 5200;  // two ranks, each at the same rate: the MFU does not double
  in.world_size = 2;
  t = dus::compute_throughput(in);
  CHECK(*t.mfu_measured == Approx(0.78));
  CHECK(dus::format_throughput(in, t) ==
        "1300 tok/s/rank (2600 all) | MFU 78% of measured 50 GFLOP/s");

  in.measured_gflops = 0;
  CHECK(dus::format_throughput(in, dus::compute_throughput(in)) ==
        "1300 tok/s/rank (2600 all) | MFU n/a (no measured matmul rate)");
}

TEST_CASE("an empty window or no ranks is an error", "[unit]") {
  dus::ThroughputInput in;
  in.tokens = 100;
  CHECK_THROWS_AS(dus::compute_throughput(in), dus::Error);  // seconds 0
  in.seconds = 1;
  in.world_size = 0;
  CHECK_THROWS_WITH(dus::compute_throughput(in), Catch::Contains("world_size >= 1"));
}
