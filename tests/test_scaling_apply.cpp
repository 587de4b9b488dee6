// Applying plans to models in memory: the right tensors in the right places, independent
// copies, block expansion preserving the function, and peak memory within base + scaled + 10%.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>

#include "core/error.h"
#include "scaling/block_expansion.h"
#include "scaling/depth_upscale.h"

namespace {

dus::ModelConfig tiny_config(bool tied = false) {
  dus::ModelConfig c;
  c.vocab_size = 61;
  c.hidden_size = 24;
  c.intermediate_size = 40;
  c.num_hidden_layers = 4;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 8;
  c.max_position_embeddings = 128;
  c.initializer_range = 0.1;
  c.tie_word_embeddings = tied;
  return c;
}

dus::Transformer random_model(const dus::ModelConfig& c, uint64_t seed) {
  torch::manual_seed(seed);
  dus::Transformer model(c);
  // Norms start at 1; perturb them so a norm copied from the wrong layer cannot hide.
  torch::NoGradGuard no_grad;
  for (auto& p : model->parameters())
    if (p.dim() == 1) p.add_(0.1 * torch::randn_like(p));
  return model;
}

// Every scaled parameter equals the base parameter the plan says it comes from.
void check_origins(dus::Transformer& base, dus::Transformer& scaled, const dus::LayerPlan& plan) {
  auto from = base->named_parameters();
  for (const auto& p : scaled->named_parameters()) {
    std::string name = p.key();
    const std::string prefix = "model.layers.";
    bool zeroed = false;
    if (name.rfind(prefix, 0) == 0) {
      size_t dot = name.find('.', prefix.size());
      auto origin = plan.layers[std::stoul(name.substr(prefix.size(), dot - prefix.size()))];
      name = prefix + std::to_string(origin.base_layer) + name.substr(dot);
      zeroed = origin.zero_output && (name.find("o_proj") != std::string::npos ||
                                      name.find("down_proj") != std::string::npos);
    }
    INFO(p.key() << " <- " << name);
    REQUIRE(from.find(name) != nullptr);
    if (zeroed)
      CHECK(p.value().abs().max().item<double>() == 0.0);
    else
      CHECK(torch::equal(p.value(), from[name]));
  }
}

}  // namespace

TEST_CASE("dus(4, 1) copies the planned layers, embeddings, norm and lm_head", "[unit]") {
  for (bool tied : {false, true}) {
    INFO("tied " << tied);
    dus::Transformer base = random_model(tiny_config(tied), 3);
    dus::LayerPlan plan = dus::dus_plan(4, 1);
    dus::ScaledModel s = dus::apply_plan(base, plan);
    CHECK(s.model->num_layers() == 6);
    CHECK(s.model->config().num_hidden_layers == 6);
    CHECK(s.model->config().parameter_count() ==
          base->config().parameter_count() + 2 * base->config().layer_parameter_count());
    CHECK(static_cast<bool>(s.model->lm_head) == !tied);
    check_origins(base, s.model, plan);
    CHECK(s.provenance.seams().at(0).name() == "2|3: copy 1 layer 2 -> copy 2 layer 1");
    CHECK(dus::parameter_bytes(s.model) == 4 * s.model->config().parameter_count());
  }
  // Slices with a layer used three times.
  dus::Transformer base = random_model(tiny_config(), 4);
  dus::LayerPlan plan = dus::slices_plan(4, {{0, 2}, {1, 4}, {1, 2}});
  dus::ScaledModel s = dus::apply_plan(base, plan);
  CHECK(s.model->num_layers() == 6);
  check_origins(base, s.model, plan);
}

TEST_CASE("copies are independent: changing one leaves the other and the base untouched",
          "[unit]") {
  dus::Transformer base = random_model(tiny_config(), 5);
  dus::ScaledModel s = dus::apply_plan(base, dus::dus_plan(4, 1));
  // Scaled layers 1 and 3 are both base layer 1 (copy 1 and copy 2).
  auto before_copy2 = s.model->layer(3)->self_attn->q_proj->weight.clone();
  auto before_base = base->layer(1)->self_attn->q_proj->weight.clone();
  auto before_embed = base->model->embed_tokens->weight.clone();
  {
    torch::NoGradGuard no_grad;
    s.model->layer(1)->self_attn->q_proj->weight.add_(1.0);
    s.model->model->embed_tokens->weight.mul_(2.0);
  }
  CHECK(torch::equal(s.model->layer(3)->self_attn->q_proj->weight, before_copy2));
  CHECK(torch::equal(base->layer(1)->self_attn->q_proj->weight, before_base));
  CHECK(torch::equal(base->model->embed_tokens->weight, before_embed));
  CHECK(!torch::equal(s.model->layer(1)->self_attn->q_proj->weight, before_copy2));

  // No storage is shared anywhere (a training step on the scaled model cannot reach the base).
  std::set<const void*> base_ptrs;
  for (const auto& p : base->parameters()) base_ptrs.insert(p.data_ptr());
  std::set<const void*> scaled_ptrs;
  for (const auto& p : s.model->parameters()) {
    CHECK(base_ptrs.count(p.data_ptr()) == 0);
    CHECK(scaled_ptrs.insert(p.data_ptr()).second);
  }
  // Gradients flow into the new parameters.
  auto ids = torch::randint(0, 61, {1, 7}, torch::kLong);
  s.model->forward(ids).sum().backward();
  CHECK(s.model->layer(3)->mlp->up_proj->weight.grad().defined());
}

