#include "trainer/memory_plan.h"

#include <algorithm>
#include <cstdio>

#include "model/kernels/cross_entropy.h"

#include "trainer/text_format.h"

namespace dus {

double MemoryPlan::total() const {
  return params + grads + masters + moments + comm + activations(checkpointing) + logits + runtime +
         allocator;
}

MemoryPlan make_memory_plan(const ModelConfig& c, const MemoryPlanOptions& o) {
  MemoryPlan m;
  const double P = static_cast<double>(c.parameter_count());
  const double W = static_cast<double>(o.world_size);
  const double cb = static_cast<double>(o.compute_bytes);
  const bool zero1 = o.strategy == "zero1";
  m.parameters = c.parameter_count();
  m.params = P * cb;
  m.grads = P * cb;
  if (zero1) {
    m.masters = 4 * P / W;
    m.moments = 8 * P / W;
    m.comm = (4 + cb) * P / W;
  } else {
    m.masters = o.compute_bytes == 4 ? 0 : 4 * P;
    m.moments = 8 * P;
  }
  const double tokens = static_cast<double>(o.micro_batch * o.seq_len);
  const double D = static_cast<double>(c.hidden_size), I = static_cast<double>(c.intermediate_size);
  const double q = static_cast<double>(c.q_width()), kv = static_cast<double>(c.kv_width());
  const double H = static_cast<double>(c.num_attention_heads);
  const double L = static_cast<double>(c.num_hidden_layers);
  // Saved per token per layer (memory_plan.h lists each tensor).
  const double plain_per_token_layer = cb * (8 * D + 6 * q + 5 * kv + 4 * I) + 4 * H;
  const double fp32_attention_out = o.cpu_attention && o.compute_bytes == 2 ? 4 * q : 0;
  const double per_token_layer =
      o.fused_ops ? cb * (4 * D + 3 * q + 2 * kv + 3 * I) + 4 * H + 8 + fp32_attention_out
                  : plain_per_token_layer;
  const double outside = cb * 3 * D * tokens;  // embeddings out, final norm in/out
  // Backward holds one layer's activation gradients on top of what is saved (the transient):
  // the gradients of every intermediate, which fused ops do not save but still differentiate,
  // so the transient is the plain layer's size either way.
  const double transient = plain_per_token_layer * tokens;
  // Activations with `saved_per_token` bytes saved per token per layer: every layer's set, or
  // with checkpointing each layer's input plus one layer's set recomputed; plus the transient.
  auto activations = [&](double saved_per_token, bool checkpointing) {
    const double layer = saved_per_token * tokens;
    return (checkpointing ? cb * D * tokens * L + layer : layer * L) + transient + outside;
  };
  m.activations_full = activations(per_token_layer, false);
  m.activations_checkpointed = activations(per_token_layer, true);
  // What glibc keeps follows the step's churn of freed blocks, which fused ops shrink less than
  // the saved set: the retention share applies to the plain path's activations (measured on
  // CPU, 4 layers, 2048 tokens: plan within 5% of peak RSS with kernels off and auto).
  const double plain_activations = activations(plain_per_token_layer, o.activation_checkpointing);
  const double V = static_cast<double>(c.vocab_size);
  if (o.chunked_loss) {
    const int64_t rows_default = kernels::default_loss_chunk_rows(c.vocab_size);
    const double rows = std::min(
        tokens, static_cast<double>(o.loss_chunk_rows > 0 ? o.loss_chunk_rows : rows_default));
    m.logits = rows * V * (cb == 4 ? 4 : cb + 4) + 4 * V * D + cb * tokens * D;
  } else {
    m.logits = tokens * V * (cb + 4 + 4);
  }
  m.runtime = o.runtime_bytes;
  m.checkpointing = o.activation_checkpointing;
  m.allocator = o.host_allocator_retention * plain_activations;
  return m;
}

std::string format_memory_plan(const MemoryPlan& m, const MemoryPlanOptions& o) {
  std::string out;
  char line[256];
  auto row = [&](const char* what, double bytes, const char* note) {
    std::snprintf(line, sizeof line, "  %-30s %9.2f GB  %s\n", what, bytes / 1e9, note);
    out += line;
  };
  const bool zero1 = o.strategy == "zero1";
  std::snprintf(line, sizeof line,
                "per device: %s, %lld rank(s), %s compute, micro_batch %lld x seq_len %lld\n",
                o.strategy.c_str(), static_cast<long long>(o.world_size),
                o.compute_bytes == 2 ? "bf16" : "fp32", static_cast<long long>(o.micro_batch),
                static_cast<long long>(o.seq_len));
  out += line;
  row("parameters", m.params, "replicated");
  row("gradients", m.grads, zero1 ? "flat buffer, reduce-scattered" : "all-reduce buckets");
  row("master weights (fp32)", m.masters,
      zero1 ? "sharded / W" : (o.compute_bytes == 4 ? "the parameters" : "replicated"));
  row("Adam moments (fp32)", m.moments, zero1 ? "sharded / W" : "replicated");
  if (zero1) row("comm buffers", m.comm, "fp32 grad shard + all-gather input");
  row("activations, no checkpointing", m.activations_full, m.checkpointing ? "" : "<- used");
  row("activations, checkpointing", m.activations_checkpointed, m.checkpointing ? "<- used" : "");
  row("logits (+ fp32 loss, grad)", m.logits, o.chunked_loss ? "chunked loss" : "full logits");
  row("runtime reserve", m.runtime, "CUDA context, allocator slack / process libraries");
  if (m.allocator > 0)
    row("host allocator retention", m.allocator, "freed step tensors glibc keeps resident");
  row("total", m.total(), "");
  std::snprintf(line, sizeof line, "  %-30s %9.2f GB  %s (%.0f%%)\n", "device memory",
                o.device_bytes / 1e9, m.fits(o.device_bytes) ? "FITS" : "DOES NOT FIT",
                100.0 * m.total() / o.device_bytes);
  out += line;
  return out;
}

}  // namespace dus
