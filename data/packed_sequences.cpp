#include "data/packed_sequences.h"

#include <fmt/format.h>

#include "core/error.h"

namespace dus {

BosPolicy parse_bos_policy(const std::string& text) {
  if (text == "none") return BosPolicy::None;
  if (text == "document" || text == "per_document") return BosPolicy::PerDocument;
  throw Error("bos", "unknown BOS policy '" + text + "'",
              "use document (BOS before every document) or none");
}

const char* bos_policy_name(BosPolicy policy) {
  return policy == BosPolicy::None ? "none" : "document";
}

EosPolicy parse_eos_policy(const std::string& text, const std::string& where) {
  if (text == "add") return EosPolicy::Add;
  if (text == "data") return EosPolicy::Data;
  throw Error(where, "unknown EOS policy '" + text + "'",
              "use add (the packer appends EOS after each document) or data (the documents "
              "already end with EOS)");
}

const char* eos_policy_name(EosPolicy policy) {
  return policy == EosPolicy::Add ? "add" : "data";
}

PackedSequences::PackedSequences(const TokenDataset* dataset, int64_t seq_len, BosPolicy bos,
                                 EosPolicy eos)
    : dataset_(dataset),
      seq_len_(seq_len),
      bos_(bos),
      eos_(eos),
      bos_id_(dataset->bos_id()),
      eos_id_(dataset->eos_id()) {
  const std::string where = dataset->dir() + " (" + dataset->split() + ")";
  if (seq_len_ < 1) throw Error(where, "seq_len must be at least 1");
  if (eos_ == EosPolicy::Add && eos_id_ < 0)
    throw Error(where, "the tokenizer has no EOS id, which separates packed documents",
                "use a tokenizer with an EOS piece");
  if (bos_ == BosPolicy::PerDocument && bos_id_ < 0)
    throw Error(where, "BOS policy 'document' but the tokenizer has no BOS id", "use bos: none");
  if (eos_ == EosPolicy::Data && eos_id_ >= 0) {
    // One document is enough to catch data made without EOD (or a wrong tokenizer) before a
    // run trains on documents that run into each other.
    for (int64_t d = 0; d < dataset->num_documents(); ++d) {
      const int64_t n = dataset->document_length(d);
      if (n == 0) continue;
      int32_t last = 0;
      dataset->read(d, n - 1, 1, &last);
      if (last != eos_id_)
        throw Error(where,
                    fmt::format("eos: data, but document {} ends with token {}, not the "
                                "tokenizer's EOS id {}",
                                d, last, eos_id_),
                    "use eos: add when the documents carry no end-of-document token, or set "
                    "data.tokenizer to the tokenizer the data was made with");
      break;
    }
  }
  extra_ = (bos_ == BosPolicy::PerDocument ? 1 : 0) + (eos_ == EosPolicy::Add ? 1 : 0);
  stream_length_ = dataset->num_tokens() + dataset->num_documents() * extra_;
  windows_ = stream_length_ > seq_len_ ? (stream_length_ - 1) / seq_len_ : 0;
  if (windows_ == 0)
    throw Error(where,
                fmt::format("holds {} tokens with separators, fewer than one sequence of {}",
                            stream_length_, seq_len_ + 1),
                "use a shorter seq_len or more data");
}

void PackedSequences::fill(int64_t k, int32_t* out) const {
  if (k < 0 || k >= windows_)
    throw Error(dataset_->dir(), fmt::format("window {} out of range [0, {})", k, windows_));
  int64_t pos = k * seq_len_;
  int64_t remaining = seq_len_ + 1;
  // Last document whose stream start <= pos.
  int64_t lo = 0, hi = dataset_->num_documents() - 1;
  while (lo < hi) {
    int64_t mid = lo + (hi - lo + 1) / 2;
    if (stream_start(mid) <= pos)
      lo = mid;
    else
      hi = mid - 1;
  }
  int64_t doc = lo;
  int64_t offset = pos - stream_start(doc);  // within [BOS] tokens EOS
  while (remaining > 0) {
    const int64_t length = dataset_->document_length(doc);
    if (bos_ == BosPolicy::PerDocument) {
      if (offset == 0) {
        *out++ = bos_id_;
        --remaining;
        ++offset;
        if (remaining == 0) break;
      }
      offset -= 1;  // now relative to the first token
    }
    if (offset < length) {
      int64_t n = std::min(remaining, length - offset);
      dataset_->read(doc, offset, n, out);
      out += n;
      remaining -= n;
      offset += n;
    }
    if (eos_ == EosPolicy::Add && remaining > 0 && offset == length) {
      *out++ = eos_id_;
      --remaining;
    }
    ++doc;
    offset = 0;
  }
}

}  // namespace dus
