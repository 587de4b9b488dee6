#include "data/tekken.h"

#include <optional>
#include <unordered_map>

#include <fmt/format.h>

#include "core/error.h"
#include "data/bpe.h"
#include "data/split_regex.h"
#include "data/unicode_text.h"

namespace dus {

namespace {

// mistral-common's Tekkenizer.DEPRECATED_SPECIAL_TOKENS, used by files without a
// `special_tokens` list; the rest up to default_num_special_tokens are <SPECIAL_{id}>.
const char* const kDefaultSpecials[] = {
    "<unk>",
    "<s>",
    "</s>",
    "[INST]",
    "[/INST]",
    "[AVAILABLE_TOOLS]",
    "[/AVAILABLE_TOOLS]",
    "[TOOL_RESULTS]",
    "[/TOOL_RESULTS]",
    "[TOOL_CALLS]",
    "[IMG]",
    "<pad>",
    "[IMG_BREAK]",
    "[IMG_END]",
    "[PREFIX]",
    "[MIDDLE]",
    "[SUFFIX]",
    "[SYSTEM_PROMPT]",
    "[/SYSTEM_PROMPT]",
    "[TOOL_CONTENT]",
};

std::optional<std::string> base64_decode(const std::string& s) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : s) {
    if (c == '=') break;
    int v = value(c);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  return out;
}

class TekkenTokenizer : public TokenizerImpl {
 public:
  std::string path;
  std::optional<SplitRegex> regex;
  BytePairEncoder bpe;
  std::unordered_map<std::string, int32_t> ranks;  // piece bytes -> rank
  std::vector<std::string> piece_bytes;            // rank -> bytes
  std::vector<std::string> special_names;          // control id -> name
  int32_t num_special = 0;

  void encode(std::string_view text, std::vector<int32_t>* ids) const override {
    ids->clear();
    if (size_t bad = find_invalid_utf8(text); bad != std::string_view::npos)
      throw Error(path, fmt::format("text is not valid UTF-8 at byte {}", bad),
                  "the corpus reader repairs invalid UTF-8 before tokenizing");
    std::vector<std::pair<size_t, size_t>> matches;
    regex->find_all(text, &matches);
    // tiktoken keeps only the regex matches (the Tekken pattern matches every character).
    for (const auto& [b, e] : matches) {
      std::string_view piece = text.substr(b, e - b);
      size_t first = ids->size();
      auto it = ranks.find(std::string(piece));
      if (it != ranks.end())
        ids->push_back(it->second);
      else
        bpe.encode(piece, ids);
      for (size_t i = first; i < ids->size(); ++i) (*ids)[i] += num_special;
    }
  }

  std::string decode(const std::vector<int32_t>& ids) const override {
    std::string out;
    for (int32_t id : ids) {
      if (id >= 0 && id < num_special) {
        out += special_names[id];
      } else if (id >= num_special && static_cast<size_t>(id - num_special) < piece_bytes.size()) {
        out += piece_bytes[id - num_special];
      } else {
        throw Error(path, fmt::format("decode: id {} is outside the vocabulary", id));
      }
    }
    return out;
  }

  std::vector<int32_t> token_byte_lengths(bool /*at_document_start*/) const override {
    // Control tokens decode to their names but are no text: 0.
    std::vector<int32_t> lengths(static_cast<size_t>(specials.vocab_size), 0);
    for (size_t i = 0; i < piece_bytes.size(); ++i)
      lengths[num_special + i] = static_cast<int32_t>(piece_bytes[i].size());
    return lengths;
  }

  std::string id_to_piece(int32_t id) const override {
    if (id >= 0 && id < num_special) return special_names[id];
    if (id >= num_special && static_cast<size_t>(id - num_special) < piece_bytes.size())
      return piece_bytes[id - num_special];
    return "";
  }
};

int64_t config_int(const std::string& path, const json::Value& config, const char* key) {
  const json::Value* v = config.find(key);
  if (!v || !v->is_int() || v->as_int() < 0)
    throw Error(path + ": config." + key, "expected a non-negative integer");
  return v->as_int();
}

}  // namespace

