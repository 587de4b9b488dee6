// A Hugging Face tokenizer.json with a byte-level BPE model (GPT-2, Llama-3, Qwen2, SmolLM,
// DeepSeek...). Supported exactly, else a dus::Error naming the component's JSON path:
//   model: BPE (byte_fallback false, no dropout, no subword prefix/suffix), ignore_merges,
//          merges as "a b" strings or [a, b] lists;
//   normalizer: null, NFC, NFKC, Sequence of those;
//   pre_tokenizer: ByteLevel (last), Split (Regex/String pattern, Isolated or Removed, invert
//          false), Sequence of those;
//   decoder: null or ByteLevel; added_tokens: lstrip/rstrip/normalized (single_word refused).
// post_processor is ignored: ids are those of tokenizers' encode(text, add_special_tokens=False).
// BOS/EOS/pad come from tokenizer_config.json beside the file (bos_token...), else config.json
// (bos_token_id...), else none.
#pragma once

#include <memory>
#include <string>

#include "data/tokenizer_impl.h"
#include "model/json.h"

namespace dus {

std::unique_ptr<TokenizerImpl> load_hf_tokenizer_json(const std::string& path,
                                                      const json::Value& root);

}  // namespace dus
