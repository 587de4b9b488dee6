// Hugging Face tokenizers' added tokens (specials like <|begin_of_text|> and extra pieces):
// found in the text before normalization and pre-tokenization, leftmost-longest (the
// AddedVocabulary's Aho-Corasick MatchKind::LeftmostLongest), each becoming its one id.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace dus {

struct AddedToken {
  std::string content;  ///< the text matched (already normalized for normalized tokens)
  int32_t id = -1;
  bool lstrip = false;  ///< the match also takes the whitespace before it
  bool rstrip = false;  ///< the match also takes the whitespace after it
};

class AddedVocabulary {
 public:
  void add(AddedToken token);
  bool empty() const { return tokens_.empty(); }

  /// A piece of text: an added token (id >= 0) or plain text (id -1), as [begin, end).
  struct Segment {
    int32_t id;
    size_t begin, end;
  };
  /// Cuts text into segments; plain segments are never empty. Text must be valid UTF-8.
  void split(std::string_view text, std::vector<Segment>* out) const;

 private:
  std::vector<AddedToken> tokens_;
  /// Token indices by first byte, longest first: the first that matches at a position is the
  /// longest one there.
  std::array<std::vector<uint32_t>, 256> by_first_byte_;
};

}  // namespace dus
