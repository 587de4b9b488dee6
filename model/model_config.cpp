#include "model/model_config.h"

#include <filesystem>

#include <fmt/format.h>

#include "core/error.h"

namespace dus {

namespace {

int64_t get_int(const json::Value& v, const char* key, const std::string& source,
                std::optional<int64_t> fallback = std::nullopt) {
  const json::Value* x = v.find(key);
  if (!x || x->is_null()) {
    if (fallback) return *fallback;
    throw Error(source, std::string("missing required key \"") + key + "\"");
  }
  return x->as_int(source + ": key \"" + key + "\"");
}

double get_double(const json::Value& v, const char* key, const std::string& source,
                  double fallback) {
  const json::Value* x = v.find(key);
  if (!x || x->is_null()) return fallback;
  return x->as_double(source + ": key \"" + key + "\"");
}

bool get_bool(const json::Value& v, const char* key, const std::string& source, bool fallback) {
  const json::Value* x = v.find(key);
  if (!x || x->is_null()) return fallback;
  return x->as_bool(source + ": key \"" + key + "\"");
}

// Token ids may be an int, a list (Llama 3 instruct lists several eos ids) or null / absent
// (unknown: not replaced by a guess, since a wrong guess would pass or fail checks wrongly).
SpecialTokenIds get_token_ids(const json::Value& v, const char* key, const std::string& source) {
  SpecialTokenIds t;
  const json::Value* x = v.find(key);
  if (!x || x->is_null()) return t;
  const std::string where = source + ": key \"" + key + "\"";
  if (x->is_array()) {
    t.as_list = true;
    for (const auto& id : x->as_array()) t.ids.push_back(id.as_int(where));
  } else {
    t.ids.push_back(x->as_int(where));
  }
  for (int64_t id : t.ids)
    if (id < 0) throw Error(where, fmt::format("token id {} is negative", id));
  return t;
}

json::Value token_ids_json(const SpecialTokenIds& t) {
  if (!t.as_list) return json::Value(t.primary());
  json::Array a;
  for (int64_t id : t.ids) a.push_back(json::Value(id));
  return json::Value(std::move(a));
}

}  // namespace

std::string ModelConfig::model_type() const {
  return architecture == "LlamaForCausalLM" ? "llama" : "mistral";
}

ModelConfig ModelConfig::from_json(const json::Value& v, const std::string& source) {
  if (!v.is_object()) throw Error(source, "config must be a JSON object");
  ModelConfig c;
  c.raw = v;

  // Architecture: from "architectures", else from "model_type".
  std::string model_type;
  if (const json::Value* mt = v.find("model_type"))
    model_type = mt->as_string(source + ": key \"model_type\"");
  if (const json::Value* archs = v.find("architectures"); archs && !archs->is_null()) {
    const auto& list = archs->as_array(source + ": key \"architectures\"");
    if (list.size() != 1)
      throw Error(source, "key \"architectures\" must list exactly one architecture");
    c.architecture = list[0].as_string(source + ": key \"architectures\"");
  } else if (model_type == "llama") {
    c.architecture = "LlamaForCausalLM";
  } else if (model_type == "mistral") {
    c.architecture = "MistralForCausalLM";
  } else {
    throw Error(
        source,
        "cannot tell the architecture: no \"architectures\" and model_type \"" + model_type + "\"",
        "supported: MistralForCausalLM, LlamaForCausalLM");
  }
  if (c.architecture != "MistralForCausalLM" && c.architecture != "LlamaForCausalLM")
    throw Error(source,
                "key \"architectures\": unsupported architecture \"" + c.architecture + "\"",
                "supported: MistralForCausalLM, LlamaForCausalLM");

  c.vocab_size = get_int(v, "vocab_size", source);
  c.hidden_size = get_int(v, "hidden_size", source);
  c.intermediate_size = get_int(v, "intermediate_size", source);
  c.num_hidden_layers = get_int(v, "num_hidden_layers", source);
  c.num_attention_heads = get_int(v, "num_attention_heads", source);
  c.num_key_value_heads = get_int(v, "num_key_value_heads", source, c.num_attention_heads);
  if (c.num_attention_heads <= 0)
    throw Error(source, fmt::format("key \"num_attention_heads\" must be positive, got {}",
                                    c.num_attention_heads));
  c.head_dim = get_int(v, "head_dim", source, c.hidden_size / c.num_attention_heads);
  const ModelConfig d;  // the defaults of keys the file leaves out
  c.max_position_embeddings =
      get_int(v, "max_position_embeddings", source, d.max_position_embeddings);
  c.rms_norm_eps = get_double(v, "rms_norm_eps", source, d.rms_norm_eps);
  c.initializer_range = get_double(v, "initializer_range", source, d.initializer_range);
  c.tie_word_embeddings = get_bool(v, "tie_word_embeddings", source, d.tie_word_embeddings);
  c.bos_token_id = get_token_ids(v, "bos_token_id", source);
  c.eos_token_id = get_token_ids(v, "eos_token_id", source);

  // rope_theta: transformers 5 writes rope_parameters.rope_theta; older files a top-level key.
  if (const json::Value* rp = v.find("rope_parameters"); rp && !rp->is_null()) {
    if (!rp->is_object()) throw Error(source, "key \"rope_parameters\" must be an object");
    c.rope_theta = get_double(*rp, "rope_theta", source + ": rope_parameters", d.rope_theta);
    if (const json::Value* type = rp->find("rope_type")) {
      const std::string& t = type->as_string(source + ": key \"rope_parameters.rope_type\"");
      if (t != "default")
        throw Error(source, "key \"rope_parameters.rope_type\": \"" + t + "\" is not supported",
                    "only the default rotary embedding is implemented");
    }
  } else {
    c.rope_theta = get_double(v, "rope_theta", source, d.rope_theta);
  }
  if (const json::Value* rs = v.find("rope_scaling"); rs && !rs->is_null()) {
    const json::Value* type = rs->find("rope_type");
    if (!type) type = rs->find("type");
    if (!type || !type->is_string() || type->as_string() != "default")
      throw Error(source, "key \"rope_scaling\" is set; scaled rotary embeddings are not supported",
                  "only the default rotary embedding is implemented");
  }

  if (const json::Value* sw = v.find("sliding_window"); sw && !sw->is_null())
    c.sliding_window = sw->as_int(source + ": key \"sliding_window\"");
  // Llama-style configs can carry use_sliding_window: false next to a number.
  if (const json::Value* use = v.find("use_sliding_window");
      use && use->is_bool() && !use->as_bool())
    c.sliding_window.reset();

  if (const json::Value* d = v.find("dtype"); d && d->is_string())
    c.torch_dtype = d->as_string();
  else if (const json::Value* td = v.find("torch_dtype"); td && td->is_string())
    c.torch_dtype = td->as_string();

  if (get_bool(v, "attention_bias", source, false))
    throw Error(source, "key \"attention_bias\" is true; biases in attention are not supported");
  if (get_bool(v, "mlp_bias", source, false))
    throw Error(source, "key \"mlp_bias\" is true; biases in the MLP are not supported");
  if (const json::Value* act = v.find("hidden_act"); act && !act->is_null()) {
    const std::string& a = act->as_string(source + ": key \"hidden_act\"");
    if (a != "silu")
      throw Error(source, "key \"hidden_act\": \"" + a + "\" is not supported (expected \"silu\")");
  }
  c.validate(source);
  return c;
}

ModelConfig ModelConfig::load(const std::string& path) {
  std::string file = path;
  if (std::filesystem::is_directory(path)) file = path + "/config.json";
  if (!std::filesystem::exists(file))
    throw Error(file, "config file does not exist", "point at a Hugging Face model directory");
  return from_json(json::parse_file(file), file);
}

void ModelConfig::validate(const std::string& source) const {
  // Each size at most 2^31 (token ids and positions are int32), so that products of two fit
  // int64; the parameter count is bounded below, so the int64 counts never overflow.
  constexpr int64_t kMaxSize = int64_t{1} << 31;
  auto positive = [&](const char* key, int64_t value) {
    if (value <= 0)
      throw Error(source, fmt::format("key \"{}\" must be positive, got {}", key, value));
    if (value > kMaxSize)
      throw Error(source, fmt::format("key \"{}\" is {}, above the largest supported {}", key,
                                      value, kMaxSize));
  };
  positive("vocab_size", vocab_size);
  positive("hidden_size", hidden_size);
  positive("intermediate_size", intermediate_size);
  positive("num_hidden_layers", num_hidden_layers);
  positive("num_attention_heads", num_attention_heads);
  positive("num_key_value_heads", num_key_value_heads);
  positive("head_dim", head_dim);
  positive("max_position_embeddings", max_position_embeddings);
  if (num_attention_heads % num_key_value_heads != 0)
    throw Error(source,
                fmt::format("key \"num_key_value_heads\" ({}) must divide num_attention_heads ({})",
                            num_key_value_heads, num_attention_heads));
  if (head_dim % 2 != 0)
    throw Error(source, fmt::format("key \"head_dim\" must be even for rotary embeddings, got {}",
                                    head_dim));
  if (!(rms_norm_eps > 0)) throw Error(source, "key \"rms_norm_eps\" must be positive");
  if (!(rope_theta > 0)) throw Error(source, "key \"rope_theta\" must be positive");
  // parameter_count() in floating point first: 2^50 (10^15) parameters is far beyond any
  // trainable model and keeps every int64 count exact.
  const double d = static_cast<double>(hidden_size);
  const double q = static_cast<double>(num_attention_heads) * static_cast<double>(head_dim);
  const double kv = static_cast<double>(num_key_value_heads) * static_cast<double>(head_dim);
  const double layer = 2 * d * q + 2 * d * kv + 3 * d * static_cast<double>(intermediate_size);
  const double params = static_cast<double>(num_hidden_layers) * (layer + 2 * d) +
                        2 * static_cast<double>(vocab_size) * d + d;
  if (q > static_cast<double>(kMaxSize) || params > static_cast<double>(int64_t{1} << 50))
    throw Error(source, fmt::format("the sizes give {:f} parameters (or attention heads x "
                                    "head_dim above 2^31); at most 2^50 are supported",
                                    params));
  if (sliding_window && *sliding_window <= 0)
    throw Error(source, fmt::format("key \"sliding_window\" must be positive or null, got {}",
                                    *sliding_window));
}

json::Value ModelConfig::to_json() const {
  json::Value v = raw.is_object() ? raw : json::Value(json::Object{});
  v.set("architectures", json::Value(json::Array{json::Value(architecture)}));
  v.set("model_type", json::Value(model_type()));
  v.set("vocab_size", json::Value(vocab_size));
  v.set("hidden_size", json::Value(hidden_size));
  v.set("intermediate_size", json::Value(intermediate_size));
  v.set("num_hidden_layers", json::Value(num_hidden_layers));
  v.set("num_attention_heads", json::Value(num_attention_heads));
  v.set("num_key_value_heads", json::Value(num_key_value_heads));
  v.set("head_dim", json::Value(head_dim));
  v.set("hidden_act", json::Value("silu"));
  v.set("max_position_embeddings", json::Value(max_position_embeddings));
  v.set("rms_norm_eps", json::Value(rms_norm_eps));
  v.set("initializer_range", json::Value(initializer_range));
  v.set("tie_word_embeddings", json::Value(tie_word_embeddings));
  // Unknown ids stay as the file had them (absent or null): nothing is invented.
  if (bos_token_id.known()) v.set("bos_token_id", token_ids_json(bos_token_id));
  if (eos_token_id.known()) v.set("eos_token_id", token_ids_json(eos_token_id));
  if (architecture == "MistralForCausalLM")
    v.set("sliding_window", sliding_window ? json::Value(*sliding_window) : json::Value());
  // Keep whichever rope spelling the file used; a fresh config uses transformers 5's.
  if (const json::Value* rp = v.find("rope_parameters"); rp && rp->is_object()) {
    json::Value params = *rp;
    params.set("rope_theta", json::Value(rope_theta));
    v.set("rope_parameters", params);
  } else if (v.contains("rope_theta")) {
    v.set("rope_theta", json::Value(rope_theta));
  } else {
    v.set("rope_parameters", json::Value(json::Object{{"rope_theta", json::Value(rope_theta)},
                                                      {"rope_type", json::Value("default")}}));
  }
  if (v.contains("torch_dtype"))
    v.set("torch_dtype", json::Value(torch_dtype));
  else
    v.set("dtype", json::Value(torch_dtype));
  return v;
}

int64_t ModelConfig::layer_parameter_count() const {
  const int64_t d = hidden_size;
  const int64_t attention = d * q_width() + 2 * d * kv_width() + q_width() * d;
  const int64_t mlp = 3 * d * intermediate_size;
  const int64_t norms = 2 * d;
  return attention + mlp + norms;
}

int64_t ModelConfig::parameter_count() const {
  const int64_t embedding = vocab_size * hidden_size;
  return embedding + num_hidden_layers * layer_parameter_count() + hidden_size +
         (tie_word_embeddings ? 0 : embedding);
}

int64_t ModelConfig::non_embedding_parameter_count() const {
  return parameter_count() - vocab_size * hidden_size;
}

double ModelConfig::training_flops_per_token(int64_t seq_len) const {
  return 6.0 * static_cast<double>(non_embedding_parameter_count()) +
         6.0 * static_cast<double>(num_hidden_layers) * static_cast<double>(q_width()) * 2.0 *
             static_cast<double>(seq_len);
}

std::vector<std::pair<std::string, std::vector<int64_t>>> ModelConfig::tensor_shapes() const {
  const int64_t d = hidden_size;
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  out.push_back({"model.embed_tokens.weight", {vocab_size, d}});
  for (int64_t i = 0; i < num_hidden_layers; ++i) {
    const std::string l = "model.layers." + std::to_string(i) + ".";
    out.push_back({l + "self_attn.q_proj.weight", {q_width(), d}});
    out.push_back({l + "self_attn.k_proj.weight", {kv_width(), d}});
    out.push_back({l + "self_attn.v_proj.weight", {kv_width(), d}});
    out.push_back({l + "self_attn.o_proj.weight", {d, q_width()}});
    out.push_back({l + "mlp.gate_proj.weight", {intermediate_size, d}});
    out.push_back({l + "mlp.up_proj.weight", {intermediate_size, d}});
    out.push_back({l + "mlp.down_proj.weight", {d, intermediate_size}});
    out.push_back({l + "input_layernorm.weight", {d}});
    out.push_back({l + "post_attention_layernorm.weight", {d}});
  }
  out.push_back({"model.norm.weight", {d}});
  if (!tie_word_embeddings) out.push_back({"lm_head.weight", {vocab_size, d}});
  return out;
}

}  // namespace dus
