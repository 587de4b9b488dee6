#include "data/hf_tokenizer_json.h"

#include <algorithm>
#include <array>
#include <filesystem>
#include <optional>
#include <unordered_map>

#include <fmt/format.h>

#include "core/error.h"
#include "data/added_vocabulary.h"
#include "data/bpe.h"
#include "data/split_regex.h"
#include "data/unicode_text.h"

namespace dus {

namespace {

// GPT-2's pre-tokenizer regex, what ByteLevel(use_regex=true) splits with.
const char* const kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68 bytes
// map to U+0100.. in byte order. Vocab strings are written in these characters.
std::array<char32_t, 256> byte_to_char() {
  std::array<char32_t, 256> map{};
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    map[b] = printable ? static_cast<char32_t>(b) : next++;
  }
  return map;
}

// The bytes a byte-level string stands for; nullopt when a character is outside the map
// (such a vocab entry can never come out of byte-level BPE).
std::optional<std::string> unmap_bytes(const std::string& s,
                                       const std::unordered_map<char32_t, uint8_t>& inverse) {
  std::string bytes;
  size_t pos = 0;
  while (pos < s.size()) {
    auto it = inverse.find(next_code_point(s, &pos));
    if (it == inverse.end()) return std::nullopt;
    bytes.push_back(static_cast<char>(it->second));
  }
  return bytes;
}

// The JSON parser passes string bytes through unchecked, while the text side assumes UTF-8: a
// vocab string is decoded character by character, and an added token's bytes could match
// inside a character and hand the regex a split that is not UTF-8. Hugging Face tokenizers
// cannot read such a file at all (its strings are Rust strings).
void require_utf8(const std::string& path, const std::string& where, const std::string& s) {
  if (size_t bad = find_invalid_utf8(s); bad != std::string::npos)
    throw Error(path + ": " + where, fmt::format("\"{}\" is not valid UTF-8 at byte {}", s, bad),
                "a tokenizer.json is UTF-8 text; the file is damaged");
}

enum class SplitBehavior { Isolated, Removed };

struct PreTokenizerStep {
  std::optional<SplitRegex> regex;  // Split's pattern, or ByteLevel's GPT-2 regex when used
  SplitBehavior behavior = SplitBehavior::Isolated;
  bool byte_level = false;
  bool add_prefix_space = false;
};

class HfBpeTokenizer : public TokenizerImpl {
 public:
  std::string path;
  std::vector<NormalForm> normalizers;
  std::vector<PreTokenizerStep> steps;
  AddedVocabulary raw_added, normalized_added;
  BytePairEncoder bpe;
  bool ignore_merges = false;
  std::unordered_map<std::string, int32_t> piece_ids;  // vocab bytes -> id (ignore_merges)
  std::vector<std::string> pieces;                     // id -> file string
  std::vector<std::string> decode_bytes;               // id -> bytes decode emits
  std::vector<char> special;                           // id -> an added token marked special

  void encode(std::string_view text, std::vector<int32_t>* ids) const override {
    ids->clear();
    if (size_t bad = find_invalid_utf8(text); bad != std::string_view::npos)
      throw Error(path, fmt::format("text is not valid UTF-8 at byte {}", bad),
                  "the corpus reader repairs invalid UTF-8 before tokenizing");
    std::vector<AddedVocabulary::Segment> raw, normed;
    raw_added.split(text, &raw);
    std::string normalized;
    for (const auto& seg : raw) {
      if (seg.id >= 0) {
        ids->push_back(seg.id);
        continue;
      }
      std::string_view plain = text.substr(seg.begin, seg.end - seg.begin);
      if (!normalizers.empty()) {
        normalized.assign(plain);
        for (NormalForm f : normalizers) normalized = normalize_unicode(normalized, f, path);
        plain = normalized;
      }
      normalized_added.split(plain, &normed);
      for (const auto& s : normed) {
        if (s.id >= 0)
          ids->push_back(s.id);
        else
          pre_tokenize(0, plain.substr(s.begin, s.end - s.begin), ids);
      }
    }
  }

  std::string decode(const std::vector<int32_t>& ids) const override {
    std::string out;
    for (int32_t id : ids) {
      if (id < 0 || static_cast<size_t>(id) >= decode_bytes.size())
        throw Error(path, fmt::format("decode: id {} is outside the vocabulary", id));
      out += decode_bytes[id];
    }
    return out;
  }

