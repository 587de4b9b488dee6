// Bytes per token for bits per byte: Tokenizer::token_byte_lengths against libsentencepiece's
// own decode() on the tiny trained model (random piece sequences and encoded documents), and
// TokenBytes counting a packed window's targets across document boundaries. The byte-level
// BPE formats are in tests/test_data_bpe_tokenizer.cpp.
#include <catch2/catch.hpp>

#include <random>

#include "core/error.h"
#include "data/token_bytes.h"
#include "data/tokenizer.h"
#include "test_data_util.h"

using namespace dus;

namespace {

// Bytes of `ids` as one document: its first id counted as a document's first.
int64_t document_bytes(const std::vector<int32_t>& start, const std::vector<int32_t>& mid,
                       const std::vector<int32_t>& ids) {
  int64_t sum = 0;
  for (size_t i = 0; i < ids.size(); ++i) sum += (i == 0 ? start : mid)[ids[i]];
  return sum;
}

bool is_byte_piece(const std::string& piece) {
  return piece.size() == 6 && piece.rfind("<0x", 0) == 0 && piece.back() == '>';
}

const std::vector<std::string> kDocuments = {
    "the light was good",
    "  two leading spaces, and a tab\tinside",
    "\nstarts with a newline",
    "café naïve über Zürich 2024",
    "bytes the model never saw: 日本語 ✓ €",
    "x = 42; for i in range(10): print(i)",
};

}  // namespace

TEST_CASE("sentencepiece: token_byte_lengths against decode", "[unit]") {
  const Tokenizer t = Tokenizer::load(dus::testing::tiny_tokenizer());
  const std::vector<int32_t> mid = t.token_byte_lengths();
  const std::vector<int32_t> start = t.token_byte_lengths(true);
  REQUIRE(mid.size() == static_cast<size_t>(t.vocab_size()));
  REQUIRE(start.size() == mid.size());
  CHECK(mid[t.bos_id()] == 0);
  CHECK(mid[t.eos_id()] == 0);
  CHECK(mid[t.unk_id()] == 0);  // decode() writes " ⁇ " for it, but it is no text

  // Ordinary pieces (no control, UNK or byte pieces: bytes in random order are not UTF-8,
  // which decode() replaces with U+FFFD) in random sequences.
  std::vector<int32_t> plain;
  for (int32_t id = 0; id < t.vocab_size(); ++id) {
    const std::string piece = t.id_to_piece(id);
    if (id == t.bos_id() || id == t.eos_id() || id == t.unk_id()) continue;
    if (is_byte_piece(piece)) {
      CHECK(mid[id] == 1);
      continue;
    }
    plain.push_back(id);
    // The dummy-prefix space is dropped at a document's start only.
    const bool leading_space = piece.rfind("\xE2\x96\x81", 0) == 0;
    CHECK(mid[id] - start[id] == (leading_space ? 1 : 0));
    CHECK(mid[id] == static_cast<int32_t>(t.decode({t.bos_id(), id, id}).size()) - start[id]);
  }
  REQUIRE(plain.size() > 100);
  std::mt19937 rng(11);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<int32_t> ids(1 + rng() % 30);
    for (int32_t& id : ids) id = plain[rng() % plain.size()];
    const std::string text = t.decode(ids);
    CHECK(document_bytes(start, mid, ids) == static_cast<int64_t>(text.size()));
  }

  // Encoded documents, byte-fallback pieces included: the bytes of the text decode() gives
  // back (which is the document itself where normalization leaves it unchanged).
  for (const std::string& doc : kDocuments) {
    const std::vector<int32_t> ids = t.encode(doc);
    CAPTURE(doc);
    CHECK(document_bytes(start, mid, ids) == static_cast<int64_t>(t.decode(ids).size()));
  }
  CHECK(document_bytes(start, mid, t.encode(kDocuments[0])) ==
        static_cast<int64_t>(kDocuments[0].size()));
  CHECK(document_bytes(start, mid, t.encode(kDocuments[4])) ==
        static_cast<int64_t>(kDocuments[4].size()));
}

TEST_CASE("TokenBytes: a packed window's targets are the bytes of its documents", "[unit]") {
  const Tokenizer t = Tokenizer::load(dus::testing::tiny_tokenizer());
  const TokenBytes bytes = TokenBytes::from_tokenizer(t);
  // [EOS] doc0 EOS BOS doc1 EOS doc2 EOS ...: EOS-separated documents, some with a BOS, as
  // the packed loader lays them out; the first token is an input only.
  std::vector<int64_t> stream = {t.eos_id()};
  int64_t expected = 0;
  for (size_t d = 0; d < kDocuments.size(); ++d) {
    if (d % 2) stream.push_back(t.bos_id());
    const std::vector<int32_t> ids = t.encode(kDocuments[d]);
    stream.insert(stream.end(), ids.begin(), ids.end());
    stream.push_back(t.eos_id());
    expected += static_cast<int64_t>(t.decode(ids).size());
  }
  CHECK(bytes.target_bytes(stream.data(), static_cast<int64_t>(stream.size()), "test") == expected);

  // A window cut inside a document: its first token is not scored, the rest count as
  // mid-document pieces.
  const std::vector<int32_t> ids = t.encode(kDocuments[3]);
  REQUIRE(ids.size() > 3);
  std::vector<int64_t> window(ids.begin() + 1, ids.end());
  const std::vector<int32_t> mid = t.token_byte_lengths();
  int64_t tail = 0;
  for (size_t i = 2; i < ids.size(); ++i) tail += mid[ids[i]];
  CHECK(bytes.target_bytes(window.data(), static_cast<int64_t>(window.size()), "test") == tail);

  // An id outside the tokenizer (a dataset made with another one) is an error naming the place.
  std::vector<int64_t> bad = {t.eos_id(), t.vocab_size()};
  CHECK_THROWS_WITH(bytes.target_bytes(bad.data(), 2, "eval window 3"),
                    Catch::Contains("outside the tokenizer"));
  CHECK_THROWS_AS(bytes.target_bytes(bad.data(), 2, "eval window 3"), Error);
}
