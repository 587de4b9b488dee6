// The on-disk form of a prepared dataset, write side. A dataset is a directory:
//
//   index.json         what is in it (written last: a directory without it is not a dataset)
//   train-00000.bin    document tokens back to back, little-endian uint16 or uint32, no BOS/EOS
//   train-00000.idx    little-endian uint64 per document: its end offset (in tokens) in the .bin
//   val-00000.bin/idx  the held-out split, same form
//
// BOS/EOS are not stored: the loader inserts them, so the BOS policy is a training choice, not
// a preparation choice. Shards close at `shard_tokens`; a document never spans two shards.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "core/json.h"

namespace dus {

/// U16/U32: what `dus prepare` writes. I32/I64: Megatron indexed datasets (read only; the
/// writer refuses them).
enum class TokenDtype { U16, U32, I32, I64 };
/// uint16 when every id fits (vocab <= 65536), else uint32.
TokenDtype dtype_for_vocab(int64_t vocab_size);
const char* dtype_name(TokenDtype dtype);
/// Parses "uint16"/"uint32"; `where` names the file and key in the error.
TokenDtype parse_token_dtype(const std::string& name, const std::string& where);
inline size_t dtype_bytes(TokenDtype dtype) {
  return dtype == TokenDtype::U16 ? 2 : dtype == TokenDtype::I64 ? 8 : 4;
}

enum class Split { Train = 0, Val = 1 };
const char* split_name(Split split);

/// Appends documents to the shards of both splits of one dataset directory.
class DatasetWriter {
 public:
  /// `dir` must exist. shard_tokens: a shard is closed once it holds at least this many.
  DatasetWriter(std::string dir, TokenDtype dtype, int64_t shard_tokens);
  ~DatasetWriter();
  DatasetWriter(const DatasetWriter&) = delete;
  DatasetWriter& operator=(const DatasetWriter&) = delete;

  /// One document's tokens (ids must be >= 0 and fit the dtype; checked).
  void add(Split split, const int32_t* ids, size_t count);
  /// Flushes, fsyncs and closes every shard; returns {"train": {...}, "val": {...}} for
  /// index.json: documents, tokens, max_token_id and the shard list of each split.
  json::Value finish();

 private:
  struct SplitState {
    FILE* bin = nullptr;
    FILE* idx = nullptr;
    std::string bin_name, idx_name;
    int64_t shard_tokens = 0, shard_docs = 0;
    int64_t documents = 0, tokens = 0, max_token_id = -1;
    json::Array shards;
  };
  void open_shard(Split split);
  void close_shard(Split split);

  std::string dir_;
  TokenDtype dtype_;
  int64_t shard_tokens_;
  SplitState splits_[2];
  std::vector<uint8_t> scratch_;
  bool finished_ = false;
};

/// Writes a complete dataset from in-memory token documents (tests, tools): shards, then
/// index.json with the given tokenizer fields. The directory is created.
void write_token_dataset(const std::string& dir, const std::vector<std::vector<int32_t>>& train,
                         const std::vector<std::vector<int32_t>>& val, json::Value tokenizer,
                         int64_t vocab_size, int64_t shard_tokens = 1 << 28);

}  // namespace dus
