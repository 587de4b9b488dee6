// Layer plans, provenance and parameter accounting: arithmetic and every validation error.
// No weights here (see test_scaling_apply.cpp for the models themselves).
#include <catch2/catch.hpp>

#include "core/error.h"
#include "core/json.h"
#include "model/model_config.h"
#include "scaling/block_expansion.h"
#include "scaling/layer_plan.h"
#include "scaling/parameter_count.h"
#include "scaling/provenance.h"

using dus::LayerOrigin;
using dus::LayerRange;

namespace {

// Mistral-7B-v0.1's config.json as published.
const char* const kMistral7B = R"({
  "architectures": ["MistralForCausalLM"], "bos_token_id": 1, "eos_token_id": 2,
  "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
  "intermediate_size": 14336, "max_position_embeddings": 32768, "model_type": "mistral",
  "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
  "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "sliding_window": 4096,
  "tie_word_embeddings": false, "torch_dtype": "bfloat16", "transformers_version": "4.34.0.dev0",
  "use_cache": true, "vocab_size": 32000})";

dus::ModelConfig mistral_7b() {
  return dus::ModelConfig::from_json(dus::json::parse(kMistral7B, "mistral.json"), "mistral.json");
}

}  // namespace

TEST_CASE("dus(n, m) stacks [0, n-m) and [m, n): s = 2(n - m)", "[unit]") {
  dus::LayerPlan plan = dus::dus_plan(32, 8);
  CHECK(plan.scaled_layers() == 48);
  CHECK((plan.slices == std::vector<LayerRange>{{0, 24}, {8, 32}}));
  for (int64_t i = 0; i < 24; ++i) CHECK((plan.layers[i] == LayerOrigin{1, i, false}));
  for (int64_t i = 24; i < 48; ++i) CHECK((plan.layers[i] == LayerOrigin{2, i - 16, false}));
  CHECK(plan.describe() == "dus(n=32, m=8): [0, 24) + [8, 32) -> 48 layers");

  for (int64_t n : {1, 2, 5, 32, 80})
    for (int64_t m = 0; 2 * m < n; ++m) CHECK(dus::dus_plan(n, m).scaled_layers() == 2 * (n - m));
  // m = 0 is plain duplication; m >= n/2 only with the explicit flag.
  CHECK((dus::dus_plan(4, 0).slices == std::vector<LayerRange>{{0, 4}, {0, 4}}));
  CHECK(dus::dus_plan(8, 4, {/*allow_shallower=*/true}).scaled_layers() == 8);
  CHECK(dus::dus_plan(8, 6, {true}).scaled_layers() == 4);
}

TEST_CASE("dus(n, m) validation errors", "[unit]") {
  using Catch::Matchers::Contains;
  CHECK_THROWS_WITH(dus::dus_plan(32, -1), Contains("m = -1 is negative"));
  CHECK_THROWS_WITH(
      dus::dus_plan(32, 16),
      Contains("m = 16 >= n/2 = 32/2 gives 32 layers, not deeper than the base's 32") &&
          Contains("--allow-shallower"));
  CHECK_THROWS_WITH(dus::dus_plan(7, 4), Contains("m = 4 >= n/2"));
  CHECK_NOTHROW(dus::dus_plan(7, 3));  // 8 layers > 7
  CHECK_THROWS_WITH(dus::dus_plan(32, 32, {true}), Contains("leaves a copy with no layers"));
  CHECK_THROWS_WITH(dus::dus_plan(0, 0), Contains("the base model has 0 layers"));
}

TEST_CASE("slices: any list of half-open ranges, mergekit passthrough order", "[unit]") {
  dus::LayerPlan plan = dus::slices_plan(6, {{0, 3}, {1, 6}, {4, 6}});
  CHECK(plan.scaled_layers() == 10);
  std::vector<LayerOrigin> want = {{1, 0}, {1, 1}, {1, 2}, {2, 1}, {2, 2},
                                   {2, 3}, {2, 4}, {2, 5}, {3, 4}, {3, 5}};
  CHECK(plan.layers == want);
  CHECK(dus::slices_plan(6, {{2, 4}}).scaled_layers() == 2);  // pruning is allowed too

  using Catch::Matchers::Contains;
  CHECK_THROWS_WITH(dus::slices_plan(6, {}), Contains("no slices given"));
  CHECK_THROWS_WITH(dus::slices_plan(6, {{0, 3}, {3, 3}}), Contains("slice 2 [3, 3) is empty"));
  CHECK_THROWS_WITH(dus::slices_plan(6, {{4, 2}}), Contains("slice 1 [4, 2) is empty"));
  CHECK_THROWS_WITH(dus::slices_plan(6, {{0, 7}}),
                    Contains("slice 1 [0, 7) is outside the base model's layers [0, 6)"));
  CHECK_THROWS_WITH(dus::slices_plan(6, {{-1, 2}}), Contains("is outside the base model's layers"));
}

