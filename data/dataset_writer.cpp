#include "data/dataset_writer.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "core/error.h"
#include "core/file_util.h"

namespace dus {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "shards are little-endian and written by memcpy; add byte swapping for big-endian");

TokenDtype dtype_for_vocab(int64_t vocab_size) {
  return vocab_size <= 65536 ? TokenDtype::U16 : TokenDtype::U32;
}

const char* dtype_name(TokenDtype dtype) {
  switch (dtype) {
    case TokenDtype::U16:
      return "uint16";
    case TokenDtype::U32:
      return "uint32";
    case TokenDtype::I32:
      return "int32";
    case TokenDtype::I64:
      return "int64";
  }
  return "?";
}

TokenDtype parse_token_dtype(const std::string& name, const std::string& where) {
  if (name == "uint16") return TokenDtype::U16;
  if (name == "uint32") return TokenDtype::U32;
  throw Error(where, "unknown token dtype '" + name + "'", "expected uint16 or uint32");
}

const char* split_name(Split split) {
  return split == Split::Train ? "train" : "val";
}

namespace {
void write_all(FILE* f, const void* data, size_t bytes, const std::string& path) {
  if (bytes && std::fwrite(data, 1, bytes, f) != bytes)
    throw Error(path, std::string("write failed: ") + std::strerror(errno), "is the disk full?");
}
void close_synced(FILE* f, const std::string& path) {
  if (std::fflush(f) != 0 || ::fsync(fileno(f)) != 0) {
    int err = errno;
    std::fclose(f);
    throw Error(path, std::string("flush/fsync failed: ") + std::strerror(err),
                "is the disk full?");
  }
  if (std::fclose(f) != 0) throw Error(path, std::string("close failed: ") + std::strerror(errno));
}
}  // namespace

DatasetWriter::DatasetWriter(std::string dir, TokenDtype dtype, int64_t shard_tokens)
    : dir_(std::move(dir)), dtype_(dtype), shard_tokens_(shard_tokens) {
  if (shard_tokens_ <= 0) throw Error("shard_tokens", "must be positive");
  if (dtype_ != TokenDtype::U16 && dtype_ != TokenDtype::U32)
    throw Error(dir_, std::string("cannot write token dtype ") + dtype_name(dtype_),
                "prepared datasets store uint16 or uint32");
}

DatasetWriter::~DatasetWriter() {
  for (auto& s : splits_) {
    if (s.bin) std::fclose(s.bin);
    if (s.idx) std::fclose(s.idx);
  }
}

void DatasetWriter::open_shard(Split split) {
  SplitState& s = splits_[static_cast<int>(split)];
  char stem[64];
  std::snprintf(stem, sizeof stem, "%s-%05zu", split_name(split), s.shards.size());
  s.bin_name = std::string(stem) + ".bin";
  s.idx_name = std::string(stem) + ".idx";
  s.bin = std::fopen((dir_ + "/" + s.bin_name).c_str(), "wb");
  s.idx = std::fopen((dir_ + "/" + s.idx_name).c_str(), "wb");
  if (!s.bin || !s.idx)
    throw Error(dir_ + "/" + s.bin_name,
                std::string("cannot create shard: ") + std::strerror(errno));
  std::setvbuf(s.bin, nullptr, _IOFBF, 1 << 20);
  s.shard_tokens = 0;
  s.shard_docs = 0;
}

void DatasetWriter::close_shard(Split split) {
  SplitState& s = splits_[static_cast<int>(split)];
  if (!s.bin) return;
  close_synced(s.bin, dir_ + "/" + s.bin_name);
  close_synced(s.idx, dir_ + "/" + s.idx_name);
  s.bin = s.idx = nullptr;
  s.shards.push_back(json::Object{{"file", s.bin_name},
                                  {"index", s.idx_name},
                                  {"documents", s.shard_docs},
                                  {"tokens", s.shard_tokens}});
}

void DatasetWriter::add(Split split, const int32_t* ids, size_t count) {
  if (finished_) throw Error(dir_, "DatasetWriter::add after finish");
  SplitState& s = splits_[static_cast<int>(split)];
  if (!s.bin) open_shard(split);
  const int64_t limit = dtype_ == TokenDtype::U16 ? 65535 : INT32_MAX;
  scratch_.resize(count * dtype_bytes(dtype_));
  for (size_t i = 0; i < count; ++i) {
    const int32_t id = ids[i];
    if (id < 0 || id > limit)
      throw Error(dir_, fmt::format("token id {} does not fit {}", id, dtype_name(dtype_)));
    if (id > s.max_token_id) s.max_token_id = id;
    if (dtype_ == TokenDtype::U16) {
      uint16_t v = static_cast<uint16_t>(id);
      std::memcpy(&scratch_[2 * i], &v, 2);
    } else {
      uint32_t v = static_cast<uint32_t>(id);
      std::memcpy(&scratch_[4 * i], &v, 4);
    }
  }
  write_all(s.bin, scratch_.data(), scratch_.size(), dir_ + "/" + s.bin_name);
  s.shard_tokens += static_cast<int64_t>(count);
  uint64_t end = static_cast<uint64_t>(s.shard_tokens);
  write_all(s.idx, &end, sizeof end, dir_ + "/" + s.idx_name);
  ++s.shard_docs;
  ++s.documents;
  s.tokens += static_cast<int64_t>(count);
  if (s.shard_tokens >= shard_tokens_) close_shard(split);
}

json::Value DatasetWriter::finish() {
  json::Object out;
  for (Split split : {Split::Train, Split::Val}) {
    close_shard(split);
    SplitState& s = splits_[static_cast<int>(split)];
    out.emplace_back(split_name(split), json::Object{{"documents", s.documents},
                                                     {"tokens", s.tokens},
                                                     {"max_token_id", s.max_token_id},
                                                     {"shards", s.shards}});
  }
  finished_ = true;
  return out;
}

void write_token_dataset(const std::string& dir, const std::vector<std::vector<int32_t>>& train,
                         const std::vector<std::vector<int32_t>>& val, json::Value tokenizer,
                         int64_t vocab_size, int64_t shard_tokens) {
  std::filesystem::create_directories(dir);
  const TokenDtype dtype = dtype_for_vocab(vocab_size);
  DatasetWriter writer(dir, dtype, shard_tokens);
  int64_t tokens = 0;
  for (const auto& d : train) {
    writer.add(Split::Train, d.data(), d.size());
    tokens += static_cast<int64_t>(d.size());
  }
  for (const auto& d : val) {
    writer.add(Split::Val, d.data(), d.size());
    tokens += static_cast<int64_t>(d.size());
  }
  json::Value splits = writer.finish();
  json::Value index = json::Object{
      {"format", "dus-token-dataset"},
      {"version", 1},
      {"dtype", dtype_name(dtype)},
      {"vocab_size", vocab_size},
      {"documents", static_cast<int64_t>(train.size() + val.size())},
      {"tokens", tokens},
      {"tokenizer", std::move(tokenizer)},
      {"splits", std::move(splits)},
  };
  write_file_atomic(dir + "/index.json", json::dump(index, 2) + "\n");
}

}  // namespace dus
