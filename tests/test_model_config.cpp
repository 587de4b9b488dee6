// ModelConfig from Hugging Face config.json: both spellings of the keys, validation naming the
// key, and parameter accounting.
#include <catch2/catch.hpp>

#include "core/error.h"
#include "model/model_config.h"

namespace {

// Mistral-7B-v0.1's config.json as published (older keys: rope_theta, torch_dtype).
const char* kMistral7B = R"({
  "architectures": ["MistralForCausalLM"], "bos_token_id": 1, "eos_token_id": 2,
  "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
  "intermediate_size": 14336, "max_position_embeddings": 32768, "model_type": "mistral",
  "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
  "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "sliding_window": 4096,
  "tie_word_embeddings": false, "torch_dtype": "bfloat16", "transformers_version": "4.34.0.dev0",
  "use_cache": true, "vocab_size": 32000})";

dus::ModelConfig parse(const std::string& text) {
  return dus::ModelConfig::from_json(dus::json::parse(text, "config.json"), "config.json");
}

std::string error_of(const std::string& text) {
  try {
    parse(text);
  } catch (const dus::Error& e) {
    return e.what();
  }
  return "";
}

std::string with(const std::string& key_value) {
  // Mistral-7B's config with one key replaced or added.
  dus::json::Value v = dus::json::parse(kMistral7B, "t");
  dus::json::Value extra = dus::json::parse("{" + key_value + "}", "t");
  for (const auto& [k, x] : extra.as_object()) v.set(k, x);
  return dus::json::dump(v);
}

}  // namespace

TEST_CASE("Mistral-7B's config parses with its published values", "[unit]") {
  auto c = parse(kMistral7B);
  CHECK(c.architecture == "MistralForCausalLM");
  CHECK(c.head_dim == 128);
  CHECK(c.rope_theta == 10000.0);
  CHECK(c.sliding_window.value() == 4096);
  CHECK(c.torch_dtype == "bfloat16");
  CHECK(c.parameter_count() == 7241732096);  // Mistral-7B-v0.1
}

TEST_CASE("transformers 5 keys (rope_parameters, dtype) are read", "[unit]") {
  auto c = parse(R"({"model_type":"llama","vocab_size":100,"hidden_size":32,"intermediate_size":64,
    "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"head_dim":16,
    "rope_parameters":{"rope_theta":500000.0,"rope_type":"default"},"dtype":"bfloat16",
    "tie_word_embeddings":true})");
  CHECK(c.architecture == "LlamaForCausalLM");
  CHECK(c.rope_theta == 500000.0);
  CHECK(c.head_dim == 16);
  CHECK(c.torch_dtype == "bfloat16");
  CHECK(c.tie_word_embeddings);
  CHECK(!c.sliding_window);
  // Tied: the lm_head is not counted twice.
  CHECK(c.parameter_count() == 100 * 32 + 2 * c.layer_parameter_count() + 32);
}

TEST_CASE("keys a config.json leaves out get the values transformers gives", "[unit]") {
  // transformers 5.24: MistralConfig() and LlamaConfig() both have rms_norm_eps 1e-06,
  // rope_theta 10000.0 (rope_parameters), initializer_range 0.02, tie_word_embeddings False.
  for (const char* type : {"mistral", "llama"}) {
    INFO(type);
    auto c = parse(std::string(R"({"model_type":")") + type +
                   R"(","vocab_size":100,"hidden_size":32,"intermediate_size":64,
      "num_hidden_layers":2,"num_attention_heads":4})");
    CHECK(c.rms_norm_eps == 1e-6);
    CHECK(c.rope_theta == 10000.0);
    CHECK(c.initializer_range == 0.02);
    CHECK_FALSE(c.tie_word_embeddings);
    CHECK(c.num_key_value_heads == 4);  // no grouping unless the file says so
    CHECK(c.head_dim == 8);             // hidden / heads
    // A config built in code (tests, scratch models) starts from the same values.
    CHECK(dus::ModelConfig().rms_norm_eps == c.rms_norm_eps);
  }
}

TEST_CASE("to_json changes only what it owns and keeps unknown keys", "[unit]") {
  auto c = parse(kMistral7B);
  c.num_hidden_layers = 48;
  auto v = c.to_json();
  CHECK(v.find("num_hidden_layers")->as_int() == 48);
  CHECK(v.find("transformers_version")->as_string() == "4.34.0.dev0");
  CHECK(v.find("rope_theta")->as_double() == 10000.0);
  CHECK(!v.contains("rope_parameters"));
  CHECK(v.find("torch_dtype")->as_string() == "bfloat16");
  auto again = dus::ModelConfig::from_json(v, "t");
  CHECK(again.parameter_count() == 10731524096);  // 48 layers: SOLAR 10.7B
}

