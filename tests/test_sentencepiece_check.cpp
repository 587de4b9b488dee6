// check_sentencepiece_model: real tokenizer.model files pass and load; a hand-built model with
// a one-rule character map passes and normalizes as the rule says (so the check walks the map
// the way the library does); damaged framing, pieces and maps are refused naming the place.
#include <sentencepiece_processor.h>
#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/file_util.h"
#include "data/sentencepiece_check.h"

namespace {

std::string varint(uint64_t v) {
  std::string out;
  for (; v >= 0x80; v >>= 7) out += static_cast<char>((v & 0x7F) | 0x80);
  return out + static_cast<char>(v);
}
std::string len_field(int number, const std::string& body) {
  return varint(static_cast<uint64_t>(number) << 3 | 2) + varint(body.size()) + body;
}
std::string varint_field(int number, uint64_t v) {
  return varint(static_cast<uint64_t>(number) << 3) + varint(v);
}
std::string float_field(int number, float f) {
  std::string out = varint(static_cast<uint64_t>(number) << 3 | 5);
  char b[4];
  std::memcpy(b, &f, 4);
  return out + std::string(b, 4);
}
std::string piece(const std::string& text, float score, int type = 1) {
  return len_field(1, len_field(1, text) + float_field(2, score) + varint_field(3, type));
}

// A darts-clone double array of 512 units with one rule, "A" -> "a": the root (unit 0) has its
// children at 256 ^ byte; the child for 'A' (unit 321) has a leaf whose value unit (384) points
// at offset 0 of the strings. Every other unit is a value unit, whose label never matches a byte.
struct CharsMap {
  std::vector<uint32_t> units = std::vector<uint32_t>(512, 1u << 31);
  std::string strings = std::string("a\0", 2);
  CharsMap() {
    units[0] = 256u << 10;                        // offset 256, label 0
    units[321] = (193u << 10) | (1u << 8) | 'A';  // 321 ^ 193 = 384, has a leaf, label 'A'
    units[384] = (1u << 31) | 0;                  // the leaf: strings offset 0
  }
  std::string blob(int64_t trie_bytes = -1) const {
    const uint32_t n = trie_bytes < 0 ? units.size() * 4 : static_cast<uint32_t>(trie_bytes);
    std::string out(4, '\0');
    std::memcpy(&out[0], &n, 4);
    out.append(reinterpret_cast<const char*>(units.data()), units.size() * 4);
    return out + strings;
  }
};

std::string model(const std::string& charsmap, const std::string& extra_piece = "") {
  const std::string space = "\xe2\x96\x81";
  std::string m = piece("<unk>", 0, 2) + piece("<s>", 0, 3) + piece("</s>", 0, 3) +
                  piece(space + "a", -1) + piece("a", -2) + piece(space, -3) + piece("b", -4) +
                  extra_piece;
  return m + len_field(3, len_field(1, "one_rule") + len_field(2, charsmap));
}

// The where() of the check's error, or "" when accepted.
std::string refused_at(const std::string& bytes) {
  try {
    dus::check_sentencepiece_model(bytes, "tokenizer.model");
  } catch (const dus::Error& e) {
    return e.where();
  }
  return "";
}
std::string charsmap_refusal(const std::string& blob) {
  try {
    dus::check_precompiled_charsmap(blob, "map");
  } catch (const dus::Error& e) {
    return e.problem();
  }
  return "";
}

}  // namespace

TEST_CASE("sentencepiece check: real models pass and load", "[unit]") {
  // Trained by `dus tokenizer train` (BPE), by sentencepiece (unigram with a character map), and
  // the first 700 pieces of Mistral's own tokenizer.model.
  for (const char* name : {"kjv_genesis_exodus_bpe512.model", "kjv_genesis_exodus_unigram300.model",
                           "mistral_v1_first700_pieces.model"}) {
    const std::string bytes = dus::read_file(std::string(DUS_SOURCE_DIR) +
                                             "/tests/fuzz/corpus/fuzz_sentencepiece_model/" + name);
    CHECK(refused_at(bytes) == "");
    sentencepiece::SentencePieceProcessor sp;
    CHECK(sp.LoadFromSerializedProto(bytes).ok());
    // Truncated by one byte, the last field runs past the end.
    CHECK(refused_at(bytes.substr(0, bytes.size() - 1)).find("tokenizer.model: byte ") == 0);
  }
}

