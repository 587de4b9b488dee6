// The memory plan of `dus plan` (train/memory_plan.h): the arithmetic per item, and the
// verdict README's "Training a real model" relies on: SOLAR 10.7B on 8 x 80 GB fits with zero1,
// not with ddp.
#include <catch2/catch.hpp>

#include "model/kernels/cross_entropy.h"
#include "model/model_config.h"
#include "scaling/layer_plan.h"
#include "scaling/parameter_count.h"
#include "train/memory_plan.h"

#include <algorithm>

using namespace dus;

namespace {

ModelConfig mistral_7b() {
  ModelConfig c;  // Mistral-7B-v0.1's published config (recipes/configs/mistral-7b-v0.1.json)
  c.vocab_size = 32000;
  c.hidden_size = 4096;
  c.intermediate_size = 14336;
  c.num_hidden_layers = 32;
  c.num_attention_heads = 32;
  c.num_key_value_heads = 8;
  c.head_dim = 128;
  c.tie_word_embeddings = false;
  return c;
}

MemoryPlanOptions solar_options(const std::string& strategy) {
  MemoryPlanOptions o;
  o.world_size = 8;
  o.strategy = strategy;
  o.compute_bytes = 2;
  o.micro_batch = 1;
  o.seq_len = 4096;
  o.activation_checkpointing = true;
  return o;
}

}  // namespace

TEST_CASE("memory plan: SOLAR 10.7B on 8 x 80 GB fits with zero1 and not with ddp", "[unit]") {
  PlanRequest req;
  req.method = "dus";
  req.m = 8;
  const ModelConfig base = mistral_7b();
  const LayerPlan plan = make_plan(req, base.num_hidden_layers, "test");
  const ModelConfig solar = scaled_config(base, plan);
  REQUIRE(base.parameter_count() == 7241732096LL);
  REQUIRE(scaled_parameter_count(base, plan) == 10731524096LL);

  const MemoryPlan ddp = make_memory_plan(solar, solar_options("ddp"));
  const MemoryPlan zero1 = make_memory_plan(solar, solar_options("zero1"));
  const double P = 10731524096.0;
  CHECK(ddp.params == Approx(2 * P));
  // ddp in bf16 on 8 ranks accumulates and all-reduces in its fp32 buffer (+ one bf16 gradient
  // of the largest tensor, the 32000 x 4096 embedding, being added in).
  CHECK(ddp.grads == Approx(4 * P + 2 * 32000.0 * 4096));
  CHECK(ddp.masters == Approx(4 * P));
  CHECK(ddp.moments == Approx(8 * P));
  CHECK(zero1.masters == Approx(4 * P / 8));
  CHECK(zero1.moments == Approx(8 * P / 8));
  CHECK(zero1.comm == Approx(6 * P / 8));
  CHECK(!ddp.fits(80e9));
  CHECK(zero1.fits(80e9));
  // The documented accounting (memory_plan.h), fused ops, bf16, 4096 tokens, 48 layers: saved
  // 2(4D + 3q + 2kv + 3I) + 4H + 8 = 147,592 B per token per layer, the backward transient
  // (plain layer) 2(8D + 6q + 5kv + 4I) + 4H = 239,744 B, outside 2 x 3D.
  const double T = 4096, saved = 147592 * T, transient = 239744 * T, outside = 2 * 3 * 4096 * T;
  CHECK(zero1.activations_full == Approx(saved * 48 + transient + outside));
  CHECK(zero1.activations_checkpointed == Approx(2 * 4096 * T * 48 + saved + transient + outside));
  // Checkpointing is what makes the activations small: without it zero1 does not fit either.
  CHECK(zero1.activations_checkpointed < zero1.activations_full / 8);
  MemoryPlanOptions no_ckpt = solar_options("zero1");
  no_ckpt.activation_checkpointing = false;
  CHECK(!make_memory_plan(solar, no_ckpt).fits(80e9));
}

TEST_CASE("memory plan: fp32 ddp has no separate masters; zero1 shards shrink with ranks",
          "[unit]") {
  ModelConfig c = mistral_7b();
  c.num_hidden_layers = 2;
  MemoryPlanOptions o;
  o.compute_bytes = 4;
  CHECK(make_memory_plan(c, o).masters == 0);
  o.strategy = "zero1";
  o.world_size = 1;
  const double one = make_memory_plan(c, o).moments;
  o.world_size = 4;
  CHECK(make_memory_plan(c, o).moments == Approx(one / 4));
}

