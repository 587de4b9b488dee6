// ModelConfig: the hyper-parameters of a Mistral/Llama decoder, read from a Hugging Face
// config.json (both the older keys of checkpoints in the wild and transformers 5's
// "rope_parameters"/"dtype"), validated with errors that name the key.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/json.h"
#include "core/special_token_ids.h"

namespace dus {

/// A key that config.json leaves out takes the default written here (from_json reads it from this
/// struct, nowhere else); rms_norm_eps's is what transformers' MistralConfig and LlamaConfig give.
struct ModelConfig {
  std::string architecture = "MistralForCausalLM";  ///< MistralForCausalLM | LlamaForCausalLM
  int64_t vocab_size = 32000;                       ///< tokens
  int64_t hidden_size = 4096;                       ///< model width D
  int64_t intermediate_size = 14336;                ///< SwiGLU width
  int64_t num_hidden_layers = 32;                   ///< decoder layers
  int64_t num_attention_heads = 32;                 ///< query heads H
  int64_t num_key_value_heads = 8;                  ///< key/value heads (grouped-query attention)
  int64_t head_dim = 128;                           ///< per-head width; hidden/heads unless given
  double rope_theta = 10000.0;                      ///< rotary base
  double rms_norm_eps = 1e-6;                       ///< RMSNorm epsilon
  int64_t max_position_embeddings = 32768;          ///< longest supported position
  std::optional<int64_t> sliding_window;  ///< attention window in tokens; none = full causal
  bool tie_word_embeddings = false;       ///< lm_head shares the embedding matrix
  std::string torch_dtype = "float32";    ///< dtype the weights were saved in
  double initializer_range = 0.02;        ///< std of the normal init (training from scratch)
  SpecialTokenIds bos_token_id{{1}};      ///< from "bos_token_id"; default Mistral-7B's
  SpecialTokenIds eos_token_id{{2}};      ///< from "eos_token_id"; default Mistral-7B's

  /// The config.json this came from (key order and unknown keys kept); to_json() writes our
  /// fields over it, so a loaded-and-saved config changes nothing it did not need to.
  json::Value raw;

  /// Parses and validates; `source` names the file in errors.
  static ModelConfig from_json(const json::Value& value, const std::string& source);
  /// Reads DIR/config.json (or a .json path).
  static ModelConfig load(const std::string& path);

  /// Checks consistency; throws dus::Error naming `source` and the key.
  void validate(const std::string& source) const;

  /// config.json content (transformers-compatible) with this config's values.
  json::Value to_json() const;

  std::string model_type() const;  ///< "mistral" | "llama"
  int64_t q_width() const { return num_attention_heads * head_dim; }
  int64_t kv_width() const { return num_key_value_heads * head_dim; }

  /// Parameters of one decoder layer (attention, MLP, two norms).
  int64_t layer_parameter_count() const;
  /// All parameters (embeddings, layers, final norm, lm_head unless tied).
  int64_t parameter_count() const;
  /// Parameters excluding the token embedding (the lm_head is counted, as in torchtitan's
  /// FLOP count, unless tied).
  int64_t non_embedding_parameter_count() const;
  /// Training FLOPs per token (forward + backward), torchtitan's count:
  /// 6 x non-embedding parameters + 6 x layers x heads x (d_qk + d_v) x seq_len.
  double training_flops_per_token(int64_t seq_len) const;
  /// Every weight of the model, Hugging Face name and shape, in the model's parameter order:
  /// what a checkpoint of this configuration must hold.
  std::vector<std::pair<std::string, std::vector<int64_t>>> tensor_shapes() const;
};

}  // namespace dus
