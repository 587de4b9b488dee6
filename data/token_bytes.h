// UTF-8 bytes of the text a stretch of token ids encodes, for bits per byte: the held-out loss
// in bits divided by the bytes of the text scored, a number that runs with different tokenizers
// can compare (a loss per token cannot: their tokens hold different amounts of text).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dus {

class Tokenizer;

class TokenBytes {
 public:
  /// The tokenizer's byte table (Tokenizer::token_byte_lengths, both forms) and its BOS/EOS,
  /// the document boundaries of a packed stream.
  static TokenBytes from_tokenizer(const Tokenizer& tokenizer);
  /// mid[id]: bytes of id inside a document; start[id]: as a document's first text token.
  TokenBytes(std::vector<int32_t> mid, std::vector<int32_t> start, int32_t bos_id, int32_t eos_id);
  TokenBytes() = default;

  /// Bytes of the text that the targets of one packed window encode: tokens[1 .. n) (tokens[0]
  /// is an input only, never scored). A target right after BOS or EOS starts a document and
  /// counts as decode() of that document counts it (without sentencepiece's dummy-prefix
  /// space). BOS and EOS themselves count 0. Throws dus::Error naming `where` for an id
  /// outside the tokenizer's vocabulary.
  int64_t target_bytes(const int64_t* tokens, int64_t n, const std::string& where) const;

 private:
  std::vector<int32_t> mid_, start_;
  int32_t bos_id_ = -1, eos_id_ = -1;
};

}  // namespace dus
