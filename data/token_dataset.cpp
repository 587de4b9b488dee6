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
#include <type_traits>

#include <fmt/format.h>

#include "core/error.h"

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
  if (v < -1) throw Error(where + ": " + key, fmt::format("negative value {}", v));
  return v;
}

// A count (documents, tokens): an integer >= 0.
int64_t require_count(const json::Value& obj, const std::string& key, const std::string& where) {
  const int64_t v = require(obj, key, where).as_int(where + ": " + key);
  if (v < 0)
    throw Error(where + ": " + key, fmt::format("expected a count >= 0, found {}", v),
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
    throw Error(where, fmt::format("{} x {} bytes overflows a file size", count, item_bytes),
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
    throw Error(index_path + ": version", fmt::format("unsupported version {}", version),
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
                fmt::format("{} is outside [1, {}] for dtype {}", ds.vocab_size_, max_vocab,
                            dtype_name(ds.dtype_)),
                "re-run dus prepare to rebuild the dataset");
  const json::Value& tok = require(index, "tokenizer", index_path);
  const std::string tok_where = index_path + ": tokenizer";
  ds.tokenizer_sha256_ = require(tok, "sha256", tok_where).as_string(tok_where + ".sha256");
  auto special_id = [&](const char* key) {
    const int64_t id = require_int(tok, key, tok_where);  // -1: the tokenizer has none
    if (id >= ds.vocab_size_)
      throw Error(tok_where + "." + key,
                  fmt::format("{} is not below vocab_size {}", id, ds.vocab_size_),
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
                fmt::format("{} is not below vocab_size {}", ds.max_token_id_, ds.vocab_size_),
                "the shards hold ids the tokenizer cannot produce; re-run dus prepare");
  int64_t doc_sum = 0, token_sum = 0;
  const json::Array& shards = require(*s, "shards", where).as_array(where + ".shards");
  for (size_t i = 0; i < shards.size(); ++i) {
    const std::string sw = fmt::format("{}.shards[{}]", where, i);
    Shard shard;
    shard.documents = require_count(shards[i], "documents", sw);
    shard.tokens = require_count(shards[i], "tokens", sw);
    if (shard.documents == 0 && shard.tokens > 0)
      throw Error(sw, fmt::format("{} tokens but no documents", shard.tokens),
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
        throw Error(path, fmt::format("size {} bytes, index.json implies {}", st.st_size, expected),
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
        throw Error(
            idx_path,
            fmt::format("document {} (byte offset {}) ends at token {}, expected a value in "
                        "[{}, {}]: end offsets must be non-decreasing and within the shard",
                        d, d * 8, end, previous, shard.tokens),
            "the index is damaged; run dus prepare again");
      previous = end;
    }
    if (shard.documents > 0 && previous != static_cast<uint64_t>(shard.tokens))
      throw Error(idx_path, fmt::format("last document (byte offset {}) ends at {}, expected the "
                                        "shard's token count {}",
                                        (shard.documents - 1) * 8, previous, shard.tokens));
    doc_sum = checked_add(doc_sum, shard.documents, sw + ".documents");
    token_sum = checked_add(token_sum, shard.tokens, sw + ".tokens");
    ds.shards_.push_back(std::move(shard));
  }
  if (doc_sum != ds.documents_ || token_sum != ds.tokens_)
    throw Error(where, fmt::format("shards hold {} documents / {} tokens, the split says {} / {}",
                                   doc_sum, token_sum, ds.documents_, ds.tokens_));
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

TokenDataset TokenDataset::open_megatron(const std::string& path, const MegatronOptions& options) {
  std::string prefix = megatron_prefix(path);
  if (prefix.empty()) prefix = path;
  const std::string idx_path = prefix + ".idx", bin_path = prefix + ".bin";
  if (options.vocab_size < 1)
    throw Error(path, "a Megatron dataset does not record its tokenizer",
                "set data.tokenizer to the tokenizer its ids come from");
  // Maps a whole file read-only; an empty file gets no mapping (mmap refuses length 0).
  auto map = [](const std::string& file) {
    int fd = ::open(file.c_str(), O_RDONLY);
    if (fd < 0)
      throw Error(file, std::string("cannot open: ") + std::strerror(errno),
                  "a Megatron dataset is a PREFIX.bin and PREFIX.idx pair");
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      throw Error(file, "not a regular file");
    }
    auto m = std::make_shared<Mapping>();
    m->bytes = static_cast<size_t>(st.st_size);
    if (m->bytes > 0) {
      m->addr = ::mmap(nullptr, m->bytes, PROT_READ, MAP_SHARED, fd, 0);
      if (m->addr == MAP_FAILED) {
        m->addr = nullptr;
        ::close(fd);
        throw Error(file, std::string("mmap failed: ") + std::strerror(errno));
      }
    }
    ::close(fd);
    return m;
  };
  TokenDataset ds;
  ds.dir_ = prefix;
  ds.split_ = "all";
  ds.index_ = json::Value(json::Object{});
  Shard shard;
  shard.idx = map(idx_path);
  shard.megatron = std::make_shared<MegatronIndex>(MegatronIndex::parse(
      static_cast<const uint8_t*>(shard.idx->addr), shard.idx->bytes, idx_path));
  const MegatronIndex& ix = *shard.megatron;
  shard.bin = map(bin_path);
  ix.check_bin_size(shard.bin->bytes, bin_path);
  shard.bin_path = bin_path;
  shard.data = static_cast<const uint8_t*>(shard.bin->addr);
  shard.documents = ix.num_documents();
  shard.tokens = ix.num_tokens();
  ds.dtype_ = ix.dtype_code() == 8   ? TokenDtype::U16
              : ix.dtype_code() == 4 ? TokenDtype::I32
                                     : TokenDtype::I64;
  ds.documents_ = shard.documents;
  ds.tokens_ = shard.tokens;
  ds.vocab_size_ = options.vocab_size;
  ds.max_token_id_ = options.vocab_size - 1;
  ds.tokenizer_sha256_ = options.tokenizer_sha256;
  for (int32_t id : {options.bos_id, options.eos_id})
    if (id >= options.vocab_size)
      throw Error(path,
                  fmt::format("special id {} is not below vocab_size {}", id, options.vocab_size));
  ds.bos_id_ = options.bos_id;
  ds.eos_id_ = options.eos_id;
  ds.shards_.push_back(std::move(shard));
  return ds;
}

int64_t TokenDataset::document_start(int64_t doc) const {
  if (doc < 0 || doc > documents_)
    throw Error(dir_, fmt::format("document {} out of range [0, {}]", doc, documents_));
  if (doc == documents_) return tokens_;
  const Shard& s = shards_[shard_of(doc)];
  return s.first_token + s.begin_of(doc - s.first_doc);
}

namespace {

// Copies n ids to out and returns the largest, compared as unsigned: one pass the compiler
// vectorises, so checking every id against the vocabulary costs next to nothing over the copy.
// A negative id of a signed dtype wraps to a huge unsigned value, so the same bound refuses it.
template <typename T>
uint64_t copy_ids(const T* p, int64_t n, int32_t* out) {
  using U = std::make_unsigned_t<T>;
  U largest = 0;
  for (int64_t i = 0; i < n; ++i) {
    const U v = static_cast<U>(p[i]);
    out[i] = static_cast<int32_t>(v);
    largest = std::max(largest, v);
  }
  return largest;
}

// Token i of a .bin in its stored type, widened.
int64_t stored_id(const uint8_t* data, TokenDtype dtype, int64_t i) {
  switch (dtype) {
    case TokenDtype::U16:
      return reinterpret_cast<const uint16_t*>(data)[i];
    case TokenDtype::U32:
      return reinterpret_cast<const uint32_t*>(data)[i];
    case TokenDtype::I32:
      return reinterpret_cast<const int32_t*>(data)[i];
    case TokenDtype::I64:
      return reinterpret_cast<const int64_t*>(data)[i];
  }
  return 0;
}

}  // namespace

void TokenDataset::read(int64_t doc, int64_t offset, int64_t count, int32_t* out) const {
  if (doc < 0 || doc >= documents_)
    throw Error(dir_, fmt::format("document {} out of range [0, {})", doc, documents_));
  const Shard& s = shards_[shard_of(doc)];
  const int64_t local = doc - s.first_doc;
  const int64_t doc_begin = s.begin_of(local);
  const int64_t doc_end = s.end_of(local);
  if (offset < 0 || count < 0 || offset > doc_end - doc_begin ||
      count > doc_end - doc_begin - offset)
    throw Error(dir_, fmt::format("read past the end of document {}", doc));
  const int64_t begin = doc_begin + offset;
  const size_t width = dtype_bytes(dtype_);
  // The .bin mappings are page-aligned and every token sits at a multiple of its width, so the
  // typed pointers below are aligned.
  uint64_t largest = 0;
  switch (dtype_) {
    case TokenDtype::U16:
      largest = copy_ids(reinterpret_cast<const uint16_t*>(s.data) + begin, count, out);
      break;
    case TokenDtype::U32:
      largest = copy_ids(reinterpret_cast<const uint32_t*>(s.data) + begin, count, out);
      break;
    case TokenDtype::I32:
      largest = copy_ids(reinterpret_cast<const int32_t*>(s.data) + begin, count, out);
      break;
    case TokenDtype::I64:
      largest = copy_ids(reinterpret_cast<const int64_t*>(s.data) + begin, count, out);
      break;
  }
  if (count > 0 && largest >= static_cast<uint64_t>(vocab_size_)) {
    int64_t i = 0, id = 0;
    for (; i < count; ++i) {
      id = stored_id(s.data, dtype_, begin + i);
      if (id < 0 || id >= vocab_size_) break;
    }
    throw Error(s.bin_path,
                fmt::format("token id {} at byte offset {} (document {}) is {}", id,
                            (begin + i) * static_cast<int64_t>(width), doc,
                            id < 0 ? std::string("negative")
                                   : fmt::format("not below vocab_size {}", vocab_size_)),
                s.megatron ? "the data was tokenized with another tokenizer than data.tokenizer, "
                             "or the .bin is damaged"
                           : "the shard is damaged or from another tokenizer; run dus prepare "
                             "again");
  }
}

int64_t TokenDataset::scan_max_token_id() const {
  int64_t best = -1;
  for (const Shard& s : shards_)
    for (int64_t i = 0; i < s.tokens; ++i) best = std::max(best, stored_id(s.data, dtype_, i));
  return best;
}

}  // namespace dus
