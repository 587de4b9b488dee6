// libFuzzer target: the JSON tokenizer files dus::Tokenizer::load reads besides tokenizer.model --
// a Hugging Face tokenizer.json (data/hf_tokenizer_json.h) and a Mistral Tekken file
// (data/tekken.h). The bytes are parsed and dispatched as load_json (data/tokenizer.cpp) does --
// mirrored rather than called so that nothing touches the disk: json::parse without the
// duplicate-key check, "model" -> load_hf_tokenizer_json, "config" + "vocab" -> load_tekken.
// The path names a file under /dev/null, so the tokenizer_config.json / config.json the HF
// loader looks for beside it never exist. Every input must load or throw dus::Error. A loaded
// tokenizer then encodes fixed texts (ASCII, CJK, emoji, special-token strings, whitespace
// runs), so BPE, added-token matching, normalization and the file's regexes run on fuzzed
// vocabularies, merges and patterns: ids must lie in [0, vocab_size) and decode, and the
// special ids must be in range too. dus::Error from encode (a regex hitting PCRE2's match
// limit, a normalization failure) is allowed; any other exception or a crash is a finding.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "core/json.h"
#include "data/hf_tokenizer_json.h"
#include "data/tekken.h"

namespace {

// The texts the data pipeline meets: words and digits, contractions, a CJK run, an emoji with
// a ZWJ sequence, combining marks (NFC/NFKC change them), the control/added token strings of
// the seed files glued to words, tabs, newlines and long runs of spaces (the \s+(?!\S) path).
const char* const kTexts[] = {
    "Hello world, it's 2024! I'll've 12345 tokens.",
    "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe6\x96\x87\xe7\xab\xa0\xe3\x80\x82",
    "\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x92\xbb \xf0\x9f\x98\x80 caf\x65\xcc\x81 \xef\xac\x81",
    "<s>[INST] hi [/INST]</s><|endoftext|><|im_start|>user\n<|begin_of_text|>x<unk>",
    "  \t\n\n    leading  and   trailing     \xc2\x85\xe3\x80\x80 \n",
    "",
};

void check(const dus::TokenizerImpl& t) {
  const int32_t vocab = t.specials.vocab_size;
  if (vocab <= 0) __builtin_trap();
  for (int32_t id : {t.specials.bos_id, t.specials.eos_id, t.specials.unk_id, t.specials.pad_id})
    if (id < -1 || id >= vocab) __builtin_trap();
  std::vector<int32_t> ids;
  for (const char* text : kTexts) {
    try {
      t.encode(text, &ids);
    } catch (const dus::Error&) {
      continue;
    }
    for (int32_t id : ids) {
      if (id < 0 || id >= vocab) __builtin_trap();
      (void)t.id_to_piece(id);
    }
    // Every emitted id is in the vocabulary, so decoding must not throw.
    (void)t.decode(ids);
  }
  (void)t.id_to_piece(-1);
  (void)t.id_to_piece(vocab);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const std::string path = "/dev/null/tokenizer.json";
  std::unique_ptr<dus::TokenizerImpl> t;
  try {
    dus::json::ParseOptions options;
    options.reject_duplicate_keys = false;
    dus::json::Value root = dus::json::parse(bytes, path, options);
    if (!root.is_object()) return 0;
    if (root.contains("model"))
      t = dus::load_hf_tokenizer_json(path, root);
    else if (root.contains("config") && root.contains("vocab"))
      t = dus::load_tekken(path, root);
    else
      return 0;
  } catch (const dus::Error&) {
    return 0;
  }
  check(*t);
  return 0;
}
