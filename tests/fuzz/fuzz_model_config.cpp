// libFuzzer target: config.json parsing (ModelConfig::from_json) must accept a document or
// reject it with a dus::Error, never crash; an accepted config must validate or throw, and
// write back (to_json) to a config that parses to the same hyper-parameters.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/error.h"
#include "core/json.h"
#include "model/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  dus::ModelConfig config;
  try {
    config = dus::ModelConfig::from_json(dus::json::parse(text, "config.json"), "config.json");
    config.validate("config.json");
  } catch (const dus::Error&) {
    return 0;
  }
  // Derived sizes of an accepted config must not overflow (UBSan traps on signed overflow).
  (void)config.parameter_count();
  (void)config.training_flops_per_token(4096);
  dus::ModelConfig back;
  try {
    back = dus::ModelConfig::from_json(config.to_json(), "config.json (written back)");
  } catch (const dus::Error&) {
    __builtin_trap();
  }
  if (back.vocab_size != config.vocab_size || back.hidden_size != config.hidden_size ||
      back.num_hidden_layers != config.num_hidden_layers ||
      back.num_attention_heads != config.num_attention_heads ||
      back.num_key_value_heads != config.num_key_value_heads || back.head_dim != config.head_dim ||
      back.intermediate_size != config.intermediate_size ||
      back.sliding_window != config.sliding_window ||
      back.tie_word_embeddings != config.tie_word_embeddings)
    __builtin_trap();
  return 0;
}
