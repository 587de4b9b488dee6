#include "data/split_regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <fmt/format.h>

#include "core/error.h"

namespace dus {

namespace {

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  pcre2_get_error_message(code, buffer, sizeof(buffer));
  return reinterpret_cast<const char*>(buffer);
}

// Match data, match context and JIT stack of one thread. One ovector pair is enough: only the
// whole match is read. The JIT stack grows to 16 MiB because `\s+(?!\S)` over a long run of
// spaces backtracks once per character and the default 32 KiB stack overflows on documents
// with tens of thousands of spaces in a row.
struct ThreadMatch {
  pcre2_match_data* data = pcre2_match_data_create(1, nullptr);
  pcre2_match_context* context = pcre2_match_context_create(nullptr);
  pcre2_jit_stack* stack = pcre2_jit_stack_create(32 * 1024, 16 * 1024 * 1024, nullptr);
  ThreadMatch() { pcre2_jit_stack_assign(context, nullptr, stack); }
  ~ThreadMatch() {
    pcre2_jit_stack_free(stack);
    pcre2_match_context_free(context);
    pcre2_match_data_free(data);
  }
};

}  // namespace

std::string translate_tokenizer_regex(const std::string& p, const std::string& where) {
  static const char* kWord = "\\p{L}\\p{M}\\p{Nd}\\p{Pc}";
  std::string out;
  int class_depth = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      char e = p[++i];
      const bool in_class = class_depth > 0;
      switch (e) {
        case 's':
          out += in_class ? "\\s\\x{85}" : "[\\s\\x{85}]";
          break;
        case 'S':
          if (in_class)
            throw Error(where, "\\S inside a character class is not supported",
                        "Unicode White_Space differs between Oniguruma and PCRE2 there");
          out += "[^\\s\\x{85}]";
          break;
        case 'w':
          out += in_class ? std::string(kWord) : "[" + std::string(kWord) + "]";
          break;
        case 'W':
          if (in_class) throw Error(where, "\\W inside a character class is not supported");
          out += "[^" + std::string(kWord) + "]";
          break;
        case 'b':
        case 'B':
          throw Error(where, std::string("word boundary \\") + e + " is not supported",
                      "its notion of a word character differs between the regex engines");
        default:
          out += '\\';
          out += e;
      }
      continue;
    }
    if (c == '[') {
      ++class_depth;
      out += c;
      // A ']' right after '[' or '[^' is a literal member, not the end of the class.
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      if (i + 1 < p.size() && p[i + 1] == ']') out += p[++i];
      continue;
    }
    if (c == ']' && class_depth > 0) --class_depth;
    out += c;
  }
  return out;
}

SplitRegex::SplitRegex(const std::string& pattern, bool literal, const std::string& where)
    : where_(where) {
  translated_ = literal ? pattern : translate_tokenizer_regex(pattern, where);
  int error = 0;
  PCRE2_SIZE offset = 0;
  uint32_t options = PCRE2_UTF | PCRE2_UCP | (literal ? PCRE2_LITERAL : 0);
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated_.data()),
                                   translated_.size(), options, &error, &offset, nullptr);
  if (!code)
    throw Error(where,
                fmt::format("regex does not compile in PCRE2 at offset {}: {}", offset,
                            pcre2_message(error)),
                "pattern as given to PCRE2: " + translated_);
  // JIT is a speed-up only: a pattern the JIT refuses still matches (interpreted).
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  code_ =
      std::shared_ptr<void>(code, [](void* c) { pcre2_code_free(static_cast<pcre2_code*>(c)); });
}

void SplitRegex::find_all(std::string_view text,
                          std::vector<std::pair<size_t, size_t>>* matches) const {
  thread_local ThreadMatch tm;
  const auto* code = static_cast<const pcre2_code*>(code_.get());
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  const size_t n = text.size();
  size_t start = 0;
  while (start <= n) {
    // The caller validated the UTF-8 once; PCRE2's own check would rescan the whole subject at
    // every call, making the loop quadratic.
    int rc = pcre2_match(code, subject, n, start, PCRE2_NO_UTF_CHECK, tm.data, tm.context);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0)
      throw Error(where_,
                  fmt::format("regex match failed at byte {}: {}", start, pcre2_message(rc)));
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(tm.data);
    size_t b = ov[0], e = ov[1];
    if (e > b) {
      matches->emplace_back(b, e);
      start = e;
    } else {
      // Empty match: step over one whole UTF-8 character.
      start = e + 1;
      while (start < n && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) ++start;
    }
  }
}

}  // namespace dus
