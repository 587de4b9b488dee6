// The per-device memory budget of a training run from the config alone (no weights): what
// `dus plan` prints before committing GPUs. Counts follow what this trainer allocates:
//
//   parameters      P x c                  (c = 2 bf16, 4 fp32 compute bytes)
//   gradients       P x c (ddp: the buckets; zero1: the flat buffer); 4P + c x the largest
//                   tensor with the fp32 buffer (single/ddp, bf16, accumulating); zero2: the
//                   fp32 accumulator 4P / W + 3 staged fp32 buckets + c x the largest tensor
//   master weights  4P (ddp, bf16) | 0 (ddp, fp32: the parameters are the masters) | 4P / W
//                   (zero1, zero2)
//   Adam moments    8P | 8P / W (zero1, zero2)
//   comm buffers    zero1: fp32 gradient shard + all-gather input, (4 + c) P / W; zero2: the
//                   all-gather input c P / W
//   activations     saved for backward, per token per layer, SDPA attention:
//                   fused ops (kernels auto/on: RMSNorm, rotary, SwiGLU):
//                   c x (4D + 3q + 2kv + 3I) + 4H + 8: each RMSNorm's input and output (2D
//                   each) and fp32 rstd, rotated q and k, v, attention output and o_proj input
//                   (3q + 2kv) + log-sum-exp, SwiGLU gate and up and the product (3I);
//                   + 4q on a CPU in bf16 (the attention's fp32 output);
//                   plain LibTorch ops (kernels off):
//                   c x (8D + 6q + 5kv + 4I) + 4H: two RMSNorms (input, square, rsqrt,
//                   normed: 4D each), q/k/v plus rotary intermediates (2q + 2kv) and rotated
//                   q/k, attention output and o_proj input (2q) + log-sum-exp, SwiGLU gate,
//                   up, silu, product (4I);
//                   plus one plain layer's worth for the activation gradients backward holds
//                   at once (fused ops save less but differentiate the same). Checkpointing keeps
//                   each layer's input (c D per token per layer) plus one layer's set recomputed
//                   and its gradients. (Checked against peak RSS on CPU for tiny configs:
//                   tests/python/test_distributed.py.)
//   logits          chunked loss: one chunk's logits (rows x V x 4, or x (c + 4) in bf16: the
//                   chunk and its fp32 softmax), the fp32 lm_head gradient accumulator (4VD)
//                   and the hidden-state gradient (c B T D); full logits: B T V x (c + 4 + 4),
//                   the logits, their fp32 upcast and its gradient
//   runtime         CUDA context and allocator slack (GPU) or the process's libraries (CPU)
//   optimizer       AdamW steps in chunks (train/adamw.h): bf16 replicated widens one chunk of
//                   gradients to fp32, 4 x max(chunk, largest tensor); zero1 steps its fp32
//                   shard in place (0)
//
// Three peaks per device, each the largest moment of a phase:
//   training step   everything above
//   evaluation      what persists between steps (parameters, optimizer state; the gradient
//                   buffers of ddp/zero1, which stay allocated) + one no-grad layer's
//                   intermediates for eval.batch sequences + one loss chunk; and the
//                   optimizer step of an evaluation step, which also copies one chunk of old
//                   masters for the update ratios (4 x max(chunk, largest tensor))
//   start-up        the base model evaluated in the compute dtype on the device (c x P_base +
//                   its evaluation), then the strategy built (parameters placed, this rank's
//                   optimizer state; zero1 also its flat gradient buffer, ddp its buckets) and
//                   the scaled model evaluated. The fp32 base and its scaled copy live in host
//                   memory meanwhile: 4 x (P_base + P) per rank, reported beside. On a CPU host
//                   and device are one: the fp32 base (and its mapped file while loading), the
//                   scaled copy, the host masters held until the strategy took them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/model_config.h"

namespace dus {

struct MemoryPlanOptions {
  int64_t world_size = 1;                 ///< data-parallel ranks
  std::string strategy = "ddp";           ///< ddp | zero1 | zero2
  int64_t compute_bytes = 2;              ///< 2 (bf16) or 4 (fp32)
  int64_t micro_batch = 1;                ///< sequences per forward/backward per rank
  int64_t seq_len = 4096;                 ///< tokens per sequence
  bool activation_checkpointing = false;  ///< recompute each decoder layer in backward
  bool fused_ops = true;                  ///< RMSNorm, rotary, SwiGLU fused (kernels auto/on)
  /// The CPU attention (fused ops on a CPU): in bf16 it also saves its output in fp32 for the
  /// backward (4q bytes per token per layer; kernels/attention.cpp says why).
  bool cpu_attention = false;
  bool chunked_loss = true;      ///< chunked lm_head + cross-entropy (dus train's)
  int64_t loss_chunk_rows = 0;   ///< rows per loss chunk; 0 = the trainer's default
  double runtime_bytes = 2.5e9;  ///< fixed overhead per device (CUDA context, allocator)
  /// Host (CPU) runs: share of the activation memory glibc keeps mapped after a step. dus
  /// raises malloc's mmap/trim thresholds (train/process_stats.h) so each step's large
  /// tensors reuse pages instead of faulting in fresh ones; the freed blocks stay resident. 0.4 of
  /// the plain path's activations, measured on CPU (fp32, 4 layers, 8 x 256 tokens; the same share
  /// holds with the fused CPU ops).
  double host_allocator_retention = 0;
  double device_bytes = 80e9;  ///< memory of one device
  /// The base model before scaling (start-up evaluates it); absent: trained from scratch.
  const ModelConfig* base = nullptr;
  /// The base's safetensors hold fp32 (mapped beside the loaded copy while loading, on a CPU).
  bool base_file_fp32 = true;
  int64_t eval_batch = 4;                     ///< sequences per evaluation forward
  int64_t chunk_elements = int64_t{1} << 26;  ///< AdamW chunk (OptimizerOptions)
  bool on_host = false;  ///< the device is the host (a CPU run): start-up shares its memory
  /// single/ddp in bf16: gradients accumulate in an fp32 buffer (train.grad_accumulation)
  bool grad_accumulation_fp32 = true;
  int64_t micro_batches = 1;  ///< per optimizer step per rank
  double bucket_mb = 25;      ///< gradient bucket size (distributed.bucket_mb)
};

struct MemoryPlan {
  int64_t parameters = 0;  ///< P
  double params = 0, grads = 0, masters = 0, moments = 0, comm = 0;
  double activations_full = 0;          ///< without checkpointing
  double activations_checkpointed = 0;  ///< with checkpointing
  double logits = 0, runtime = 0;
  double allocator = 0;     ///< host runs: freed step memory glibc keeps (see the options)
  double optimizer = 0;     ///< AdamW's chunk transient in a step
  double startup = 0;       ///< peak at start-up (device)
  double startup_host = 0;  ///< host memory per rank at start-up (GPU runs; on a CPU in startup)
  double evaluation = 0;    ///< peak at an evaluation step
  /// Everything, with the activations the options choose.
  double total() const;
  double activations(bool checkpointing) const {
    return checkpointing ? activations_checkpointed : activations_full;
  }
  bool checkpointing = false;
  bool fits(double device_bytes) const { return total() <= device_bytes; }
};

MemoryPlan make_memory_plan(const ModelConfig& config, const MemoryPlanOptions& options);

/// The table `dus plan` prints (one line per item, GB per device, then the verdict).
std::string format_memory_plan(const MemoryPlan& plan, const MemoryPlanOptions& options);

}  // namespace dus
