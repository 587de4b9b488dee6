// UTF-8 facts the byte-level tokenizers need: validity (the regexes run with PCRE2's own check
// off, so text is checked once here), Unicode normalization (utf8proc) and White_Space.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace dus {

/// Length of the well-formed UTF-8 sequence starting at p (at most n bytes available), 0 when
/// it is not one.
size_t utf8_sequence_length(const unsigned char* p, size_t n);
/// Byte offset of the first invalid UTF-8 sequence (overlong forms, surrogates and code points
/// above U+10FFFF are invalid), or npos when the text is valid.
size_t find_invalid_utf8(std::string_view text);

/// Decodes the code point at text[*pos] (valid UTF-8 assumed) and advances *pos past it.
char32_t next_code_point(std::string_view text, size_t* pos);
/// Appends the UTF-8 form of a code point.
void append_utf8(char32_t cp, std::string* out);

/// Unicode White_Space (what Rust's char::is_whitespace and Oniguruma's \s test).
bool is_unicode_whitespace(char32_t cp);

enum class NormalForm { NFC, NFKC };
/// The text in the given normal form (utf8proc); `where` names the caller in errors.
std::string normalize_unicode(std::string_view text, NormalForm form, const std::string& where);

}  // namespace dus