TEST_CASE("parse_slices reads BEGIN:END lists and names the bad item", "[unit]") {
  CHECK((dus::parse_slices("0:24,8:32", "--slices") == std::vector<LayerRange>{{0, 24}, {8, 32}}));
  CHECK((dus::parse_slices("5:6", "--slices") == std::vector<LayerRange>{{5, 6}}));
  CHECK(dus::format_slices({{0, 24}, {8, 32}}) == "0:24,8:32");
  using Catch::Matchers::Contains;
  CHECK_THROWS_WITH(dus::parse_slices("0-24", "--slices"),
                    Contains("--slices: '0-24' is not a slice BEGIN:END"));
  CHECK_THROWS_WITH(dus::parse_slices("0:x", "--slices"), Contains("'0:x' is not a slice"));
  CHECK_THROWS_WITH(dus::parse_slices("0:24,", "--slices"), Contains("'' is not a slice"));
  CHECK_THROWS_WITH(dus::parse_slices("", "--slices"), Contains("'' is not a slice"));
}

TEST_CASE("block expansion inserts an identity copy after every k-th layer", "[unit]") {
  dus::LayerPlan plan = dus::block_expansion_plan(6, 2);
  std::vector<LayerOrigin> want = {{1, 0},       {1, 1}, {2, 1, true}, {1, 2},      {1, 3},
                                   {2, 3, true}, {1, 4}, {1, 5},       {2, 5, true}};
  CHECK(plan.layers == want);
  CHECK(dus::block_expansion_plan(6, 4).scaled_layers() == 7);
  CHECK(dus::block_expansion_plan(6, 1).scaled_layers() == 12);
  using Catch::Matchers::Contains;
  CHECK_THROWS_WITH(dus::block_expansion_plan(6, 0), Contains("every = 0 is outside [1, 6]"));
  CHECK_THROWS_WITH(dus::block_expansion_plan(6, 7), Contains("every = 7 is outside [1, 6]"));
}

TEST_CASE("make_plan turns a request into a plan and names its source in errors", "[unit]") {
  dus::PlanRequest r;
  r.m = 8;
  CHECK(dus::make_plan(r, 32, "recipe scaling").scaled_layers() == 48);
  r.method = "slices";
  r.slices = "0:24,8:32";
  CHECK(dus::make_plan(r, 32, "x").layers == dus::dus_plan(32, 8).layers);
  r.method = "block_expansion";
  r.every = 8;
  CHECK(dus::make_plan(r, 32, "x").scaled_layers() == 36);

  using Catch::Matchers::Contains;
  CHECK_THROWS_WITH(dus::make_plan(dus::PlanRequest{}, 32, "recipe scaling"),
                    Contains("recipe scaling: method dus needs m"));
  dus::PlanRequest bad;
  bad.method = "frankenmerge";
  CHECK_THROWS_WITH(dus::make_plan(bad, 32, "recipe scaling"),
                    Contains("recipe scaling: unknown method 'frankenmerge'"));
  dus::PlanRequest shallow;
  shallow.m = 20;
  CHECK_THROWS_WITH(dus::make_plan(shallow, 32, "dus scale"), Contains("dus scale: m = 20 >= n/2"));
  shallow.allow_shallower = true;
  CHECK(dus::make_plan(shallow, 32, "dus scale").scaled_layers() == 24);
}