TEST_CASE("memory plan: the CPU attention saves an fp32 output in bf16 only", "[unit]") {
  ModelConfig c = mistral_7b();
  c.num_hidden_layers = 2;
  MemoryPlanOptions o;
  o.micro_batch = 1;
  o.seq_len = 128;
  for (int64_t bytes : {2, 4}) {
    o.compute_bytes = bytes;
    o.cpu_attention = false;
    const double without = make_memory_plan(c, o).activations_full;
    o.cpu_attention = true;
    const double with = make_memory_plan(c, o).activations_full;
    const double fp32_out = bytes == 2 ? 4.0 * c.q_width() * 128 * 2 : 0.0;  // 4q x tokens x L
    CHECK(with - without == Approx(fp32_out));
  }
}

TEST_CASE("memory plan: SOLAR's zero2 recipe fits 80 GB at start-up, in a step and at evaluation",
          "[unit]") {
  PlanRequest req;
  req.method = "dus";
  req.m = 8;
  const ModelConfig base = mistral_7b();
  const ModelConfig solar = scaled_config(base, make_plan(req, base.num_hidden_layers, "test"));
  const double P = 10731524096.0, Pb = 7241732096.0, W = 8;
  const double largest = 32000.0 * 4096;  // embed_tokens / lm_head, the largest tensor
  MemoryPlanOptions o = solar_options("zero2");
  o.base = &base;
  o.micro_batches = 64;
  o.eval_batch = 4;
  const MemoryPlan z2 = make_memory_plan(solar, o);
  // fp32 accumulator shard + three staged fp32 buckets (a bucket holds whole tensors: the
  // 131M-element embedding is one of 524 MB) + one bf16 gradient being added in.
  CHECK(z2.grads == Approx(4 * P / W + 3 * 4 * largest + 2 * largest));
  CHECK(z2.masters == Approx(4 * P / W));
  CHECK(z2.moments == Approx(8 * P / W));
  CHECK(z2.comm == Approx(2 * P / W));  // the all-gather input
  CHECK(z2.optimizer == 0);             // AdamW steps the fp32 shard in place
  // Start-up: the base in bf16 on the device for its evaluation is far smaller than the
  // strategy built; nothing near the 86 GB of placing the fp32 model on the device.
  CHECK(z2.startup > 2 * P + 12 * P / W);
  CHECK(z2.startup_host == Approx(4 * (Pb + P)));
  for (double peak : {z2.startup, z2.total(), z2.evaluation}) {
    INFO("peak " << peak / 1e9 << " GB");
    CHECK(peak < 80e9);
  }
  // zero1 keeps a bf16 gradient for every parameter: zero2 holds less in a step.
  const MemoryPlan z1 = make_memory_plan(solar, solar_options("zero1"));
  CHECK(z2.total() < z1.total());
  // ddp with the fp32 buffer: 4 bytes of gradient per parameter, no widening chunk.
  MemoryPlanOptions d = solar_options("ddp");
  d.micro_batches = 64;
  const MemoryPlan ddp = make_memory_plan(solar, d);
  CHECK(ddp.grads == Approx(4 * P + 2 * largest));
  CHECK(ddp.optimizer == 0);
  d.grad_accumulation_fp32 = false;
  const MemoryPlan ddp_bf16 = make_memory_plan(solar, d);
  CHECK(ddp_bf16.grads == Approx(2 * P));
  CHECK(ddp_bf16.optimizer == Approx(4 * largest));  // one chunk widened: the embedding alone
}

TEST_CASE("memory plan: an evaluation step costs one chunk of old masters, not a model copy",
          "[unit]") {
  ModelConfig c = mistral_7b();
  c.num_hidden_layers = 4;
  MemoryPlanOptions o;
  o.compute_bytes = 2;
  o.strategy = "zero1";
  o.world_size = 2;
  o.seq_len = 1024;
  o.eval_batch = 2;
  const MemoryPlan m = make_memory_plan(c, o);
  // By hand: the eval forward holds one plain layer's intermediates and the hidden states in
  // and out for 2 x 1024 tokens, then one loss chunk (bf16 logits and their fp32 softmax).
  const double t = 2048, D = 4096, q = 4096, kv = 1024, I = 14336, V = 32000;
  const double rows = std::min(t, static_cast<double>(kernels::default_loss_chunk_rows(32000)));
  const double forward =
      2 * (8 * D + 6 * q + 5 * kv + 4 * I) * t + 4 * 32 * t + 2 * 2 * D * t + rows * V * (2 + 4);
  const double chunk = std::max(static_cast<double>(o.chunk_elements), V * D);
  // zero1 keeps its flat gradient buffer between steps.
  const double eval_forward_phase =
      m.params + m.masters + m.moments + m.grads + forward + m.runtime;
  const double eval_step_phase = m.total() + 4 * chunk;  // the update ratios' old masters
  CHECK(m.evaluation == Approx(std::max(eval_forward_phase, eval_step_phase)));
  CHECK(m.evaluation < m.total() + m.params);  // far below a second copy of the parameters
}
