// A Hugging Face tokenizer.json with a byte-level BPE model (GPT-2, Llama-3, Qwen2, SmolLM,
// DeepSeek...). Supported exactly, else a dus::Error naming the component's JSON path:
//   model: BPE (byte_fallback false, no dropout, no subword prefix/suffix), ignore_merges,
//          merges as "a b" strings or [a, b] lists;
//   normalizer: null, NFC, NFKC, Sequence of those;
//   pre_tokenizer: ByteLevel (last), Split (Regex/String pattern, Isolated or Removed, invert
//          false), Sequence of those;
//   decoder: null or ByteLevel; added_tokens: lstrip/rstrip/normalized (single_word refused).
// Ids are those of tokenizers' encode(text, add_special_tokens=False); the post_processor only
// says whether encoding with special tokens puts BOS first (TokenizerSpecials::adds_bos).
// BOS/EOS/pad come from tokenizer_config.json beside the file (bos_token...), else config.json
// (bos_token_id...), else none.
#pragma once

#include <memory>
#include <string>

#include "core/json.h"
#include "data/tokenizer_impl.h"

namespace dus {

/// Whether a post_processor puts a special token first: a TemplateProcessing whose "single"
/// template starts with a SpecialToken ([BOS] $A), alone or inside a Sequence. null: no.
bool post_processor_adds_bos(const json::Value& post_processor);

std::unique_ptr<TokenizerImpl> load_hf_tokenizer_json(const std::string& path,
                                                      const json::Value& root);

}  // namespace dus
