#include "data/token_bytes.h"

#include <fmt/format.h>

#include "core/error.h"
#include "data/tokenizer.h"

namespace dus {

TokenBytes TokenBytes::from_tokenizer(const Tokenizer& tokenizer) {
  return TokenBytes(tokenizer.token_byte_lengths(false), tokenizer.token_byte_lengths(true),
                    tokenizer.bos_id(), tokenizer.eos_id());
}

TokenBytes::TokenBytes(std::vector<int32_t> mid, std::vector<int32_t> start, int32_t bos_id,
                       int32_t eos_id)
    : mid_(std::move(mid)), start_(std::move(start)), bos_id_(bos_id), eos_id_(eos_id) {
  if (start_.size() != mid_.size())
    throw Error("TokenBytes", fmt::format("the two byte tables differ in length ({} vs {})",
                                          mid_.size(), start_.size()));
}

int64_t TokenBytes::target_bytes(const int64_t* tokens, int64_t n, const std::string& where) const {
  int64_t bytes = 0;
  const auto vocab = static_cast<int64_t>(mid_.size());
  for (int64_t i = 1; i < n; ++i) {
    const int64_t id = tokens[i], prev = tokens[i - 1];
    if (id < 0 || id >= vocab)
      throw Error(
          where,
          fmt::format("token id {} at position {} is outside the tokenizer's {} ids", id, i, vocab),
          "data.tokenizer must be the tokenizer the datasets were prepared with");
    const bool document_start = prev == bos_id_ || prev == eos_id_;
    bytes += document_start ? start_[id] : mid_[id];
  }
  return bytes;
}

}  // namespace dus
