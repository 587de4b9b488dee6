// Checks a tokenizer.model (a serialized sentencepiece ModelProto) before it is handed to
// libsentencepiece. The library trusts parts of the file: Debian's 0.1.97 throws an uncaught
// Darts exception on a piece holding a NUL byte, and walks the normalizer's precompiled
// character map (a darts-clone double array plus the replacement strings) with no bounds
// checks, so a damaged or hostile file reads out of bounds instead of failing to load. These
// checks cover the protobuf framing (tags, varints, lengths within the buffer), the pieces, and
// the character maps; what they accept the library loads or refuses with a status.
//
// ModelProto fields read here (sentencepiece_model.proto):
//   1 pieces (SentencePiece: 1 piece string, 2 score float, 3 type enum), 2 trainer_spec,
//   3 normalizer_spec (NormalizerSpec: 1 name, 2 precompiled_charsmap bytes, ...),
//   4 self_test_data, 5 denormalizer_spec (NormalizerSpec).
#pragma once

#include <string>
#include <string_view>

namespace dus {

/// Throws dus::Error(where, ...) naming the field and byte offset unless `bytes` is well-formed
/// protobuf wire format throughout the known messages; every piece is 1 to 7,999 bytes without
/// a NUL; every piece type is a known one; and each non-empty precompiled_charsmap is a
/// double array whose every reachable node and leaf stays inside the array, whose leaves point
/// inside the NUL-terminated replacement strings, with no cycle and at most 32 leaves on any
/// path (the library's fixed result buffer).
void check_sentencepiece_model(std::string_view bytes, const std::string& where);

/// The precompiled_charsmap check alone: <trie size, uint32 LE><double array><strings>.
void check_precompiled_charsmap(std::string_view blob, const std::string& where);

}  // namespace dus