  std::vector<int32_t> token_byte_lengths(bool /*at_document_start*/) const override {
    // The ByteLevel decoder emits each token's bytes as they are, at any position; special
    // added tokens (BOS, EOS, ...) are no text of the document: 0.
    std::vector<int32_t> lengths(decode_bytes.size(), 0);
    for (size_t id = 0; id < decode_bytes.size(); ++id)
      if (!special[id]) lengths[id] = static_cast<int32_t>(decode_bytes[id].size());
    return lengths;
  }

  std::string id_to_piece(int32_t id) const override {
    if (id < 0 || static_cast<size_t>(id) >= pieces.size()) return "";
    return pieces[id];
  }

 private:
  // Runs pre-tokenizer step `i` on one split (non-empty), then the later steps on its parts,
  // then BPE: each step works on the splits of the previous one, as PreTokenizedString does.
  void pre_tokenize(size_t i, std::string_view split, std::vector<int32_t>* ids) const {
    if (i == steps.size()) {
      if (ignore_merges) {
        auto it = piece_ids.find(std::string(split));
        if (it != piece_ids.end()) {
          ids->push_back(it->second);
          return;
        }
      }
      bpe.encode(split, ids);
      return;
    }
    const PreTokenizerStep& step = steps[i];
    std::string prefixed;
    if (step.add_prefix_space && split[0] != ' ') {
      prefixed = " ";
      prefixed += split;
      split = prefixed;
    }
    if (!step.regex) {
      pre_tokenize(i + 1, split, ids);
      return;
    }
    std::vector<std::pair<size_t, size_t>> matches;
    step.regex->find_all(split, &matches);
    size_t prev = 0;
    for (const auto& [b, e] : matches) {
      if (b > prev) pre_tokenize(i + 1, split.substr(prev, b - prev), ids);
      if (step.behavior == SplitBehavior::Isolated)
        pre_tokenize(i + 1, split.substr(b, e - b), ids);
      prev = e;
    }
    if (prev < split.size()) pre_tokenize(i + 1, split.substr(prev), ids);
  }
};

std::string describe(const json::Value* v) {
  if (!v) return "(absent)";
  if (v->is_object()) {
    if (const json::Value* t = v->find("type"); t && t->is_string()) return t->as_string();
  }
  return json::dump(*v).substr(0, 80);
}

[[noreturn]] void unsupported(const std::string& path, const std::string& where,
                              const json::Value* v, const std::string& hint = "") {
  throw Error(path + ": " + where, "unsupported tokenizer component '" + describe(v) + "'",
              hint.empty() ? "supported: byte-level BPE with NFC/NFKC normalizers and "
                             "ByteLevel/Split pre-tokenizers (see data/hf_tokenizer_json.h)"
                           : hint);
}

std::string type_of(const std::string& path, const std::string& where, const json::Value& v) {
  const json::Value* t = v.is_object() ? v.find("type") : nullptr;
  if (!t || !t->is_string()) unsupported(path, where, &v, "expected an object with a \"type\"");
  return t->as_string();
}

bool flag(const json::Value& obj, const char* key, bool fallback) {
  const json::Value* v = obj.find(key);
  return v && v->is_bool() ? v->as_bool() : fallback;
}

void parse_normalizer(const std::string& path, const std::string& where, const json::Value& n,
                      std::vector<NormalForm>* out) {
  if (n.is_null()) return;
  std::string type = type_of(path, where, n);
  if (type == "NFC") {
    out->push_back(NormalForm::NFC);
  } else if (type == "NFKC") {
    out->push_back(NormalForm::NFKC);
  } else if (type == "Sequence") {
    const json::Value* list = n.find("normalizers");
    if (!list || !list->is_array()) unsupported(path, where + ".normalizers", list);
    for (size_t i = 0; i < list->as_array().size(); ++i)
      parse_normalizer(path, fmt::format("{}.normalizers[{}]", where, i), list->as_array()[i], out);
  } else {
    unsupported(path, where, &n);
  }
}

void parse_pre_tokenizer(const std::string& path, const std::string& where, const json::Value& p,
                         std::vector<PreTokenizerStep>* out) {
  if (p.is_null()) return;
  std::string type = type_of(path, where, p);
  if (type == "Sequence") {
    const json::Value* list = p.find("pretokenizers");
    if (!list || !list->is_array()) unsupported(path, where + ".pretokenizers", list);
    for (size_t i = 0; i < list->as_array().size(); ++i)
      parse_pre_tokenizer(path, fmt::format("{}.pretokenizers[{}]", where, i), list->as_array()[i],
                          out);
  } else if (type == "ByteLevel") {
    PreTokenizerStep step;
    step.byte_level = true;
    step.add_prefix_space = flag(p, "add_prefix_space", true);
    if (flag(p, "use_regex", true)) step.regex.emplace(kGpt2Pattern, false, path + ": " + where);
    out->push_back(std::move(step));
  } else if (type == "Split") {
    PreTokenizerStep step;
    if (flag(p, "invert", false)) unsupported(path, where + ".invert", p.find("invert"));
    const json::Value* pattern = p.find("pattern");
    const json::Value* regex = pattern ? pattern->find("Regex") : nullptr;
    const json::Value* literal = pattern ? pattern->find("String") : nullptr;
    if (regex && regex->is_string())
      step.regex.emplace(regex->as_string(), false, path + ": " + where + ".pattern.Regex");
    else if (literal && literal->is_string())
      step.regex.emplace(literal->as_string(), true, path + ": " + where + ".pattern.String");
    else
      unsupported(path, where + ".pattern", pattern);
    const json::Value* behavior = p.find("behavior");
    std::string b = behavior && behavior->is_string() ? behavior->as_string() : "";
    if (b == "Isolated")
      step.behavior = SplitBehavior::Isolated;
    else if (b == "Removed")
      step.behavior = SplitBehavior::Removed;
    else
      unsupported(path, where + ".behavior", behavior,
                  "supported Split behaviors: Isolated, Removed");
    out->push_back(std::move(step));
  } else {
    unsupported(path, where, &p);
  }
}

// A special token named by tokenizer_config.json ("<s>" or {"content": "<s>"}), as an id.
int32_t config_token(const json::Value& config, const char* key,
                     const std::unordered_map<std::string, int32_t>& ids) {
  const json::Value* v = config.find(key);
  if (v && v->is_object()) v = v->find("content");
  if (!v || !v->is_string()) return -1;
  auto it = ids.find(v->as_string());
  return it == ids.end() ? -1 : it->second;
}

int32_t config_id(const json::Value& config, const char* key) {
  const json::Value* v = config.find(key);
  if (v && v->is_array() && !v->as_array().empty()) v = &v->as_array()[0];
  return v && v->is_int() ? static_cast<int32_t>(v->as_int()) : -1;
}

}  // namespace

