// Packing a tokenized split into fixed-length training sequences. The split is read as one
// stream: for each document [BOS] tokens EOS (BOS per the policy; EOS added unless the
// documents already end with it, so the model learns where a document ends either way). Window k is
// stream[k*T, k*T + T + 1): T + 1 tokens, the input being the first T and the targets the last T;
// consecutive windows share one token, so every stream token except the first is a target exactly
// once. The stream's last partial window is dropped. Nothing is precomputed per window; a window is
// located by binary search over the documents' stream offsets (O(log documents)).
#pragma once

#include <cstdint>
#include <string>

#include "data/token_dataset.h"

namespace dus {

enum class BosPolicy {
  None,         ///< no BOS; documents separated by EOS only
  PerDocument,  ///< BOS before every document (Llama/Mistral pretraining convention)
};
BosPolicy parse_bos_policy(const std::string& text);
const char* bos_policy_name(BosPolicy policy);

enum class EosPolicy {
  Add,   ///< the packer appends EOS after every document (`dus prepare` stores none)
  Data,  ///< the documents already end with EOS (Megatron's preprocess_data.py --append-eod)
};
/// "add" or "data"; `where` names the recipe key in the error.
EosPolicy parse_eos_policy(const std::string& text, const std::string& where = "eos");
const char* eos_policy_name(EosPolicy policy);

class PackedSequences {
 public:
  /// Throws dus::Error when the dataset has no EOS id (under EosPolicy::Add), or no BOS id
  /// under PerDocument, or is shorter than one window; under EosPolicy::Data, when the first
  /// non-empty document does not end with the EOS id (the data was made without EOD).
  PackedSequences(const TokenDataset* dataset, int64_t seq_len, BosPolicy bos,
                  EosPolicy eos = EosPolicy::Add);

  int64_t num_windows() const { return windows_; }
  int64_t window_tokens() const { return seq_len_ + 1; }
  int64_t stream_length() const { return stream_length_; }
  /// Writes window k's seq_len + 1 tokens to out.
  void fill(int64_t k, int32_t* out) const;

 private:
  int64_t stream_start(int64_t doc) const {  // stream offset of document doc
    return dataset_->document_start(doc) + doc * extra_;
  }
  const TokenDataset* dataset_;
  int64_t seq_len_;
  BosPolicy bos_;
  EosPolicy eos_;
  int32_t bos_id_, eos_id_;
  int64_t extra_;  // tokens added per document (EOS unless in the data, BOS when PerDocument)
  int64_t stream_length_ = 0, windows_ = 0;
};

}  // namespace dus
