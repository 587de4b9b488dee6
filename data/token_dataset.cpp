#include "data/token_dataset.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "model/error.h"

namespace dus {

struct TokenDataset::Mapping {
  void* addr = nullptr;
  size_t bytes = 0;
  ~Mapping() {
    if (addr) ::munmap(addr, bytes);
  }
};

namespace {

const json::Value& require(const json::Value& obj, const std::string& key,
                           const std::string& where) {
  const json::Value* v = obj.find(key);
  if (!v)
    throw Error(where, "missing key \"" + key + "\"", "re-run dus prepare to rebuild the dataset");
  return *v;
}

int64_t require_int(const json::Value& obj, const std::string& key, const std::string& where) {
  int64_t v = require(obj, key, where).as_int(where + ": " + key);
  if (v < -1) throw Error(where + ": " + key, "negative value " + std::to_string(v));
  return v;
}

}  // namespace

TokenDataset TokenDataset::open(const std::string& dir, const std::string& split) {
  const std::string index_path = dir + "/index.json";
  std::error_code ec;
  if (!std::filesystem::exists(index_path, ec)) {
    bool partial = false;
    for (const auto& e :
         std::filesystem::directory_iterator(std::filesystem::path(dir).parent_path().empty()
                                                 ? "."
                                                 : std::filesystem::path(dir).parent_path(),
                                             ec))
      if (e.path().filename().string().rfind(
              std::filesystem::path(dir).filename().string() + ".tmp-", 0) == 0)
        partial = true;
    throw Error(dir,
                std::filesystem::exists(dir, ec)
                    ? "no index.json: not a prepared dataset (or an incomplete one)"
                    : "dataset directory does not exist",
                partial
                    ? "a partial OUT.tmp-* directory exists: the prepare was interrupted; run dus "
                      "prepare again"
                    : "create it with 'dus prepare --tokenizer ... --input ... --out " + dir + "'");
  }
  TokenDataset ds;
  ds.dir_ = dir;
  ds.split_ = split;
  ds.index_ = json::parse_file(index_path);
  const json::Value& index = ds.index_;
  if (!index.is_object()) throw Error(index_path, "expected a JSON object");
  const json::Value& format = require(index, "format", index_path);
  if (!format.is_string() || format.as_string() != "dus-token-dataset")
    throw Error(index_path + ": format", "expected \"dus-token-dataset\"");
  int64_t version = require_int(index, "version", index_path);
  if (version != 1)
    throw Error(index_path + ": version", "unsupported version " + std::to_string(version),
                "this build reads version 1");
  ds.dtype_ =
      parse_token_dtype(require(index, "dtype", index_path).as_string(index_path + ": dtype"),
                        index_path + ": dtype");
  ds.vocab_size_ = require_int(index, "vocab_size", index_path);
  const json::Value& tok = require(index, "tokenizer", index_path);
  const std::string tok_where = index_path + ": tokenizer";
  ds.tokenizer_sha256_ = require(tok, "sha256", tok_where).as_string(tok_where + ".sha256");
  ds.bos_id_ = static_cast<int32_t>(require_int(tok, "bos_id", tok_where));
  ds.eos_id_ = static_cast<int32_t>(require_int(tok, "eos_id", tok_where));

  const json::Value& splits = require(index, "splits", index_path);
  const json::Value* s = splits.find(split);
  if (!s)
    throw Error(index_path + ": splits", "no split \"" + split + "\"",
                "the splits are train and val");
  const std::string where = index_path + ": splits." + split;
  ds.documents_ = require_int(*s, "documents", where);
  ds.tokens_ = require_int(*s, "tokens", where);
  ds.max_token_id_ = require_int(*s, "max_token_id", where);
  int64_t doc_sum = 0, token_sum = 0;
  const json::Array& shards = require(*s, "shards", where).as_array(where + ".shards");
  for (size_t i = 0; i < shards.size(); ++i) {
    const std::string sw = where + ".shards[" + std::to_string(i) + "]";
    Shard shard;
    shard.documents = require_int(shards[i], "documents", sw);
    shard.tokens = require_int(shards[i], "tokens", sw);
    shard.first_doc = doc_sum;
    shard.first_token = token_sum;
    auto map = [&](const std::string& key, size_t expected) {
      const std::string& name = require(shards[i], key, sw).as_string(sw + "." + key);
      if (name.find('/') != std::string::npos)
        throw Error(sw + "." + key, "shard names may not contain '/'");
      const std::string path = dir + "/" + name;
      int fd = ::open(path.c_str(), O_RDONLY);
      if (fd < 0)
        throw Error(path, std::string("cannot open shard: ") + std::strerror(errno),
                    "the dataset is incomplete; run dus prepare again");
      struct stat st {};
      ::fstat(fd, &st);
      if (static_cast<size_t>(st.st_size) != expected) {
        ::close(fd);
        throw Error(path,
                    "size " + std::to_string(st.st_size) + " bytes, index.json implies " +
                        std::to_string(expected),
                    "the shard is truncated or from another dataset; run dus prepare again");
      }
      auto m = std::make_shared<Mapping>();
      m->bytes = expected;
      if (expected > 0) {
        m->addr = ::mmap(nullptr, expected, PROT_READ, MAP_SHARED, fd, 0);
        if (m->addr == MAP_FAILED) {
          m->addr = nullptr;
          ::close(fd);
          throw Error(path, std::string("mmap failed: ") + std::strerror(errno));
        }
      }
      ::close(fd);
      return m;
    };
    shard.bin = map("file", static_cast<size_t>(shard.tokens) * dtype_bytes(ds.dtype_));
    shard.idx = map("index", static_cast<size_t>(shard.documents) * sizeof(uint64_t));
    shard.data = static_cast<const uint8_t*>(shard.bin->addr);
    shard.ends = static_cast<const uint64_t*>(shard.idx->addr);
    if (shard.documents > 0 &&
        static_cast<int64_t>(shard.ends[shard.documents - 1]) != shard.tokens)
      throw Error(dir + "/" + require(shards[i], "index", sw).as_string(),
                  "last document ends at " + std::to_string(shard.ends[shard.documents - 1]) +
                      ", expected the shard's token count " + std::to_string(shard.tokens));
    doc_sum += shard.documents;
    token_sum += shard.tokens;
    ds.shards_.push_back(std::move(shard));
  }
  if (doc_sum != ds.documents_ || token_sum != ds.tokens_)
    throw Error(where, "shards hold " + std::to_string(doc_sum) + " documents / " +
                           std::to_string(token_sum) + " tokens, the split says " +
                           std::to_string(ds.documents_) + " / " + std::to_string(ds.tokens_));
  return ds;
}

size_t TokenDataset::shard_of(int64_t doc) const {
  // Last shard whose first_doc <= doc (skipping empty shards is not needed: they hold no doc).
  auto it = std::upper_bound(shards_.begin(), shards_.end(), doc,
                             [](int64_t d, const Shard& s) { return d < s.first_doc; });
  size_t i = static_cast<size_t>(it - shards_.begin()) - 1;
  while (i + 1 < shards_.size() && shards_[i].documents == 0) ++i;
  return i;
}

int64_t TokenDataset::document_start(int64_t doc) const {
  if (doc < 0 || doc > documents_)
    throw Error(dir_, "document " + std::to_string(doc) + " out of range [0, " +
                          std::to_string(documents_) + "]");
  if (doc == documents_) return tokens_;
  const Shard& s = shards_[shard_of(doc)];
  const int64_t local = doc - s.first_doc;
  return s.first_token + (local == 0 ? 0 : static_cast<int64_t>(s.ends[local - 1]));
}

void TokenDataset::read(int64_t doc, int64_t offset, int64_t count, int32_t* out) const {
  const Shard& s = shards_[shard_of(doc)];
  const int64_t local = doc - s.first_doc;
  const int64_t begin = (local == 0 ? 0 : static_cast<int64_t>(s.ends[local - 1])) + offset;
  if (offset < 0 || count < 0 || begin + count > static_cast<int64_t>(s.ends[local]))
    throw Error(dir_, "read past the end of document " + std::to_string(doc));
  if (dtype_ == TokenDtype::U16) {
    const uint16_t* p = reinterpret_cast<const uint16_t*>(s.data) + begin;
    for (int64_t i = 0; i < count; ++i) out[i] = p[i];
  } else {
    const uint32_t* p = reinterpret_cast<const uint32_t*>(s.data) + begin;
    for (int64_t i = 0; i < count; ++i) out[i] = static_cast<int32_t>(p[i]);
  }
}

int64_t TokenDataset::scan_max_token_id() const {
  int64_t best = -1;
  for (const Shard& s : shards_)
    for (int64_t i = 0; i < s.tokens; ++i) {
      int64_t v = dtype_ == TokenDtype::U16 ? reinterpret_cast<const uint16_t*>(s.data)[i]
                                            : reinterpret_cast<const uint32_t*>(s.data)[i];
      best = std::max(best, v);
    }
  return best;
}

}  // namespace dus
