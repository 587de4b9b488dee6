// Which fused ops run, and how that is decided: the recipe key `kernels: auto | on | off`.
//
//   off   every op runs its plain LibTorch reference (the formula its fused op is checked
//         against).
//   on    every fused op the device has is used, without a self-test.
//   auto  run_kernel_self_test() first (fresh random inputs, fused op against its reference,
//         forward and backward, fp32 and bf16) and turn on only the ops that pass; the active
//         set is logged.
// CUDA has kernels for RMSNorm, rotary, SwiGLU, the cross-entropy chunk step and AdamW; the CPU
// has one-pass loops (cpu_launch.h) for all but AdamW (the trainer's AdamW calls
// at::_fused_adamw_, which has a CPU kernel of its own, or for bf16 parameters on the CPU a
// one-pass loop, adamw_cpu.cpp, whatever this switch says), and a causal attention in fp32
// (attention_cpu.cpp: blocked BLAS calls that skip the masked half; README, "Speed on CPU",
// compares it with LibTorch's CPU flash kernel). Inference (`dus forward`, evaluation through
// the same model) keeps whatever the trainer set; tools that promise bit-parity with
// transformers leave the set at its default (all off).
// Attention on CUDA needs no kernel of ours: at::scaled_dot_product_attention (causal, grouped
// query heads) picks the flash kernel itself for bf16/fp16 on sm_80/sm_90.
//
// The chunked cross-entropy is a separate choice (KernelOptions::chunked_loss): chunking the
// lm_head + loss over rows saves the (N, V) fp32 logits on the CPU as much as on the GPU, so it
// is allowed on either device; its per-chunk softmax/gradient step is the `cross_entropy` op.
#pragma once

#include <c10/core/Device.h>

#include <cstdint>
#include <string>
#include <vector>

namespace dus::kernels {

enum class KernelMode { kAuto, kOn, kOff };

/// "auto" | "on" | "off" -> KernelMode; anything else is a dus::Error naming `where`.
KernelMode parse_kernel_mode(const std::string& text, const std::string& where = "kernels");
std::string to_string(KernelMode mode);

/// The recipe's kernel settings.
struct KernelOptions {
  /// auto | on | off (see the top of this file). Default auto.
  KernelMode mode = KernelMode::kAuto;
  /// Compute the loss with the chunked lm_head + cross-entropy (any device). Default true.
  bool chunked_loss = true;
  /// Rows of hidden states per loss chunk; 0 picks about 256 MiB of fp32 logits per chunk.
  int64_t loss_chunk_rows = 0;
  /// Print the resolved set (and failed self-test ops) to stderr. Default true.
  bool log = true;
};

/// The resolved switches the model and the trainer read. Default: everything off, so every op
/// runs its plain LibTorch reference.
struct KernelSet {
  bool rmsnorm = false;         ///< fused RMSNorm forward/backward (CUDA, CPU)
  bool rope = false;            ///< fused rotary embedding of q and k (CUDA, CPU)
  bool swiglu = false;          ///< fused silu(gate) * up (CUDA, CPU)
  bool cross_entropy = false;   ///< fused per-chunk softmax + gradient (CUDA, CPU)
  bool attention = false;       ///< fused causal attention (CPU; CUDA keeps SDPA's flash)
  bool adamw = false;           ///< at::_fused_adamw_ (CUDA multi-tensor AdamW)
  bool chunked_loss = false;    ///< chunked lm_head + cross-entropy (any device)
  int64_t loss_chunk_rows = 0;  ///< rows per chunk, 0 = automatic

  /// "rmsnorm rope swiglu cross_entropy adamw chunked_loss" style list of what is on, or "none".
  std::string describe() const;
};

/// One fused op's self-test result.
struct OpSelfTest {
  std::string op;  ///< "rmsnorm", "rope", "swiglu", "cross_entropy", "adamw"
  bool passed = false;
  double max_error_forward = 0;   ///< worst |fused - reference| / (atol + rtol |reference|)
  double max_error_backward = 0;  ///< same for the gradients (1.0 is the tolerance edge)
  double max_abs_forward = 0;     ///< worst plain |fused - reference|, forward
  double max_abs_backward = 0;    ///< worst plain |fused - reference|, gradients
  std::string note;               ///< why it failed or was skipped
};

struct KernelSelfTestReport {
  std::vector<OpSelfTest> ops;
  std::string describe() const;  ///< one line per op, for the log
};

/// The shapes the self-test uses: odd on purpose (hidden sizes not a multiple of any block or
/// warp, odd head_dim / 2, chunks that do not divide the rows).
struct SelfTestSizes {
  int64_t rows = 37;            ///< token rows (RMSNorm, SwiGLU, cross-entropy)
  int64_t hidden = 1000;        ///< D
  int64_t ffn = 1001;           ///< F (SwiGLU width)
  int64_t batch = 2;            ///< B (rotary)
  int64_t heads = 3;            ///< H (rotary)
  int64_t seq = 7;              ///< T (rotary)
  int64_t head_dim = 66;        ///< d (rotary, attention), even
  int64_t kv_heads = 1;         ///< Hkv (attention): all H query heads share one kv head
  int64_t attention_seq = 150;  ///< T (attention): more than two 64-row blocks, not a multiple
  int64_t vocab = 1001;         ///< V (cross-entropy)
  int64_t loss_chunk_rows = 8;  ///< rows per cross-entropy chunk
};

/// Runs every fused op against its reference on `device`: fresh random inputs from a private
/// generator seeded with `seed` (the global RNG is not touched), fp32 and bf16 (AdamW: fp32),
/// forward and backward. Error measure per tensor: max |fused - ref| / (atol * rms(ref) +
/// rtol * |ref|), passing at <= 1. Tolerances (atol, rtol): fp32 forward 1e-5, backward 1e-4,
/// cross-entropy 2e-3 (its matmuls may run in TF32; its reference is the chunked loss with the
/// plain per-chunk step in fp64 on the same inputs, see self_test.cpp); bf16 forward 1.6e-2 (4 bf16
/// ulps), backward 3.2e-2 (the reference rounds intermediates to bf16 where the kernels keep fp32;
/// cross-entropy 1e-1: its gradients cancel, and the plain bf16 loss itself is 2e-2 off);
/// AdamW 1e-5. On the CPU the op without a CPU loop (adamw) is reported not
/// passed with the reason in `note`, as is every op on CUDA in a build without CUDA kernels.
/// The shapes are small so that it can run at every start.
KernelSelfTestReport run_kernel_self_test(c10::Device device, uint64_t seed = 1234,
                                          const SelfTestSizes& sizes = {});

/// True when this build compiled the CUDA kernels (DUS_WITH_CUDA).
bool cuda_kernels_built();

/// options + device -> the switches (runs the self-test for auto). `report`, when given,
/// receives the self-test results (empty when none ran).
KernelSet resolve_kernels(const KernelOptions& options, c10::Device device,
                          KernelSelfTestReport* report = nullptr);

}  // namespace dus::kernels
