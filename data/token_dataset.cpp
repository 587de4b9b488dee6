#include "data/token_dataset.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>

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

// A count (documents, tokens): an integer >= 0.
int64_t require_count(const json::Value& obj, const std::string& key, const std::string& where) {
  const int64_t v = require(obj, key, where).as_int(where + ": " + key);
  if (v < 0)
    throw Error(where + ": " + key, "expected a count >= 0, found " + std::to_string(v),
                "re-run dus prepare to rebuild the dataset");
  return v;
}

// a + b for counts that must stay representable (the split's running totals).
int64_t checked_add(int64_t a, int64_t b, const std::string& where) {
  if (b > std::numeric_limits<int64_t>::max() - a)
    throw Error(where, "counts overflow a 64-bit integer", "re-run dus prepare");
  return a + b;
}

// Bytes of `count` items of `item_bytes` each, refusing sizes no file can have.
size_t checked_bytes(int64_t count, size_t item_bytes, const std::string& where) {
  const uint64_t limit = static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / item_bytes;
  if (static_cast<uint64_t>(count) > limit)
    throw Error(
        where,
        std::to_string(count) + " x " + std::to_string(item_bytes) + " bytes overflows a file size",
        "re-run dus prepare");
  return static_cast<size_t>(count) * item_bytes;
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
  // Ids are handed out as int32 and must fit the stored dtype.
  const int64_t max_vocab =
      ds.dtype_ == TokenDtype::U16 ? int64_t{1} << 16 : std::numeric_limits<int32_t>::max();
  if (ds.vocab_size_ < 1 || ds.vocab_size_ > max_vocab)
    throw Error(index_path + ": vocab_size",
                std::to_string(ds.vocab_size_) + " is outside [1, " + std::to_string(max_vocab) +
                    "] for dtype " + dtype_name(ds.dtype_),
                "re-run dus prepare to rebuild the dataset");
  const json::Value& tok = require(index, "tokenizer", index_path);
  const std::string tok_where = index_path + ": tokenizer";
  ds.tokenizer_sha256_ = require(tok, "sha256", tok_where).as_string(tok_where + ".sha256");
  auto special_id = [&](const char* key) {
    const int64_t id = require_int(tok, key, tok_where);  // -1: the tokenizer has none
    if (id >= ds.vocab_size_)
      throw Error(tok_where + "." + key,
                  std::to_string(id) + " is not below vocab_size " + std::to_string(ds.vocab_size_),
                  "re-run dus prepare to rebuild the dataset");
    return static_cast<int32_t>(id);
  };
  ds.bos_id_ = special_id("bos_id");
  ds.eos_id_ = special_id("eos_id");

  const json::Value& splits = require(index, "splits", index_path);
  const json::Value* s = splits.find(split);
  if (!s)
    throw Error(index_path + ": splits", "no split \"" + split + "\"",
                "the splits are train and val");
  const std::string where = index_path + ": splits." + split;
  ds.documents_ = require_count(*s, "documents", where);
  ds.tokens_ = require_count(*s, "tokens", where);
  ds.max_token_id_ = require_int(*s, "max_token_id", where);
  if (ds.max_token_id_ >= ds.vocab_size_)
    throw Error(where + ".max_token_id",
                std::to_string(ds.max_token_id_) + " is not below vocab_size " +
                    std::to_string(ds.vocab_size_),
                "the shards hold ids the tokenizer cannot produce; re-run dus prepare");
  int64_t doc_sum = 0, token_sum = 0;
  const json::Array& shards = require(*s, "shards", where).as_array(where + ".shards");
  for (size_t i = 0; i < shards.size(); ++i) {
    const std::string sw = where + ".shards[" + std::to_string(i) + "]";
    Shard shard;
    shard.documents = require_count(shards[i], "documents", sw);
    shard.tokens = require_count(shards[i], "tokens", sw);
    if (shard.documents == 0 && shard.tokens > 0)
      throw Error(sw, std::to_string(shard.tokens) + " tokens but no documents",
                  "re-run dus prepare to rebuild the dataset");
    shard.first_doc = doc_sum;
    shard.first_token = token_sum;
    auto map = [&](const std::string& key, size_t expected, std::string* path_out) {
      const std::string& name = require(shards[i], key, sw).as_string(sw + "." + key);
      if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..")
        throw Error(sw + "." + key,
                    "expected a file name in the dataset directory, found \"" + name + "\"");
      const std::string path = dir + "/" + name;
      *path_out = path;
      int fd = ::open(path.c_str(), O_RDONLY);
      if (fd < 0)
        throw Error(path, std::string("cannot open shard: ") + std::strerror(errno),
                    "the dataset is incomplete; run dus prepare again");
      struct stat st {};
      if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        throw Error(path, "not a regular file", "the dataset is damaged; run dus prepare again");
      }
      if (static_cast<uint64_t>(st.st_size) != expected) {
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
    shard.bin = map("file", checked_bytes(shard.tokens, dtype_bytes(ds.dtype_), sw + ".tokens"),
                    &shard.bin_path);
    std::string idx_path;
    shard.idx = map("index", checked_bytes(shard.documents, sizeof(uint64_t), sw + ".documents"),
                    &idx_path);
    shard.data = static_cast<const uint8_t*>(shard.bin->addr);
    shard.ends = static_cast<const uint64_t*>(shard.idx->addr);
    // Every end offset in [previous end, shard tokens], the last one at the shard's end: then
    // each document is a valid range of the .bin and reads never leave the mapping.
    uint64_t previous = 0;
    for (int64_t d = 0; d < shard.documents; ++d) {
      const uint64_t end = shard.ends[d];
      if (end < previous || end > static_cast<uint64_t>(shard.tokens))
        throw Error(idx_path,
                    "document " + std::to_string(d) + " (byte offset " + std::to_string(d * 8) +
                        ") ends at token " + std::to_string(end) + ", expected a value in [" +
                        std::to_string(previous) + ", " + std::to_string(shard.tokens) +
                        "]: end offsets must be non-decreasing and within the shard",
                    "the index is damaged; run dus prepare again");
      previous = end;
    }
    if (shard.documents > 0 && previous != static_cast<uint64_t>(shard.tokens))
      throw Error(idx_path, "last document (byte offset " +
                                std::to_string((shard.documents - 1) * 8) + ") ends at " +
                                std::to_string(previous) + ", expected the shard's token count " +
                                std::to_string(shard.tokens));
    doc_sum = checked_add(doc_sum, shard.documents, sw + ".documents");
    token_sum = checked_add(token_sum, shard.tokens, sw + ".tokens");
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

namespace {

// Copies n ids to out and returns the largest: one pass the compiler vectorises, so checking
// every id against the vocabulary costs next to nothing over the copy itself.
template <typename T>
uint32_t copy_ids(const T* p, int64_t n, int32_t* out) {
  uint32_t largest = 0;
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t v = p[i];
    out[i] = static_cast<int32_t>(v);
    largest = std::max(largest, v);
  }
  return largest;
}

}  // namespace

void TokenDataset::read(int64_t doc, int64_t offset, int64_t count, int32_t* out) const {
  if (doc < 0 || doc >= documents_)
    throw Error(dir_, "document " + std::to_string(doc) + " out of range [0, " +
                          std::to_string(documents_) + ")");
  const Shard& s = shards_[shard_of(doc)];
  const int64_t local = doc - s.first_doc;
  const int64_t doc_begin = local == 0 ? 0 : static_cast<int64_t>(s.ends[local - 1]);
  const int64_t doc_end = static_cast<int64_t>(s.ends[local]);
  if (offset < 0 || count < 0 || offset > doc_end - doc_begin ||
      count > doc_end - doc_begin - offset)
    throw Error(dir_, "read past the end of document " + std::to_string(doc));
  const int64_t begin = doc_begin + offset;
  const size_t width = dtype_bytes(dtype_);
  const uint32_t largest =
      dtype_ == TokenDtype::U16
          ? copy_ids(reinterpret_cast<const uint16_t*>(s.data) + begin, count, out)
          : copy_ids(reinterpret_cast<const uint32_t*>(s.data) + begin, count, out);
  if (count > 0 && static_cast<int64_t>(largest) >= vocab_size_) {
    int64_t i = 0;
    while (static_cast<uint32_t>(out[i]) < static_cast<uint64_t>(vocab_size_)) ++i;
    throw Error(s.bin_path,
                "token id " + std::to_string(static_cast<uint32_t>(out[i])) + " at byte offset " +
                    std::to_string((begin + i) * static_cast<int64_t>(width)) + " (document " +
                    std::to_string(doc) + ") is not below vocab_size " +
                    std::to_string(vocab_size_),
                "the shard is damaged or from another tokenizer; run dus prepare again");
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