TEST_CASE("block expansion computes exactly what the base computed (fp32 logits)", "[unit]") {
  for (bool tied : {false, true}) {
    dus::ModelConfig c = tiny_config(tied);
    c.sliding_window = 5;
    dus::Transformer base = random_model(c, 6);
    base->eval();
    auto ids = torch::randint(0, 61, {2, 11}, torch::kLong);
    torch::NoGradGuard no_grad;
    auto want = base->forward(ids);
    for (int64_t every : {1, 2, 3, 4}) {
      INFO("tied " << tied << ", every " << every);
      dus::LayerPlan plan = dus::block_expansion_plan(4, every);
      dus::ScaledModel s = dus::apply_plan(base, plan);
      CHECK(s.model->num_layers() == 4 + 4 / every);
      check_origins(base, s.model, plan);
      CHECK(torch::equal(s.model->forward(ids), want));
    }
    // Plain DUS, by contrast, changes the function (the seam).
    dus::ScaledModel d = dus::apply_plan(base, dus::dus_plan(4, 1));
    CHECK(!torch::allclose(d.model->forward(ids), want));
  }
}

TEST_CASE("a plan for another depth is refused", "[unit]") {
  dus::Transformer base = random_model(tiny_config(), 7);
  CHECK_THROWS_WITH(dus::apply_plan(base, dus::dus_plan(6, 1)),
                    Catch::Matchers::Contains("is for 6 base layers, the model has 4"));
}

namespace {
int64_t status_kb(const char* field) {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return 0;
  char line[256];
  int64_t kb = 0;
  const size_t len = std::strlen(field);
  while (std::fgets(line, sizeof line, f))
    if (std::strncmp(line, field, len) == 0 && line[len] == ':') kb = std::atoll(line + len + 1);
  std::fclose(f);
  return kb;
}
}  // namespace

TEST_CASE("scaling a bf16 model keeps peak memory within base + scaled + 10%", "[unit][memory]") {
  // ~116 MB of bf16 base weights; dus(8, 2) -> 12 layers, ~141 MB.
  dus::ModelConfig c;
  c.vocab_size = 32000;
  c.hidden_size = 512;
  c.intermediate_size = 1536;
  c.num_hidden_layers = 8;
  c.num_attention_heads = 8;
  c.num_key_value_heads = 4;
  c.head_dim = 64;
  dus::ModelInit init;
  init.dtype = torch::kBFloat16;
  init.random = false;
  const int64_t rss_start = status_kb("VmRSS") * 1024;
  dus::Transformer base(c, init);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : base->parameters()) p.fill_(0.5);  // touch every page: the base is resident
  }
  std::FILE* clear = std::fopen("/proc/self/clear_refs", "w");
  if (!clear) {
    WARN("cannot reset the peak RSS here; skipping the memory check");
    return;
  }
  std::fputs("5", clear);
  std::fclose(clear);
  dus::ScaledModel s = dus::apply_plan(base, dus::dus_plan(8, 2));
  const int64_t peak = status_kb("VmHWM") * 1024 - rss_start;
  const int64_t base_bytes = dus::parameter_bytes(base),
                scaled_bytes = dus::parameter_bytes(s.model);
  const double ratio = static_cast<double>(peak) / static_cast<double>(base_bytes + scaled_bytes);
  std::printf(
      "[memory] bf16 dus(8, 2): base %.1f MB + scaled %.1f MB = %.1f MB; peak RSS above "
      "start %.1f MB (ratio %.3f)\n",
      base_bytes / 1e6, scaled_bytes / 1e6, (base_bytes + scaled_bytes) / 1e6, peak / 1e6, ratio);
  CHECK(ratio <= 1.10);
  CHECK(torch::equal(s.model->layer(11)->mlp->down_proj->weight,
                     base->layer(7)->mlp->down_proj->weight));
}
