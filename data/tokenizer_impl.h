// What each tokenizer format implements behind dus::Tokenizer (data/tokenizer.h): the
// sentencepiece model, a Hugging Face tokenizer.json, a Mistral Tekken file.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace dus {

/// The largest vocabulary (max id + 1) a loader accepts. Loaders keep dense per-id tables, so a
/// damaged id near INT32_MAX would otherwise ask for tens of GB; the largest released
/// vocabularies have about 2.6e5 ids, 64 times below this.
constexpr int64_t kMaxTokenizerVocab = int64_t{1} << 24;

/// Special ids and size, filled by the loader; -1 means the model has none.
struct TokenizerSpecials {
  int32_t vocab_size = 0;  ///< max id + 1 over every piece the model can emit
  int32_t bos_id = -1, eos_id = -1, unk_id = -1, pad_id = -1;
  /// Whether the Hugging Face tokenizer puts BOS first when asked for special tokens
  /// (LlamaTokenizer's add_bos_token for sentencepiece; Tekken adds it too).
  bool adds_bos = true;
};

class TokenizerImpl {
 public:
  virtual ~TokenizerImpl() = default;
  /// Replaces *ids with the ids of a whole document (no BOS/EOS). Must be const-thread-safe.
  virtual void encode(std::string_view text, std::vector<int32_t>* ids) const = 0;
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
  virtual std::string id_to_piece(int32_t id) const = 0;
  /// UTF-8 bytes each id (0 .. vocab_size - 1) adds to decode()'s text: as the first text
  /// token of a document (right after BOS, EOS or at the start) or anywhere else. Special and
  /// control ids add 0. See Tokenizer::token_byte_lengths.
  virtual std::vector<int32_t> token_byte_lengths(bool at_document_start) const = 0;
  TokenizerSpecials specials;
};

}  // namespace dus
