#include "data/sentencepiece_tokenizer.h"

#include <sentencepiece_processor.h>

#include "core/error.h"
#include "data/sentencepiece_check.h"

namespace dus {

namespace {

class SentencePieceTokenizer : public TokenizerImpl {
 public:
  std::string path;
  sentencepiece::SentencePieceProcessor sp;

  void encode(std::string_view text, std::vector<int32_t>* ids) const override {
    std::vector<int> out;
    auto status = sp.Encode(absl::string_view(text.data(), text.size()), &out);
    if (!status.ok()) throw Error(path, "encode failed: " + status.ToString());
    ids->assign(out.begin(), out.end());
  }

  std::string decode(const std::vector<int32_t>& ids) const override {
    std::vector<int> in(ids.begin(), ids.end());
    std::string text;
    auto status = sp.Decode(in, &text);
    if (!status.ok()) throw Error(path, "decode failed: " + status.ToString());
    return text;
  }

  std::string id_to_piece(int32_t id) const override { return sp.IdToPiece(id); }

  std::vector<int32_t> token_byte_lengths(bool at_document_start) const override {
    static const std::string kSpace = "\xE2\x96\x81";  // U+2581, decoded as one space
    const int n = sp.GetPieceSize();
    std::vector<int32_t> lengths(static_cast<size_t>(n), 0);
    std::string text;
    for (int id = 0; id < n; ++id) {
      if (sp.IsControl(id) || sp.IsUnknown(id)) continue;  // decode: "" (UNK: 0 by definition)
      if (sp.IsByte(id)) {
        lengths[id] = 1;
        continue;
      }
      if (at_document_start) {
        // decode() of the piece alone is the piece as a document's first: with the dummy-prefix
        // space removed when the model adds one (normalizer_spec.add_dummy_prefix).
        auto status = sp.Decode(std::vector<int>{id}, &text);
        if (!status.ok()) throw Error(path, "decode failed: " + status.ToString());
        lengths[id] = static_cast<int32_t>(text.size());
        continue;
      }
      const std::string piece = sp.IdToPiece(id);
      int32_t bytes = static_cast<int32_t>(piece.size());
      for (size_t at = piece.find(kSpace); at != std::string::npos;
           at = piece.find(kSpace, at + kSpace.size()))
        bytes -= static_cast<int32_t>(kSpace.size()) - 1;
      lengths[id] = bytes;
    }
    return lengths;
  }
};

}  // namespace

std::unique_ptr<TokenizerImpl> load_sentencepiece(const std::string& path, const std::string& bytes,
                                                  std::string* why) {
  // libsentencepiece trusts the protobuf: malformed pieces and character maps make it read out
  // of bounds or abort, so the bytes are checked before it sees them.
  try {
    check_sentencepiece_model(bytes, path);
  } catch (const Error& e) {
    *why = e.what();
    return nullptr;
  }
  auto t = std::make_unique<SentencePieceTokenizer>();
  auto status = t->sp.LoadFromSerializedProto(bytes);
  if (!status.ok()) {
    *why = status.ToString();
    return nullptr;
  }
  t->path = path;
  t->specials.vocab_size = t->sp.GetPieceSize();
  t->specials.bos_id = t->sp.bos_id();
  t->specials.eos_id = t->sp.eos_id();
  t->specials.unk_id = t->sp.unk_id();
  t->specials.pad_id = t->sp.pad_id();
  return t;
}

}  // namespace dus
