#include "data/added_vocabulary.h"

#include <algorithm>

#include "data/unicode_text.h"

namespace dus {

void AddedVocabulary::add(AddedToken token) {
  if (token.content.empty()) return;
  auto& bucket = by_first_byte_[static_cast<unsigned char>(token.content[0])];
  tokens_.push_back(std::move(token));
  bucket.push_back(static_cast<uint32_t>(tokens_.size() - 1));
  // Stable: among equal contents the first added wins, as the Aho-Corasick pattern order does.
  std::stable_sort(bucket.begin(), bucket.end(), [this](uint32_t a, uint32_t b) {
    return tokens_[a].content.size() > tokens_[b].content.size();
  });
}

void AddedVocabulary::split(std::string_view text, std::vector<Segment>* out) const {
  out->clear();
  size_t plain_start = 0;  // start of the plain text not yet emitted
  size_t pos = 0;
  while (pos < text.size()) {
    const auto& bucket = by_first_byte_[static_cast<unsigned char>(text[pos])];
    const AddedToken* hit = nullptr;
    for (uint32_t i : bucket) {
      const std::string& c = tokens_[i].content;
      if (text.compare(pos, c.size(), c) == 0) {
        hit = &tokens_[i];
        break;
      }
    }
    if (!hit) {
      ++pos;
      continue;
    }
    size_t start = pos, stop = pos + hit->content.size();
    if (hit->lstrip) {
      // Back over the whitespace before the match, but not into the previous segment.
      size_t s = start, cut = start;
      while (s > plain_start) {
        size_t b = s - 1;
        while (b > plain_start && (static_cast<unsigned char>(text[b]) & 0xC0) == 0x80) --b;
        size_t q = b;
        if (!is_unicode_whitespace(next_code_point(text, &q))) break;
        s = b;
        cut = b;
      }
      start = cut;
    }
    if (hit->rstrip) {
      while (stop < text.size()) {
        size_t q = stop;
        if (!is_unicode_whitespace(next_code_point(text, &q))) break;
        stop = q;
      }
    }
    if (plain_start < start) out->push_back({-1, plain_start, start});
    out->push_back({hit->id, start, stop});
    plain_start = pos = stop;
  }
  if (plain_start < text.size()) out->push_back({-1, plain_start, text.size()});
}

}  // namespace dus
