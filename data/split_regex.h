// A pre-tokenizer regex: PCRE2 (UTF + Unicode properties, JIT-compiled) standing in for the
// Oniguruma (Hugging Face tokenizers) and fancy-regex (tiktoken) engines the tokenizer files
// were written for. Their \s is Unicode White_Space, which includes U+0085 (NEL); PCRE2's does
// not, so \s and \S are rewritten; \w is rewritten to Oniguruma's classes; \b and \B, whose
// word notion differs, are refused.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dus {

class SplitRegex {
 public:
  /// pattern: as the file writes it; literal: match the pattern's text verbatim (a Split
  /// pre-tokenizer's String pattern); where: the file and JSON path, for errors.
  SplitRegex(const std::string& pattern, bool literal, const std::string& where);

  /// The non-overlapping, non-empty matches [begin, end) from left to right (an empty match
  /// moves the search on by one character, as Oniguruma's and Rust's find_iter do). The text
  /// must be valid UTF-8 (checked by the caller). Thread-safe: match data is per thread.
  void find_all(std::string_view text, std::vector<std::pair<size_t, size_t>>* matches) const;

  /// The pattern after the rewrite, for tests and error messages.
  const std::string& pcre2_pattern() const { return translated_; }

 private:
  std::shared_ptr<void> code_;  // pcre2_code_8, freed with pcre2_code_free_8
  std::string where_, translated_;
};

/// The rewrite described above; throws dus::Error naming `where` for \b, \B or \S inside [].
std::string translate_tokenizer_regex(const std::string& pattern, const std::string& where);

}  // namespace dus
