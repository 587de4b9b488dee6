// Tokenizer: SHA-256 vectors, loading and special ids, training (BPE with byte fallback),
// encode/decode round trips, and the errors for a missing or invalid model file. Id parity with
// Python sentencepiece on the real Mistral tokenizer is tests/python/test_tokenizer_parity.py.
#include <catch2/catch.hpp>

#include "core/error.h"
#include "core/sha256.h"
#include "data/tokenizer.h"
#include "test_data_util.h"

using namespace dus;
using dus::testing::TempDir;

TEST_CASE("sha256 matches the FIPS 180-4 test vectors", "[unit]") {
  CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  std::string million(1000000, 'a');
  CHECK(sha256_hex(million) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  // Streaming in odd pieces gives the same digest.
  Sha256 s;
  for (size_t i = 0; i < million.size(); i += 997)
    s.update(million.data() + i, std::min<size_t>(997, million.size() - i));
  CHECK(s.hex_digest() == sha256_hex(million));
}

TEST_CASE("a trained BPE tokenizer has Llama special ids and round-trips text", "[unit]") {
  Tokenizer t = Tokenizer::load(dus::testing::tiny_tokenizer());
  CHECK(t.vocab_size() == 400);
  CHECK(t.unk_id() == 0);
  CHECK(t.bos_id() == 1);
  CHECK(t.eos_id() == 2);
  CHECK(t.adds_bos());  // LlamaTokenizer's add_bos_token
  CHECK(t.pad_id() == -1);
  CHECK(t.sha256() == sha256_file(dus::testing::tiny_tokenizer()));
  const std::string text = "the light was good; café über Zürich\n  x = 42;   print(i)";
  std::vector<int32_t> ids = t.encode(text);
  CHECK(!ids.empty());
  CHECK(t.decode(ids) == text);
  // Characters never seen in training become byte pieces (byte fallback), not <unk>.
  const std::string unseen = "日本 🙂";
  std::vector<int32_t> unseen_ids = t.encode(unseen);
  CHECK(std::find(unseen_ids.begin(), unseen_ids.end(), t.unk_id()) == unseen_ids.end());
  CHECK(t.decode(unseen_ids) == unseen);
  CHECK(t.id_to_piece(unseen_ids.back()).rfind("<0x", 0) == 0);
}

TEST_CASE("encoding a document whole differs from encoding it line by line", "[unit]") {
  // Why prepare encodes whole documents: every call adds a dummy-prefix space.
  Tokenizer t = Tokenizer::load(dus::testing::tiny_tokenizer());
  std::vector<int32_t> whole = t.encode("the light\nwas good");
  std::vector<int32_t> a = t.encode("the light\n"), b = t.encode("was good");
  a.insert(a.end(), b.begin(), b.end());
  CHECK(whole != a);
}

TEST_CASE("a missing or invalid tokenizer is a clear error", "[unit]") {
  TempDir dir;
  try {
    Tokenizer::load(dir.file("nope.model"));
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("nope.model") != std::string::npos);
    CHECK(std::string(e.what()).find("not found") != std::string::npos);
  }
  dus::testing::write_text(dir.file("bad.model"), "this is not a protobuf at all");
  CHECK_THROWS_WITH(Tokenizer::load(dir.file("bad.model")),
                    Catch::Contains("bad.model") && Catch::Contains("not a sentencepiece model"));
}

TEST_CASE("tokenizer training rejects a bad vocabulary size", "[unit]") {
  TempDir dir;
  dus::testing::write_text(dir.file("a.txt"), "a few words of text\n");
  TokenizerTrainOptions o;
  o.vocab_size = 4;
  CHECK_THROWS_WITH(train_tokenizer({dir.file("a.txt")}, CorpusOptions{}, dir.file("tok"), o),
                    Catch::Contains("--vocab-size"));
  o.vocab_size = 5000;  // far more than a few words can give
  CHECK_THROWS_WITH(train_tokenizer({dir.file("a.txt")}, CorpusOptions{}, dir.file("tok"), o),
                    Catch::Contains("hint: lower --vocab-size to at most "));
  // Fewer pieces than the text has characters (+ byte pieces): the hint says raise it, to what.
  std::string varied;
  for (int c = 0x3b1; c < 0x3b1 + 24; ++c)  // the Greek alphabet, two bytes each in UTF-8
    varied += std::string{static_cast<char>(0xc0 | (c >> 6)), static_cast<char>(0x80 | (c & 0x3f))};
  dus::testing::write_text(dir.file("b.txt"), "Latin text and " + varied + "\n");
  o.vocab_size = 40;
  o.byte_fallback = true;
  try {
    train_tokenizer({dir.file("b.txt")}, CorpusOptions{}, dir.file("tok2"), o);
    FAIL("expected an error");
  } catch (const Error& e) {
    const std::string m = e.what();
    CHECK(m.find("hint: raise --vocab-size to at least ") != std::string::npos);
    CHECK(m.find("lower --vocab-size") == std::string::npos);
  }
}

TEST_CASE("the vocabulary-size hint reads sentencepiece's stated limit", "[unit]") {
  CHECK(vocab_size_hint("Vocabulary size is smaller than required_chars. 100 vs 298. Increase "
                        "vocab_size") ==
        "raise --vocab-size to at least 298 (every character of the text, and the byte pieces, "
        "needs a piece), or lower --character-coverage");
  CHECK(vocab_size_hint("Vocabulary size too high (20000). Please set it to a value <= 594.") ==
        "lower --vocab-size to at most 594, or give more text");
  CHECK(vocab_size_hint("some other failure").empty());
}
