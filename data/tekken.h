// A Mistral Tekken file (tekken*.json, Mistral-Nemo and later): tiktoken-style byte-level BPE.
// Vocab entries are base64 byte strings whose position is their rank; a pair of pieces merges
// into the piece their concatenated bytes spell, at that piece's rank, and a pre-token that is
// itself a piece is emitted whole (tiktoken's shortcut). The first
// config.default_num_special_tokens ids are control tokens (from `special_tokens`, or
// mistral-common's default list for files without one: <unk> 0, <s> 1, </s> 2, ...), so a
// piece's id is its rank + that number; the vocabulary is cut to config.default_vocab_size.
// Ids equal mistral-common's Tekkenizer.encode(text, bos=False, eos=False): control-token
// strings in the text are plain text.
#pragma once

#include <memory>
#include <string>

#include "core/json.h"
#include "data/tokenizer_impl.h"

namespace dus {

std::unique_ptr<TokenizerImpl> load_tekken(const std::string& path, const json::Value& root);

}  // namespace dus