std::unique_ptr<TokenizerImpl> load_tekken(const std::string& path, const json::Value& root) {
  auto t = std::make_unique<TekkenTokenizer>();
  t->path = path;
  const json::Value* config = root.find("config");
  const json::Value* vocab = root.find("vocab");
  if (!config || !config->is_object()) throw Error(path + ": config", "missing or not an object");
  if (!vocab || !vocab->is_array()) throw Error(path + ": vocab", "missing or not a list");
  const json::Value* pattern = config->find("pattern");
  if (!pattern || !pattern->is_string()) throw Error(path + ": config.pattern", "missing");
  t->regex.emplace(pattern->as_string(), false, path + ": config.pattern");
  int64_t vocab_size = config_int(path, *config, "default_vocab_size");
  int64_t num_special = config_int(path, *config, "default_num_special_tokens");
  const json::Array& entries = vocab->as_array();
  if (vocab_size > kMaxTokenizerVocab)
    throw Error(path + ": config.default_vocab_size",
                fmt::format("{} is above the largest vocabulary supported ({})", vocab_size,
                            kMaxTokenizerVocab));
  if (vocab_size < num_special || vocab_size - num_special > static_cast<int64_t>(entries.size()))
    throw Error(
        path + ": config.default_vocab_size",
        fmt::format("{} is not within default_num_special_tokens ({}) + the {} vocab entries",
                    vocab_size, num_special, entries.size()));
  const int32_t inner = static_cast<int32_t>(vocab_size - num_special);
  t->num_special = static_cast<int32_t>(num_special);

  t->piece_bytes.resize(inner);
  t->ranks.reserve(inner * 2);
  for (int32_t i = 0; i < inner; ++i) {
    const json::Value& e = entries[i];
    std::string where = fmt::format("{}: vocab[{}]", path, i);
    const json::Value* rank = e.find("rank");
    const json::Value* b64 = e.find("token_bytes");
    if (!rank || !rank->is_int() || rank->as_int() != i)
      throw Error(where, fmt::format("rank must equal the entry's position {}", i));
    std::optional<std::string> bytes =
        b64 && b64->is_string() ? base64_decode(b64->as_string()) : std::nullopt;
    if (!bytes || bytes->empty()) throw Error(where, "token_bytes is not non-empty base64");
    if (!t->ranks.emplace(*bytes, i).second)
      throw Error(where, "token_bytes repeats an earlier piece");
    t->piece_bytes[i] = std::move(*bytes);
  }
  std::array<int32_t, 256> byte_ids;
  for (int b = 0; b < 256; ++b) {
    auto it = t->ranks.find(std::string(1, static_cast<char>(b)));
    if (it == t->ranks.end())
      throw Error(path + ": vocab", fmt::format("byte {} has no piece", b),
                  "every byte must be a piece of a byte-level BPE");
    byte_ids[b] = it->second;
  }
  t->bpe = BytePairEncoder(byte_ids, -1, false);
  // Every split of a piece into two pieces is a pair that merges into it.
  std::string left;
  for (int32_t rank = 0; rank < inner; ++rank) {
    const std::string& bytes = t->piece_bytes[rank];
    for (size_t k = 1; k < bytes.size(); ++k) {
      left.assign(bytes, 0, k);
      auto l = t->ranks.find(left);
      if (l == t->ranks.end()) continue;
      auto r = t->ranks.find(bytes.substr(k));
      if (r == t->ranks.end()) continue;
      t->bpe.add_merge(l->second, r->second, rank, rank);
    }
  }

  // Control tokens.
  t->special_names.resize(num_special);
  const json::Value* specials = root.find("special_tokens");
  for (int32_t i = 0; i < t->num_special; ++i)
    t->special_names[i] = "<SPECIAL_" + std::to_string(i) + ">";
  if (specials && specials->is_array()) {
    for (const json::Value& s : specials->as_array()) {
      const json::Value* rank = s.find("rank");
      const json::Value* name = s.find("token_str");
      if (!rank || !rank->is_int() || rank->as_int() < 0 || rank->as_int() >= num_special ||
          !name || !name->is_string())
        throw Error(path + ": special_tokens",
                    fmt::format("entries need a rank below {} and a token_str", num_special));
      t->special_names[rank->as_int()] = name->as_string();
    }
  } else {
    for (int32_t i = 0; i < t->num_special && i < 20; ++i)
      t->special_names[i] = kDefaultSpecials[i];
  }
  for (int32_t i = 0; i < t->num_special; ++i) {
    const std::string& n = t->special_names[i];
    if (n == "<s>") t->specials.bos_id = i;
    if (n == "</s>") t->specials.eos_id = i;
    if (n == "<unk>") t->specials.unk_id = i;
    if (n == "<pad>") t->specials.pad_id = i;
  }
  t->specials.vocab_size = static_cast<int32_t>(vocab_size);
  return t;
}

}  // namespace dus
