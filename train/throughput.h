// Training throughput and model FLOPs utilisation (MFU) for the console and the metrics, from
// numbers the caller measured: tokens of all ranks over a window, the model's training FLOPs per
// token, and two denominators per device, the datasheet peak (GPU) and the matmul rate measured
// at start (train/matmul_rate.h). Everything is per device: the ranks' tokens are divided by
// the world size before they meet one device's peak, so 8 GPUs at 40% read 40%, not 320%.
#pragma once

#include <optional>
#include <string>

namespace dus {

/// Dense (no 2:4 sparsity) bf16 tensor-core peak of one device from NVIDIA's datasheets, in
/// TFLOP/s, matched on the name CUDA reports (cudaDeviceProp::name, case-insensitive):
///   A100 (any form factor: "NVIDIA A100-SXM4-80GB", "NVIDIA A100-PCIE-40GB")        312
///   H100 with "PCIe" in the name ("NVIDIA H100 PCIe")                               756
///   H100 otherwise ("NVIDIA H100 80GB HBM3", "NVIDIA H100"): CUDA names the SXM part
///     by its memory, never "SXM", so an H100 that says neither PCIe nor NVL is SXM   989
///   H200 ("NVIDIA H200"), and GH200 (the same Hopper GPU at the same clocks)        989
///   L40S ("NVIDIA L40S")                                                             362
/// A name with "NVL" (H100 NVL, H200 NVL: lower power limits, and the datasheets' figures
/// differ between revisions) and every other device give nullopt. A model number counts only
/// as a whole word: "RTX A1000" is no A100 and "L40" is no L40S (which has twice its peak).
std::optional<double> datasheet_bf16_peak_tflops(const std::string& device_name);

/// One logging window, as measured by the caller.
struct ThroughputInput {
  double tokens = 0;   ///< tokens trained by all ranks together in the window
  double seconds = 0;  ///< wall-clock length of the window, s (> 0)
  int world_size = 1;  ///< ranks, one device each (>= 1)
  double flops_per_token =
      0;  ///< training FLOPs per token (forward + backward), the model's formula
  std::optional<double> datasheet_tflops;  ///< dense datasheet peak per device, TFLOP/s; GPU only
  double measured_gflops = 0;  ///< matmul rate measured per device, GFLOP/s; 0: not measured
  bool gpu = false;         ///< for the text only: "tok/s/GPU" and TF, or "tok/s/rank" and GFLOP/s
  std::string device_name;  ///< for the text only: "no datasheet peak for <name>" (GPU)
};

struct Throughput {
  double tokens_per_s = 0;              ///< all ranks together
  double tokens_per_s_per_device = 0;   ///< tokens_per_s / world_size
  double achieved_tflops = 0;           ///< per device: tokens_per_s_per_device x flops_per_token
  std::optional<double> mfu_datasheet;  ///< achieved / datasheet peak, a fraction
  std::optional<double> mfu_measured;   ///< achieved / measured peak, a fraction
};

/// Throws dus::Error when seconds <= 0, world_size < 1 or tokens < 0.
Throughput compute_throughput(const ThroughputInput& in);

/// The console fragment, e.g. on 8 GPUs
///   "1234 tok/s/GPU (9872 all) | MFU 41.2% of 989 TF datasheet, 52.0% of 784 TF measured"
/// on an unknown GPU "... | MFU 52.0% of 784 TF measured (no datasheet peak for <name>)",
/// on one CPU process "1234 tok/s | MFU 78% of measured 410 GFLOP/s", on several
/// "1234 tok/s/rank (2468 all) | MFU ...". "(all)" is left out for one rank.
std::string format_throughput(const ThroughputInput& in, const Throughput& t);

}  // namespace dus