bool post_processor_adds_bos(const json::Value& processor) {
  if (!processor.is_object()) return false;
  const json::Value* type = processor.find("type");
  if (!type || !type->is_string()) return false;
  if (type->as_string() == "Sequence") {
    if (const json::Value* list = processor.find("processors"); list && list->is_array())
      for (const json::Value& p : list->as_array())
        if (post_processor_adds_bos(p)) return true;
    return false;
  }
  if (type->as_string() != "TemplateProcessing") return false;
  const json::Value* single = processor.find("single");
  return single && single->is_array() && !single->as_array().empty() &&
         single->as_array().front().is_object() &&
         single->as_array().front().contains("SpecialToken");
}

std::unique_ptr<TokenizerImpl> load_hf_tokenizer_json(const std::string& path,
                                                      const json::Value& root) {
  auto t = std::make_unique<HfBpeTokenizer>();
  t->path = path;

  // ---- model
  const json::Value* model = root.find("model");
  if (!model || !model->is_object()) unsupported(path, "model", model);
  if (type_of(path, "model", *model) != "BPE")
    unsupported(path, "model.type", model,
                "only byte-level BPE models are supported (not WordPiece, Unigram, WordLevel)");
  if (flag(*model, "byte_fallback", false))
    unsupported(path, "model.byte_fallback", model->find("byte_fallback"),
                "byte_fallback BPE (sentencepiece-converted) is not supported; give the "
                "tokenizer.model instead");
  if (const json::Value* d = model->find("dropout"); d && !d->is_null())
    unsupported(path, "model.dropout", d, "BPE dropout makes ids random; remove it");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const json::Value* v = model->find(key);
    if (v && !v->is_null() && !(v->is_string() && v->as_string().empty()))
      unsupported(path, std::string("model.") + key, v);
  }
  t->ignore_merges = flag(*model, "ignore_merges", false);
  const json::Value* vocab = model->find("vocab");
  const json::Value* merges = model->find("merges");
  if (!vocab || !vocab->is_object()) unsupported(path, "model.vocab", vocab);
  if (!merges || !merges->is_array()) unsupported(path, "model.merges", merges);

  const std::array<char32_t, 256> to_char = byte_to_char();
  std::unordered_map<char32_t, uint8_t> to_byte;
  for (int b = 0; b < 256; ++b) to_byte[to_char[b]] = static_cast<uint8_t>(b);

  std::unordered_map<std::string, int32_t> vocab_ids;  // file string -> id
  vocab_ids.reserve(vocab->as_object().size() * 2);
  int32_t max_id = -1;
  for (const auto& [piece, idv] : vocab->as_object()) {
    if (!idv.is_int() || idv.as_int() < 0 || idv.as_int() >= kMaxTokenizerVocab)
      throw Error(path + ": model.vocab[\"" + piece + "\"]",
                  fmt::format("id must be an integer in [0, {})", kMaxTokenizerVocab));
    int32_t id = static_cast<int32_t>(idv.as_int());
    require_utf8(path, "model.vocab", piece);
    if (!vocab_ids.emplace(piece, id).second)
      throw Error(path + ": model.vocab", "piece \"" + piece + "\" is listed twice");
    max_id = std::max(max_id, id);
  }

  // ---- added tokens (their ids may extend the vocabulary)
  struct Added {
    AddedToken token;
    bool normalized;
    bool special;
  };
  std::vector<Added> added;
  if (const json::Value* list = root.find("added_tokens"); list && list->is_array()) {
    for (size_t i = 0; i < list->as_array().size(); ++i) {
      const json::Value& a = list->as_array()[i];
      std::string where = fmt::format("added_tokens[{}]", i);
      const json::Value* content = a.find("content");
      const json::Value* id = a.find("id");
      if (!content || !content->is_string() || !id || !id->is_int() || id->as_int() < 0 ||
          id->as_int() >= kMaxTokenizerVocab)
        throw Error(
            path + ": " + where,
            fmt::format("needs a string \"content\" and an \"id\" in [0, {})", kMaxTokenizerVocab));
      require_utf8(path, where + ".content", content->as_string());
      if (flag(a, "single_word", false))
        unsupported(path, where + ".single_word", a.find("single_word"),
                    "added tokens with single_word are not supported");
      Added x;
      x.token.content = content->as_string();
      x.token.id = static_cast<int32_t>(id->as_int());
      x.token.lstrip = flag(a, "lstrip", false);
      x.token.rstrip = flag(a, "rstrip", false);
      // tokenizers' default: special tokens are matched in the raw text, others after
      // normalization.
      x.special = flag(a, "special", false);
      x.normalized = flag(a, "normalized", !x.special);
      max_id = std::max(max_id, x.token.id);
      added.push_back(std::move(x));
    }
  }
  t->specials.vocab_size = max_id + 1;
  if (const json::Value* post = root.find("post_processor"))
    t->specials.adds_bos = post_processor_adds_bos(*post);
  else
    t->specials.adds_bos = false;
  t->pieces.assign(max_id + 1, "");
  t->decode_bytes.assign(max_id + 1, "");
  t->special.assign(max_id + 1, 0);
  for (const auto& [piece, id] : vocab_ids) {
    t->pieces[id] = piece;
    std::optional<std::string> bytes = unmap_bytes(piece, to_byte);
    t->decode_bytes[id] = bytes ? *bytes : piece;
    if (t->ignore_merges && bytes) t->piece_ids.emplace(*bytes, id);
  }

  // ---- normalizer, pre-tokenizer, decoder
  if (const json::Value* n = root.find("normalizer"))
    parse_normalizer(path, "normalizer", *n, &t->normalizers);
  if (const json::Value* p = root.find("pre_tokenizer"))
    parse_pre_tokenizer(path, "pre_tokenizer", *p, &t->steps);
  auto byte_level = std::find_if(t->steps.begin(), t->steps.end(),
                                 [](const PreTokenizerStep& s) { return s.byte_level; });
  if (byte_level == t->steps.end() || byte_level + 1 != t->steps.end())
    unsupported(path, "pre_tokenizer", root.find("pre_tokenizer"),
                "a byte-level BPE needs a ByteLevel pre-tokenizer as its last step");
  if (const json::Value* d = root.find("decoder"); d && !d->is_null()) {
    if (type_of(path, "decoder", *d) != "ByteLevel") unsupported(path, "decoder", d);
  }

  // Added tokens, split by where they are matched; normalized ones are matched on normalized
  // text, so their content is normalized the same way.
  for (Added& a : added) {
    std::string& c = a.token.content;
    if (t->pieces[a.token.id].empty()) t->pieces[a.token.id] = c;
    std::optional<std::string> bytes = unmap_bytes(c, to_byte);
    t->decode_bytes[a.token.id] = bytes ? *bytes : c;
    t->special[a.token.id] = a.special ? 1 : 0;
    if (a.normalized) {
      for (NormalForm f : t->normalizers) c = normalize_unicode(c, f, path);
      t->normalized_added.add(a.token);
    } else {
      t->raw_added.add(a.token);
    }
  }

  // ---- BPE tables
  auto id_of = [&](const std::string& s) -> int32_t {
    auto it = vocab_ids.find(s);
    return it == vocab_ids.end() ? -1 : it->second;
  };
  int32_t unk_id = -1;
  if (const json::Value* unk = model->find("unk_token"); unk && unk->is_string()) {
    unk_id = id_of(unk->as_string());
    if (unk_id < 0)
      throw Error(path + ": model.unk_token", "'" + unk->as_string() + "' is not in the vocab");
  }
  std::array<int32_t, 256> byte_ids;
  std::string one;
  for (int b = 0; b < 256; ++b) {
    one.clear();
    append_utf8(to_char[b], &one);
    byte_ids[b] = id_of(one);
  }
  t->bpe = BytePairEncoder(byte_ids, unk_id, flag(*model, "fuse_unk", false));
  const json::Array& merge_list = merges->as_array();
  for (size_t i = 0; i < merge_list.size(); ++i) {
    const json::Value& m = merge_list[i];
    std::string a, b;
    if (m.is_string()) {
      const std::string& s = m.as_string();
      size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos)
        throw Error(fmt::format("{}: model.merges[{}]", path, i),
                    "expected two pieces separated by one space, got \"" + s + "\"");
      a = s.substr(0, space);
      b = s.substr(space + 1);
    } else if (m.is_array() && m.as_array().size() == 2 && m.as_array()[0].is_string() &&
               m.as_array()[1].is_string()) {
      a = m.as_array()[0].as_string();
      b = m.as_array()[1].as_string();
    } else {
      throw Error(fmt::format("{}: model.merges[{}]", path, i),
                  "expected \"a b\" or [\"a\", \"b\"]");
    }
    int32_t ia = id_of(a), ib = id_of(b), iab = id_of(a + b);
    if (ia < 0 || ib < 0 || iab < 0)
      throw Error(fmt::format("{}: model.merges[{}]", path, i),
                  "merge \"" + a + "\" + \"" + b + "\" uses a piece missing from the vocab");
    t->bpe.add_merge(ia, ib, static_cast<int32_t>(i), iab);
  }

  // ---- special ids: tokenizer_config.json, else config.json, beside the file
  std::unordered_map<std::string, int32_t> all_ids = vocab_ids;
  for (const Added& a : added) all_ids[a.token.content] = a.token.id;
  t->specials.unk_id = unk_id;
  namespace fs = std::filesystem;
  fs::path dir = fs::path(path).parent_path();
  std::error_code ec;
  if (fs::is_regular_file(dir / "tokenizer_config.json", ec)) {
    json::Value config = json::parse_file((dir / "tokenizer_config.json").string());
    t->specials.bos_id = config_token(config, "bos_token", all_ids);
    t->specials.eos_id = config_token(config, "eos_token", all_ids);
    t->specials.pad_id = config_token(config, "pad_token", all_ids);
  } else if (fs::is_regular_file(dir / "config.json", ec)) {
    json::Value config = json::parse_file((dir / "config.json").string());
    t->specials.bos_id = config_id(config, "bos_token_id");
    t->specials.eos_id = config_id(config, "eos_token_id");
    t->specials.pad_id = config_id(config, "pad_token_id");
  }
  return t;
}

}  // namespace dus
