#include "train/memory_plan.h"

#include <algorithm>
#include <initializer_list>

#include <fmt/format.h>

#include "model/kernels/cross_entropy.h"

#include "core/text_format.h"

namespace dus {

double MemoryPlan::total() const {
  return params + grads + masters + moments + comm + activations(checkpointing) + logits + runtime +
         allocator + optimizer;
}

MemoryPlan make_memory_plan(const ModelConfig& c, const MemoryPlanOptions& o) {
  MemoryPlan m;
  const double P = static_cast<double>(c.parameter_count());
  const double W = static_cast<double>(o.world_size);
  const double cb = static_cast<double>(o.compute_bytes);
  const bool zero1 = o.strategy == "zero1", zero2 = o.strategy == "zero2";
  const bool sharded = zero1 || zero2;
  const bool single = o.world_size == 1 && !sharded;
  const double D0 = static_cast<double>(c.hidden_size),
               I0 = static_cast<double>(c.intermediate_size);
  const double largest = std::max(
      {static_cast<double>(c.vocab_size) * D0, I0 * D0, static_cast<double>(c.q_width()) * D0});
  // The fp32 buffer of single/ddp (optimizer_strategy.cpp): bf16, and something to add up.
  const bool fp32_buffer = !sharded && o.grad_accumulation_fp32 && o.compute_bytes == 2 &&
                           (o.world_size > 1 || o.micro_batches > 1);
  m.parameters = c.parameter_count();
  m.params = P * cb;
  // A bucket holds whole parameters: a tensor larger than bucket_mb is a bucket of its own.
  const double bucket = std::max(o.bucket_mb * 1024 * 1024, 4 * largest);
  if (fp32_buffer)
    m.grads = 4 * P + cb * largest;  // the buffer + one parameter's gradient being added in
  else if (zero2)
    m.grads = 4 * P / W + 3 * bucket + cb * largest;  // accumulator + staged buckets
  else
    m.grads = P * cb;
  if (sharded) {
    m.masters = 4 * P / W;
    m.moments = 8 * P / W;
    // zero1: the fp32 gradient shard + the all-gather input; zero2: the all-gather input.
    m.comm = (zero1 ? 4 + cb : cb) * P / W;
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
  // the saved set: the retention share applies to the plain path's activations (so one share
  // fits the peak resident memory with kernels off and auto alike).
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

  // AdamW's chunk: the largest tensor is a chunk of its own. Only compute-dtype gradients are
  // widened to fp32 there.
  const double chunk = std::min(P, std::max(static_cast<double>(o.chunk_elements), largest));
  m.optimizer = sharded || fp32_buffer || o.compute_bytes == 4 ? 0 : 4 * chunk;

  // Evaluation: no-grad forwards of eval_batch sequences hold one layer's intermediates (the
  // plain layer's set is the upper bound) and the hidden states in and out, then one loss
  // chunk's logits. Single-process gradients are freed after each step; ddp's buckets and
  // zero1's flat buffer stay.
  auto eval_forward = [&](const ModelConfig& cfg) {
    const double t = static_cast<double>(o.eval_batch * o.seq_len);
    const double d = static_cast<double>(cfg.hidden_size),
                 i = static_cast<double>(cfg.intermediate_size);
    const double qq = static_cast<double>(cfg.q_width()), kk = static_cast<double>(cfg.kv_width());
    const double per_token = cb * (8 * d + 6 * qq + 5 * kk + 4 * i) + 4 * cfg.num_attention_heads;
    const double v = static_cast<double>(cfg.vocab_size);
    const int64_t rows_default = kernels::default_loss_chunk_rows(cfg.vocab_size);
    const double rows =
        std::min(t, static_cast<double>(o.loss_chunk_rows > 0 ? o.loss_chunk_rows : rows_default));
    return per_token * t + 2 * cb * d * t + rows * v * (cb == 4 ? 4 : cb + 4);
  };
  const double state = m.params + m.masters + m.moments;
  // Gradient storage that outlives a step: ddp's buckets, the fp32 buffer, zero1's flat buffer,
  // zero2's accumulator; a single process in its compute dtype frees its .grad.
  const double kept_grads = single && !fp32_buffer ? 0 : (zero2 ? 4 * P / W : m.grads);
  m.evaluation = std::max(state + kept_grads + eval_forward(c) + m.runtime, m.total() + 4 * chunk);

  // Start-up. The strategy's construction: parameters and optimizer state, and the gradient
  // storage that outlives a step (allocated there).
  // zero1/zero2 end it with an all-gather of the parameters from a compute-dtype copy of the
  // master shard; Gloo (a CPU run) stages the gathered output in a buffer of its own.
  const double gather = sharded ? cb * P / W + (o.on_host ? cb * P : 0) : 0;
  const double built = state + kept_grads + gather;
  const double Pb = o.base ? static_cast<double>(o.base->parameter_count()) : 0;
  if (!o.on_host) {
    const double base_eval = o.base ? cb * Pb + eval_forward(*o.base) : 0;
    m.startup = std::max(base_eval, built + eval_forward(c)) + m.runtime;
    m.startup_host = 4 * (Pb + P);
  } else {
    // One memory: the fp32 base (+ its mapped fp32 file while loading; + a compute-dtype copy
    // to evaluate it in bf16), then base and scaled copy side by side, then the host masters
    // (the fp32 model) beside what the strategy builds. In fp32 the replicated strategy's
    // parameters and masters are the host model itself.
    const double load = o.base ? 4 * Pb + (o.base_file_fp32 ? 4 * Pb : 0) : 0;
    const double base_eval = o.base ? 4 * Pb + (cb == 2 ? cb * Pb : 0) + eval_forward(*o.base) : 0;
    const double scale = o.base ? 4 * Pb + 4 * P : 0;
    const double host_masters = 4 * P;
    const double strategy =
        sharded ? built : (cb == 4 ? m.moments + kept_grads : m.params + m.moments + kept_grads);
    m.startup =
        std::max({load, base_eval, scale, host_masters + strategy + eval_forward(c)}) + m.runtime;
    m.startup_host = 0;
  }
  return m;
}

std::string format_memory_plan(const MemoryPlan& m, const MemoryPlanOptions& o) {
  std::string out;
  auto line = std::back_inserter(out);
  auto row = [&](const char* what, double bytes, const char* note) {
    fmt::format_to(line, "  {:<30} {:9.2f} GB  {}\n", what, bytes / 1e9, note);
  };
  const bool zero1 = o.strategy == "zero1", zero2 = o.strategy == "zero2";
  const bool sharded = zero1 || zero2;
  fmt::format_to(line, "per device: {}, {} rank(s), {} compute, micro_batch {} x seq_len {}\n",
                 o.strategy, o.world_size, o.compute_bytes == 2 ? "bf16" : "fp32", o.micro_batch,
                 o.seq_len);
  row("parameters", m.params, "replicated");
  const bool fp32_grads = m.grads >= 4 * static_cast<double>(m.parameters) && o.compute_bytes == 2;
  row("gradients", m.grads,
      zero1        ? "flat buffer (compute dtype), bucket reduces"
      : zero2      ? "fp32 shard / W + staged fp32 buckets"
      : fp32_grads ? "fp32 accumulation buffer (all-reduce buckets)"
                   : "all-reduce buckets");
  row("master weights (fp32)", m.masters,
      sharded ? "sharded / W" : (o.compute_bytes == 4 ? "the parameters" : "replicated"));
  row("Adam moments (fp32)", m.moments, sharded ? "sharded / W" : "replicated");
  if (sharded)
    row("comm buffers", m.comm, zero1 ? "fp32 grad shard + all-gather input" : "all-gather input");
  row("activations, no checkpointing", m.activations_full, m.checkpointing ? "" : "<- used");
  row("activations, checkpointing", m.activations_checkpointed, m.checkpointing ? "<- used" : "");
  row("logits (+ fp32 loss, grad)", m.logits, o.chunked_loss ? "chunked loss" : "full logits");
  row("runtime reserve", m.runtime, "CUDA context, allocator slack / process libraries");
  if (m.allocator > 0)
    row("host allocator retention", m.allocator, "freed step tensors glibc keeps resident");
  if (m.optimizer > 0) row("optimizer chunk", m.optimizer, "gradients widened to fp32, one chunk");
  row("total", m.total(), "");
  fmt::format_to(line, "  {:<30} {:9.2f} GB  {} ({:.0f}%)\n", "device memory", o.device_bytes / 1e9,
                 m.fits(o.device_bytes) ? "FITS" : "DOES NOT FIT",
                 100.0 * m.total() / o.device_bytes);
  auto peak = [&](const char* what, double bytes, const char* note) {
    fmt::format_to(line, "  {:<30} {:9.2f} GB  {}{}\n", what, bytes / 1e9,
                   bytes <= o.device_bytes ? "fits" : "DOES NOT FIT", note);
  };
  peak("peak at start-up", m.startup,
       o.base ? " (base evaluated on the device, then the strategy built)" : " (strategy built)");
  peak("peak in a training step", m.total(), " (the total above)");
  peak("peak at an evaluation step", m.evaluation, " (eval forward; update-ratio chunk)");
  if (m.startup_host > 0) {
    fmt::format_to(line, "  {:<30} {:9.2f} GB  {}\n", "host memory at start-up",
                   m.startup_host / 1e9, "per rank: the fp32 base and its scaled copy");
  }
  return out;
}

}  // namespace dus
