#include "data/tokenizer.h"

#include <algorithm>
#include <filesystem>

#include "core/error.h"
#include "core/file_util.h"
#include "core/json.h"
#include "core/sha256.h"
#include "data/hf_tokenizer_json.h"
#include "data/sentencepiece_tokenizer.h"
#include "data/tekken.h"
#include "data/tokenizer_impl.h"

namespace dus {

namespace fs = std::filesystem;

namespace {

const char* const kLoadHint =
    "give the model's tokenizer.model (sentencepiece), tokenizer.json (Hugging Face) or "
    "tekken.json (Mistral), or the model directory holding it; or train one with 'dus tokenizer "
    "train'";

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::shared_ptr<const TokenizerImpl> load_json(const std::string& path, const std::string& bytes) {
  json::ParseOptions options;
  // Vocabularies have 10^5 keys; the parser's duplicate check is quadratic. The loaders check
  // the vocab for repeated pieces themselves.
  options.reject_duplicate_keys = false;
  json::Value root = json::parse(bytes, path, options);
  if (!root.is_object())
    throw Error(path, "not a tokenizer file: the JSON is not an object", kLoadHint);
  if (root.contains("model")) return load_hf_tokenizer_json(path, root);
  if (root.contains("config") && root.contains("vocab")) return load_tekken(path, root);
  throw Error(path,
              "not a tokenizer file: neither a Hugging Face tokenizer.json (no \"model\") nor a "
              "Tekken file (no \"config\" and \"vocab\")",
              kLoadHint);
}

// The file a model directory's tokenizer is read from (see Tokenizer::load); "" when none.
std::string pick_in_directory(const std::string& dir) {
  std::error_code ec;
  const fs::path d(dir);
  if (fs::is_regular_file(d / "tokenizer.model", ec)) {
    std::string why;
    if (load_sentencepiece((d / "tokenizer.model").string(),
                           read_file((d / "tokenizer.model").string()), &why))
      return (d / "tokenizer.model").string();
  }
  if (fs::is_regular_file(d / "tokenizer.json", ec)) return (d / "tokenizer.json").string();
  if (fs::is_regular_file(d / "tekken.json", ec)) return (d / "tekken.json").string();
  std::vector<std::string> tekken;
  for (const auto& entry : fs::directory_iterator(d, ec)) {
    std::string name = entry.path().filename().string();
    if (name.rfind("tekken", 0) == 0 && ends_with(name, ".json"))
      tekken.push_back(entry.path().string());
  }
  std::sort(tekken.begin(), tekken.end());
  if (tekken.size() > 1)
    throw Error(dir,
                "several Tekken files and no tekken.json: " + tekken[0] + ", " + tekken[1] + "...",
                "pass the file itself with --tokenizer");
  if (tekken.size() == 1) return tekken[0];
  // A tokenizer.model that is not sentencepiece and nothing else: report its own error.
  if (fs::is_regular_file(d / "tokenizer.model", ec)) return (d / "tokenizer.model").string();
  return "";
}

}  // namespace

std::string Tokenizer::resolve(const std::string& given) {
  std::error_code ec;
  std::string path = given;
  if (fs::is_directory(given, ec)) {
    path = pick_in_directory(given);
    if (path.empty())
      throw Error(given,
                  "no tokenizer in this directory: looked for tokenizer.model (sentencepiece), "
                  "then tokenizer.json (Hugging Face), then tekken.json or tekken*.json (Mistral)",
                  kLoadHint);
  } else if (!fs::is_regular_file(given, ec)) {
    throw Error(given, "tokenizer not found", kLoadHint);
  }
  return path;
}

Tokenizer Tokenizer::load(const std::string& given) {
  const std::string path = resolve(given);
  std::string bytes = read_file(path);
  std::shared_ptr<const TokenizerImpl> impl;
  if (ends_with(path, ".json")) {
    impl = load_json(path, bytes);
  } else {
    std::string why;
    impl = load_sentencepiece(path, bytes, &why);
    if (!impl) throw Error(path, "not a sentencepiece model: " + why, kLoadHint);
  }
  Tokenizer t;
  t.impl_ = std::move(impl);
  t.path_ = path;
  t.sha256_ = sha256_hex(bytes);
  t.vocab_size_ = t.impl_->specials.vocab_size;
  t.bos_id_ = t.impl_->specials.bos_id;
  t.eos_id_ = t.impl_->specials.eos_id;
  t.adds_bos_ = t.impl_->specials.adds_bos;
  t.unk_id_ = t.impl_->specials.unk_id;
  t.pad_id_ = t.impl_->specials.pad_id;
  return t;
}

void copy_tokenizer_files(const std::string& path, const std::string& out_dir) {
  const fs::path file(Tokenizer::resolve(path));
  const std::string name = file.filename().string();
  const auto copy = [&](const fs::path& from, const std::string& to) {
    fs::copy_file(from, fs::path(out_dir) / to, fs::copy_options::overwrite_existing);
  };
  if (!ends_with(name, ".json")) return copy(file, "tokenizer.model");
  if (name.rfind("tekken", 0) == 0) return copy(file, name);
  copy(file, "tokenizer.json");
  std::error_code ec;
  for (const char* companion : {"tokenizer_config.json", "special_tokens_map.json"})
    if (fs::is_regular_file(file.parent_path() / companion, ec))
      copy(file.parent_path() / companion, companion);
}

void Tokenizer::encode(std::string_view text, std::vector<int32_t>* ids) const {
  impl_->encode(text, ids);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids;
  encode(text, &ids);
  return ids;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  return impl_->decode(ids);
}

std::string Tokenizer::id_to_piece(int32_t id) const {
  return impl_->id_to_piece(id);
}

std::vector<int32_t> Tokenizer::token_byte_lengths(bool at_document_start) const {
  return impl_->token_byte_lengths(at_document_start);
}

}  // namespace dus
