// A prepared dataset, read side: index.json validated key by key, shards memory-mapped (the
// page cache serves them; nothing is copied at open), documents addressed by global index.
// Format: see data/dataset_writer.h. The same interface presents a Megatron indexed dataset
// (a .bin/.idx pair, data/megatron_index.h) as one shard, so packing and mixing treat both
// alike.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/json.h"
#include "data/dataset_writer.h"
#include "data/megatron_index.h"

namespace dus {

/// What a Megatron pair does not record and the recipe supplies: its tokenizer.
struct MegatronOptions {
  int64_t vocab_size = 0;        ///< ids must be below it (checked on every read); 0 = unknown
  int32_t bos_id = -1;           ///< the tokenizer's BOS (-1: none)
  int32_t eos_id = -1;           ///< the tokenizer's EOS (-1: none)
  std::string tokenizer_sha256;  ///< fingerprint, compared with the other sources'
};

class TokenDataset {
 public:
  /// Opens DIR/index.json and the shards of one split ("train" or "val"). Throws dus::Error
  /// naming the file and key for a missing or malformed index, a missing shard, a shard
  /// whose size disagrees with the index, or a .idx whose end offsets decrease or leave the
  /// shard (naming the document and its byte offset in the .idx).
  static TokenDataset open(const std::string& dir, const std::string& split = "train");
  /// Opens a Megatron indexed dataset: `path` is PREFIX, PREFIX.bin or PREFIX.idx. Both files
  /// are memory-mapped; the .idx is validated in full (MegatronIndex::parse) and the .bin's
  /// length checked against it. A document is the concatenation of its sequences; the whole
  /// pair is one split, named "all". max_token_id() is vocab_size - 1, the bound read()
  /// enforces (the files record no maximum). Throws dus::Error naming the file.
  static TokenDataset open_megatron(const std::string& path, const MegatronOptions& options);

  const std::string& dir() const { return dir_; }
  const std::string& split() const { return split_; }
  TokenDtype dtype() const { return dtype_; }
  int64_t num_documents() const { return documents_; }
  int64_t num_tokens() const { return tokens_; }
  int64_t vocab_size() const { return vocab_size_; }
  int64_t max_token_id() const { return max_token_id_; }
  const std::string& tokenizer_sha256() const { return tokenizer_sha256_; }
  int32_t bos_id() const { return bos_id_; }  ///< from index.json; -1 when none
  int32_t eos_id() const { return eos_id_; }
  const json::Value& index() const { return index_; }

  /// Offset of document `doc`'s first token in the split's token stream (doc == num_documents
  /// gives num_tokens). O(log shards).
  int64_t document_start(int64_t doc) const;
  int64_t document_length(int64_t doc) const {
    return document_start(doc + 1) - document_start(doc);
  }
  /// Copies tokens [offset, offset + count) of document `doc` into out. Throws dus::Error
  /// naming the shard file and byte offset for a stored id >= vocab_size() (or < 0, for the
  /// signed dtypes of Megatron files).
  void read(int64_t doc, int64_t offset, int64_t count, int32_t* out) const;
  /// Largest id actually stored, by scanning every token (slow; for `verify`-style checks).
  int64_t scan_max_token_id() const;

 private:
  struct Mapping;
  struct Shard {
    std::shared_ptr<Mapping> bin, idx;
    int64_t documents = 0, tokens = 0;
    int64_t first_doc = 0, first_token = 0;  // global position of the shard's start
    const uint8_t* data = nullptr;
    const uint64_t* ends = nullptr;           // per document: end offset in the shard (dus shards)
    std::shared_ptr<MegatronIndex> megatron;  // instead of `ends`, for a Megatron pair
    std::string bin_path;                     // for errors naming the file
    int64_t end_of(int64_t local) const {     // token offset in the shard where `local` ends
      return ends ? static_cast<int64_t>(ends[local]) : megatron->document_start(local + 1);
    }
    int64_t begin_of(int64_t local) const { return local == 0 ? 0 : end_of(local - 1); }
  };
  size_t shard_of(int64_t doc) const;

  std::string dir_, split_, tokenizer_sha256_;
  json::Value index_;
  TokenDtype dtype_ = TokenDtype::U16;
  int64_t documents_ = 0, tokens_ = 0, vocab_size_ = 0, max_token_id_ = -1;
  int32_t bos_id_ = -1, eos_id_ = -1;
  std::vector<Shard> shards_;
};

}  // namespace dus
