// The memory plan of `dus plan` (trainer/memory_plan.h): the arithmetic per item, and the
// verdict the issue asks for: SOLAR 10.7B on 8 x 80 GB fits with zero1, not with ddp.
#include <catch2/catch.hpp>

#include "model/model_config.h"
#include "scaling/layer_plan.h"
#include "scaling/parameter_count.h"
#include "trainer/memory_plan.h"

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
  CHECK(ddp.grads == Approx(2 * P));
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
