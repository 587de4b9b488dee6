// A sentencepiece tokenizer.model (Llama-2, Mistral-7B, models trained by dus tokenizer
// train): special ids come from the model.
#pragma once

#include <memory>
#include <string>

#include "data/tokenizer_impl.h"

namespace dus {

/// nullptr (and *why set) when the bytes are not a sentencepiece model.
std::unique_ptr<TokenizerImpl> load_sentencepiece(const std::string& path, const std::string& bytes,
                                                  std::string* why);

}  // namespace dus
