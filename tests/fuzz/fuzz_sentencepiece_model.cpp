// libFuzzer target: a tokenizer.model (sentencepiece ModelProto) checked by
// check_sentencepiece_model (data/sentencepiece_check.h) and, when accepted, loaded the way
// dus::Tokenizer::load (data/tokenizer.cpp) loads it -- this mirrors that code rather than
// calling it, so the target stays independent of how the tokenizer facade is arranged:
// SentencePieceProcessor::LoadFromSerializedProto on the file's bytes, the ids the trainer reads
// (piece count, bos/eos/unk/pad), then Encode of a short text, Decode of the ids and the pieces of
// those ids, as `dus prepare` and the data pipeline use them. Every input must load or give a
// non-ok status (an exception out of the library is a crash: the check must have refused the
// input); a model that loads must encode and decode without crashing and give ids within
// its piece count. Debian's libsentencepiece is not instrumented: memory errors inside it may go
// unseen, but aborts, CHECK failures and crashes are caught.
#include <sentencepiece_processor.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/error.h"
#include "data/sentencepiece_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  try {
    dus::check_sentencepiece_model(bytes, "tokenizer.model");
  } catch (const dus::Error&) {
    return 0;
  }
  sentencepiece::SentencePieceProcessor sp;
  if (!sp.LoadFromSerializedProto(bytes).ok()) return 0;
  const int pieces = sp.GetPieceSize();
  (void)sp.bos_id();
  (void)sp.eos_id();
  (void)sp.unk_id();
  (void)sp.pad_id();
  // ASCII words, digits, a byte-fallback candidate (U+2014, CJK), tabs and repeated spaces.
  static const std::string text =
      "In the beginning God created 42 heavens\t \xe2\x80\x94  \xe6\x97\xa5\xe6\x9c\xac.\n";
  std::vector<int> ids;
  if (!sp.Encode(text, &ids).ok()) return 0;
  for (int id : ids)
    if (id < 0 || id >= pieces) __builtin_trap();
  std::string decoded;
  (void)sp.Decode(ids, &decoded);
  for (int id : ids) (void)sp.IdToPiece(id);
  return 0;
}
