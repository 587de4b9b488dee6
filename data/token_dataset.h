// A prepared dataset, read side: index.json validated key by key, shards memory-mapped (the
// page cache serves them; nothing is copied at open), documents addressed by global index.
// Format: see data/dataset_writer.h.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/dataset_writer.h"
#include "model/json.h"

namespace dus {

class TokenDataset {
 public:
  /// Opens DIR/index.json and the shards of one split ("train" or "val"). Throws dus::Error
  /// naming the file and key for a missing or malformed index, a missing shard, a shard
  /// whose size disagrees with the index, or a .idx whose end offsets decrease or leave the
  /// shard (naming the document and its byte offset in the .idx).
  static TokenDataset open(const std::string& dir, const std::string& split = "train");

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
  /// naming the shard file and byte offset for a stored id >= vocab_size().
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
    const uint64_t* ends = nullptr;  // per document: end offset in the shard
    std::string bin_path;            // for errors naming the file
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
