// The Transformer itself: gradients, a double-precision gradient check, causality and the
// sliding window. (Agreement with transformers is the parity test's job.)
#include "torch_test.h"

#include "model/loss.h"
#include "model/transformer.h"

namespace {

dus::ModelConfig tiny_config() {
  dus::ModelConfig c;
  c.vocab_size = 61;
  c.hidden_size = 24;
  c.intermediate_size = 40;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 8;  // not hidden / heads (6)
  c.rope_theta = 10000.0;
  c.rms_norm_eps = 1e-6;
  c.max_position_embeddings = 128;
  c.initializer_range = 0.1;
  return c;
}

}  // namespace

TEST_CASE("backward gives finite, non-zero gradients for every parameter", "[unit]") {
  torch::manual_seed(0);
  dus::Transformer model(tiny_config());
  auto ids = torch::randint(0, 61, {2, 12}, torch::kLong);
  auto loss = dus::next_token_loss(model->forward(ids), ids);
  loss.backward();
  for (const auto& p : model->named_parameters()) {
    INFO(p.key());
    REQUIRE(p.value().grad().defined());
    CHECK(torch::isfinite(p.value().grad()).all().item<bool>());
    CHECK(p.value().grad().abs().sum().item<double>() > 0);
  }
}

TEST_CASE("gradients match central finite differences in float64", "[unit]") {
  torch::manual_seed(1);
  dus::ModelInit init;
  init.dtype = torch::kFloat64;
  auto config = tiny_config();
  config.sliding_window = 5;  // exercise the masked path too
  dus::Transformer model(config, init);
  auto ids = torch::randint(0, 61, {2, 9}, torch::kLong);
  auto loss_fn = [&] { return dus::next_token_loss(model->forward(ids), ids); };
  loss_fn().backward();
  // Directional derivative along a random direction v: grad . v vs (L(p+hv) - L(p-hv)) / 2h.
  const double h = 1e-6;
  for (const auto& p : model->named_parameters()) {
    INFO(p.key());
    torch::NoGradGuard no_grad;
    auto v = torch::randn_like(p.value());
    const double analytic = (p.value().grad() * v).sum().item<double>();
    p.value().add_(v, h);
    const double plus = loss_fn().item<double>();
    p.value().add_(v, -2 * h);
    const double minus = loss_fn().item<double>();
    p.value().add_(v, h);
    const double numeric = (plus - minus) / (2 * h);
    INFO("analytic " << analytic << " numeric " << numeric);
    CHECK(numeric == Approx(analytic).epsilon(1e-5).margin(1e-8));
  }
}

TEST_CASE("attention is causal: later tokens do not change earlier logits", "[unit]") {
  torch::manual_seed(2);
  dus::Transformer model(tiny_config());
  torch::NoGradGuard no_grad;
  auto ids = torch::randint(0, 61, {1, 10}, torch::kLong);
  auto changed = ids.clone();
  changed[0][7] = (ids[0][7].item<int64_t>() + 1) % 61;
  auto a = model->forward(ids), b = model->forward(changed);
  CHECK(torch::equal(a.narrow(1, 0, 7), b.narrow(1, 0, 7)));
  CHECK(!torch::equal(a.narrow(1, 7, 1), b.narrow(1, 7, 1)));
}

TEST_CASE("the sliding window hides keys more than window-1 positions back", "[unit]") {
  torch::manual_seed(3);
  auto config = tiny_config();
  config.num_hidden_layers = 1;  // one layer: the receptive field is exactly the window
  config.sliding_window = 4;
  dus::Transformer model(config);
  torch::NoGradGuard no_grad;
  auto ids = torch::randint(0, 61, {1, 12}, torch::kLong);
  auto changed = ids.clone();
  changed[0][0] = (ids[0][0].item<int64_t>() + 1) % 61;
  auto a = model->forward(ids), b = model->forward(changed);
  // Position 3 still sees position 0 (3 - 0 < 4); position 4 and later do not.
  CHECK(!torch::equal(a.narrow(1, 3, 1), b.narrow(1, 3, 1)));
  CHECK(torch::equal(a.narrow(1, 4, 8), b.narrow(1, 4, 8)));
}

TEST_CASE("tied embeddings share one matrix and register no lm_head", "[unit]") {
  auto config = tiny_config();
  config.tie_word_embeddings = true;
  dus::Transformer model(config);
  CHECK(!model->lm_head);
  CHECK(model->lm_head_weight().data_ptr() == model->model->embed_tokens->weight.data_ptr());
  int64_t n = 0;
  for (const auto& p : model->parameters()) n += p.numel();
  CHECK(n == config.parameter_count());
}

TEST_CASE("the same seed builds the same model; parameter names are Hugging Face's", "[unit]") {
  torch::manual_seed(5);
  dus::Transformer a(tiny_config());
  torch::manual_seed(5);
  dus::Transformer b(tiny_config());
  auto pa = a->named_parameters(), pb = b->named_parameters();
  REQUIRE(pa.size() == pb.size());
  for (size_t i = 0; i < pa.size(); ++i) CHECK(torch::equal(pa[i].value(), pb[i].value()));
  CHECK(pa.contains("model.embed_tokens.weight"));
  CHECK(pa.contains("model.layers.1.self_attn.k_proj.weight"));
  CHECK(pa.contains("model.layers.0.mlp.down_proj.weight"));
  CHECK(pa.contains("model.layers.0.post_attention_layernorm.weight"));
  CHECK(pa.contains("model.norm.weight"));
  CHECK(pa.contains("lm_head.weight"));
}