TEST_CASE("invalid configs name the key", "[unit]") {
  CHECK_THAT(error_of(R"({"architectures":["MistralForCausalLM"]})"),
             Catch::Contains("missing required key \"vocab_size\""));
  CHECK_THAT(error_of(with(R"("num_key_value_heads": 5)")),
             Catch::Contains("\"num_key_value_heads\" (5) must divide"));
  CHECK_THAT(error_of(with(R"("hidden_size": "big")")),
             Catch::Contains("key \"hidden_size\"") &&
                 Catch::Contains("expected an integer, found string"));
  CHECK_THAT(error_of(with(R"("architectures": ["GPT2LMHeadModel"])")),
             Catch::Contains("unsupported architecture \"GPT2LMHeadModel\""));
  CHECK_THAT(error_of(with(R"("rope_scaling": {"rope_type": "llama3", "factor": 8.0})")),
             Catch::Contains("\"rope_scaling\""));
  CHECK_THAT(error_of(with(R"("hidden_act": "gelu")")), Catch::Contains("\"hidden_act\""));
  CHECK_THAT(error_of(with(R"("attention_bias": true)")), Catch::Contains("\"attention_bias\""));
  CHECK_THAT(error_of(with(R"("num_hidden_layers": 0)")),
             Catch::Contains("\"num_hidden_layers\" must be positive"));
  CHECK_THAT(error_of(with(R"("sliding_window": -3)")),
             Catch::Contains("\"sliding_window\" must be positive"));
  CHECK_THAT(error_of(with(R"("head_dim": 127)")), Catch::Contains("\"head_dim\" must be even"));
  CHECK_THAT(error_of("[]"), Catch::Contains("must be a JSON object"));
}

TEST_CASE("sizes whose parameter count would overflow int64 are refused", "[unit]") {
  // 1111111111111256^2 overflowed int64 in parameter_count() (signed overflow, UB).
  CHECK_THAT(error_of(with(R"("hidden_size": 1111111111111256)")),
             Catch::Contains("\"hidden_size\"") && Catch::Contains("above the largest"));
  // Every size within 2^31 but the product beyond 2^50 parameters.
  CHECK_THAT(error_of(with(R"("hidden_size": 1048576, "intermediate_size": 2147483648,
                              "num_hidden_layers": 65536)")),
             Catch::Contains("parameters") && Catch::Contains("2^50"));
  CHECK_THAT(error_of(with(R"("num_attention_heads": 65536, "num_key_value_heads": 65536,
                              "head_dim": 65536)")),
             Catch::Contains("head_dim above 2^31"));
  // The largest accepted sizes still give exact counts and a finite FLOP figure.
  const dus::ModelConfig c = parse(with(R"("vocab_size": 2147483648)"));
  CHECK(c.parameter_count() ==
        parse(kMistral7B).parameter_count() + 2 * (2147483648LL - 32000) * 4096);
  CHECK(c.training_flops_per_token(int64_t{1} << 40) > 0);
}

TEST_CASE("training FLOPs per token follow torchtitan's count", "[unit]") {
  auto c = parse(kMistral7B);
  const double n = static_cast<double>(c.parameter_count() - 32000LL * 4096);
  CHECK(c.training_flops_per_token(4096) == Approx(6 * n + 6.0 * 32 * 32 * 256 * 4096));
}

TEST_CASE("BOS/EOS ids: an int, a Llama-3 list, null or absent (unknown, not guessed)", "[unit]") {
  auto c = parse(kMistral7B);
  CHECK(c.bos_token_id.describe() == "1");
  CHECK(c.eos_token_id.describe() == "2");
  CHECK(c.to_json().find("eos_token_id")->as_int() == 2);

  // Llama-3 instruct: several EOS ids; the first is primary, any matches, and saving keeps
  // the list (a checkpoint must not lose the other end-of-turn ids).
  c = parse(with(R"("bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009])"));
  CHECK(c.bos_token_id.primary() == 128000);
  CHECK(c.eos_token_id.primary() == 128001);
  CHECK(c.eos_token_id.accepts(128009));
  CHECK(!c.eos_token_id.accepts(2));
  CHECK(c.eos_token_id.describe() == "[128001, 128008, 128009]");
  CHECK(dus::json::dump(*c.to_json().find("eos_token_id")) == "[128001,128008,128009]");

  // null and absent: unknown, and written back as the file had them.
  c = parse(with(R"("bos_token_id": null)"));
  CHECK(!c.bos_token_id.known());
  CHECK(c.bos_token_id.describe() == "unknown");
  CHECK(c.to_json().find("bos_token_id")->is_null());
  dus::json::Value v = dus::json::parse(kMistral7B, "t");
  v.erase("eos_token_id");
  c = dus::ModelConfig::from_json(v, "config.json");
  CHECK(!c.eos_token_id.known());
  CHECK(!c.to_json().contains("eos_token_id"));

  CHECK_THAT(error_of(with(R"("eos_token_id": "two")")), Catch::Contains("eos_token_id"));
  CHECK_THAT(error_of(with(R"("eos_token_id": [2, -1])")), Catch::Contains("negative"));
}