TEST_CASE("sentencepiece check: a hand-built character map walks as the library walks it",
          "[unit]") {
  const std::string bytes = model(CharsMap().blob());
  REQUIRE(refused_at(bytes) == "");
  sentencepiece::SentencePieceProcessor sp;
  REQUIRE(sp.LoadFromSerializedProto(bytes).ok());
  std::vector<std::string> pieces;
  REQUIRE(sp.Encode("A", &pieces).ok());
  CHECK(pieces == std::vector<std::string>{"\xe2\x96\x81"
                                           "a"});  // the rule "A" -> "a" applied
}

TEST_CASE("sentencepiece check: damaged pieces and framing are refused", "[unit]") {
  const std::string map = CharsMap().blob();
  // A NUL inside a piece: Debian's libsentencepiece 0.1.97 throws an uncaught Darts exception.
  CHECK(refused_at(model(map, piece(std::string("c\0d", 3), -5))).find("pieces[7]") !=
        std::string::npos);
  CHECK(refused_at(model(map, piece("", -5))).find("pieces[7]") != std::string::npos);
  CHECK(refused_at(model(map, piece(std::string(8000, 'x'), -5))).find("pieces[7]") !=
        std::string::npos);
  CHECK(refused_at(model(map, len_field(1, varint_field(3, 7)))).find("pieces[7]") !=
        std::string::npos);
  // A length past the end, a varint that never ends, a group wire type, field number 0.
  CHECK(refused_at(varint(1 << 3 | 2) + varint(100) + "abc") == "tokenizer.model: byte 0");
  CHECK(refused_at(model(map) + std::string(3, '\xff')) != "");
  CHECK(refused_at(varint(1 << 3 | 3)) == "tokenizer.model: byte 0");
  CHECK(refused_at(varint(0) + varint(0)) == "tokenizer.model: byte 0");
  // The pieces field with a varint instead of a message.
  CHECK(refused_at(varint_field(1, 5)) == "tokenizer.model: byte 0");
}

TEST_CASE("sentencepiece check: damaged character maps are refused", "[unit]") {
  CharsMap ok;
  CHECK(charsmap_refusal(ok.blob()) == "");
  // The library accepts an array size up to the blob's and reads the rest past the end.
  CHECK(charsmap_refusal(ok.blob(ok.units.size() * 4 + ok.strings.size() + 1)).find("claims") !=
        std::string::npos);
  CHECK(charsmap_refusal(std::string(3, '\0')).find("shorter") != std::string::npos);
  CHECK(charsmap_refusal(ok.blob(0)).find("empty") != std::string::npos);
  CharsMap outside = ok;  // the child block of 'A' past the array
  outside.units[321] = (1024u << 10) | (1u << 8) | 'A';
  CHECK(charsmap_refusal(outside.blob()).find("outside") != std::string::npos);
  CharsMap past = ok;  // the leaf points past the strings
  past.units[384] = (1u << 31) | 2;
  CHECK(charsmap_refusal(past.blob()).find("past the") != std::string::npos);
  CharsMap unterminated = ok;
  unterminated.strings = "a";
  CHECK(charsmap_refusal(unterminated.blob()).find("NUL") != std::string::npos);
  CharsMap loop = ok;  // 'A' leads back to itself: "AAAA..." would yield a leaf per byte
  loop.units[321] = (65u << 10) | (1u << 8) | 'A';
  CHECK(charsmap_refusal(loop.blob()).find("loops") != std::string::npos);
  // Any of these inside a model is refused there, naming the field.
  CHECK(refused_at(model(past.blob())).find("normalizer_spec: precompiled_charsmap") !=
        std::string::npos);
}