TEST_CASE("provenance names the seam: new 23 is copy 1 layer 23, new 24 is copy 2 layer 8",
          "[unit]") {
  dus::Provenance p{dus::dus_plan(32, 8)};
  auto seams = p.seams();
  REQUIRE(seams.size() == 1);
  CHECK(seams[0].layer == 24);
  CHECK((seams[0].before == LayerOrigin{1, 23}));
  CHECK((seams[0].after == LayerOrigin{2, 8}));
  CHECK(seams[0].name() == "23|24: copy 1 layer 23 -> copy 2 layer 8");
  CHECK(p.describe_layer(23) == "copy 1, base layer 23");
  CHECK(p.describe_layer(24) == "copy 2, base layer 8");
  CHECK_THROWS_AS(p.describe_layer(48), dus::Error);
  // Three slices: two seams; block expansion: a seam on each side of an inserted layer.
  CHECK(dus::Provenance{dus::slices_plan(6, {{0, 3}, {1, 6}, {4, 6}})}.seams().size() == 2);
  CHECK(dus::Provenance{dus::block_expansion_plan(4, 2)}.seams().size() == 3);
}

TEST_CASE("provenance round-trips through JSON and safetensors metadata", "[unit]") {
  for (const dus::LayerPlan& plan :
       {dus::dus_plan(32, 8), dus::slices_plan(6, {{0, 3}, {1, 6}, {4, 6}}),
        dus::block_expansion_plan(6, 2), dus::dus_plan(8, 5, {true})}) {
    INFO(plan.describe());
    dus::Provenance p{plan};
    std::string text = dus::json::dump(p.to_json());
    dus::Provenance back = dus::Provenance::from_json(dus::json::parse(text, "t"), "t");
    CHECK(back.plan.layers == plan.layers);
    CHECK(back.plan.method == plan.method);
    CHECK(back.plan.slices == plan.slices);
    auto meta = p.safetensors_metadata();
    REQUIRE(meta.count("dus") == 1);
    CHECK(meta["dus"] == text);
  }
  dus::json::Value v = dus::Provenance{dus::dus_plan(32, 8)}.to_json();
  CHECK(v.find("seams")->as_array()[0].find("name")->as_string() ==
        "23|24: copy 1 layer 23 -> copy 2 layer 8");

  // A block edited by hand so its layers disagree with the plan is refused.
  dus::json::Value tampered = v;
  dus::json::Array layers = tampered.find("layers")->as_array();
  layers[24] = dus::json::Value(
      dus::json::Object{{"copy", dus::json::Value(2)}, {"base_layer", dus::json::Value(9)}});
  tampered.set("layers", dus::json::Value(layers));
  using Catch::Matchers::Contains;
  CHECK_THROWS_WITH(dus::Provenance::from_json(tampered, "out/config.json"),
                    Contains("out/config.json: \"dus\".layers") && Contains("disagree"));
  dus::json::Value missing = v;
  missing.erase("m");
  CHECK_THROWS_WITH(dus::Provenance::from_json(missing, "out/config.json"),
                    Contains("missing key \"m\""));
}

TEST_CASE("Mistral-7B with m = 8 has exactly 10,731,524,096 parameters (SOLAR 10.7B)", "[unit]") {
  dus::ModelConfig base = mistral_7b();
  CHECK(base.parameter_count() == 7241732096);
  dus::LayerPlan plan = dus::dus_plan(base.num_hidden_layers, 8);
  CHECK(dus::scaled_parameter_count(base, plan) == 10731524096);

  // Only num_hidden_layers changes in the scaled config.
  dus::ModelConfig scaled = dus::scaled_config(base, plan);
  CHECK(scaled.num_hidden_layers == 48);
  dus::json::Value a = base.to_json(), b = scaled.to_json();
  b.set("num_hidden_layers", dus::json::Value(int64_t{32}));
  CHECK(dus::json::dump(a) == dus::json::dump(b));

  // The plan must be for this depth.
  CHECK_THROWS_WITH(dus::scaled_parameter_count(base, dus::dus_plan(40, 8)),
                    Catch::Matchers::Contains("the plan is for 40 base layers"));
}

TEST_CASE("scaled_config reorders per-layer lists and drops a stale provenance block", "[unit]") {
  dus::ModelConfig base = mistral_7b();
  base.num_hidden_layers = 4;
  base.raw.set("layer_types", dus::json::Value(dus::json::Array{"a", "b", "c", "d"}));
  base.raw.set("dus", dus::json::Value(dus::json::Object{}));
  dus::ModelConfig scaled = dus::scaled_config(base, dus::dus_plan(4, 1));
  CHECK(dus::json::dump(*scaled.raw.find("layer_types")) == R"(["a","b","c","b","c","d"])");
  CHECK(!scaled.raw.contains("dus"));
  CHECK(!dus::Provenance::from_config(scaled, "c").has_value());
}
