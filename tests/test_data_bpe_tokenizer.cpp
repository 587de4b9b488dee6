// Byte-level BPE tokenizers (tokenizer.json, Tekken) on small hand-made files: the merge
// order, ignore_merges, added tokens, special ids from tokenizer_config.json, the directory
// rule, and the errors for unsupported components and broken files. Id parity on the real
// Llama-3 / Qwen2 / GPT-2 / DeepSeek / Mistral-Nemo files is
// tests/python/test_bpe_tokenizer_parity.py.
#include <catch2/catch.hpp>

#include <filesystem>
#include <random>

#include "core/error.h"
#include "data/tokenizer.h"
#include "test_data_util.h"

using namespace dus;
using dus::testing::TempDir;
using dus::testing::write_text;

namespace {

// GPT-2's byte -> character map, written independently of data/hf_tokenizer_json.cpp.
std::string byte_char(int b) {
  bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  int cp = b;
  if (!printable) {
    int n = 0;
    for (int x = 0; x < b; ++x)
      if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255))) ++n;
    cp = 256 + n;
  }
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

// Byte b has id b; then "ab"=256, "Ġa"=257, "Ġab"=258, "bc"=259, "abc"=260; merges in rank
// order: a b, Ġ a, Ġa b, b c, ab c. Added token <|x|> = 300.
std::string tiny_json(const std::string& model_extra = "", const std::string& normalizer = "null",
                      const std::string& pre_tokenizer =
                          R"({"type":"ByteLevel","add_prefix_space":false,"use_regex":true})",
                      const std::string& model_type = "BPE") {
  std::string vocab;
  for (int b = 0; b < 256; ++b) {
    std::string c = byte_char(b);
    if (c == "\"" || c == "\\") c = "\\" + c;
    vocab += "\"" + c + "\":" + std::to_string(b) + ",";
  }
  vocab +=
      "\"ab\":256,\"\xC4\xA0"
      "a\":257,\"\xC4\xA0"
      "ab\":258,\"bc\":259,\"abc\":260";
  return R"({"version":"1.0","added_tokens":[{"id":300,"content":"<|x|>","single_word":false,)"
         R"("lstrip":false,"rstrip":false,"normalized":false,"special":true}],)"
         R"("normalizer":)" +
         normalizer + R"(,"pre_tokenizer":)" + pre_tokenizer +
         R"(,"post_processor":null,"decoder":{"type":"ByteLevel"},)"
         R"("model":{"type":")" +
         model_type + R"(","dropout":null,"unk_token":null,)" + model_extra + R"("vocab":{)" +
         vocab + R"(},"merges":["a b",["Ġ","a"],"Ġa b","b c","ab c"]}})";
}

// Bytes 0..255 are ranks 0..255, "ab" is rank 256; the config's sizes as given.
std::string tiny_tekken(const std::string& vocab_size, const std::string& num_special) {
  std::string vocab;
  static const char* b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (int b = 0; b < 256; ++b) {
    std::string enc = {b64[b >> 2], b64[(b & 3) << 4], '=', '='};
    vocab +=
        R"({"rank":)" + std::to_string(b) + R"(,"token_bytes":")" + enc + R"(","token_str":null},)";
  }
  vocab += R"({"rank":256,"token_bytes":"YWI=","token_str":"ab"})";  // "ab"
  return R"({"config":{"pattern":"\\p{L}+|\\s+|[^\\s\\p{L}]+","num_vocab_tokens":257,)"
         R"("default_vocab_size":)" +
         vocab_size + R"(,"default_num_special_tokens":)" + num_special +
         R"(,"version":"v3"},"vocab":[)" + vocab + "]}";
}

std::string replaced(std::string s, const std::string& from, const std::string& to) {
  size_t at = s.find(from);
  REQUIRE(at != std::string::npos);
  return s.replace(at, from.size(), to);
}

std::string error_of(const std::string& path) {
  try {
    Tokenizer::load(path);
  } catch (const Error& e) {
    return std::string(e.what()) + " | " + e.where() + " | " + e.hint();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("tokenizer.json: merges by rank, added tokens, special ids from tokenizer_config",
          "[unit]") {
  TempDir dir;
  write_text(dir.file("tokenizer.json"), tiny_json());
  write_text(dir.file("tokenizer_config.json"),
             R"({"bos_token":{"content":"<|x|>"},"eos_token":"bc","pad_token":null})");
  Tokenizer t = Tokenizer::load(dir.path());
  CHECK(t.path() == dir.file("tokenizer.json"));
  CHECK(t.vocab_size() == 301);
  CHECK(t.bos_id() == 300);
  CHECK(t.eos_id() == 259);
  CHECK(t.unk_id() == -1);
  CHECK(t.pad_id() == -1);
  // "abc": a+b (rank 0) before b+c (rank 3), then ab+c -> abc. " ab": a+b (rank 0) wins over
  // Ġ+a (rank 1), and "Ġ ab" is no merge; " a" is Ġ+a. "bc" alone merges by rank 3. <|x|> is
  // matched in the raw text before pre-tokenization.
  CHECK(t.encode("abc") == std::vector<int32_t>{260});
  CHECK(t.encode(" a") == std::vector<int32_t>{257});
  CHECK(t.encode("abc ab bc<|x|>c") == std::vector<int32_t>{260, 32, 256, 32, 259, 300, 99});
  CHECK(t.decode(t.encode("abc ab bc<|x|>c\n\tdé")) == "abc ab bc<|x|>c\n\tdé");
  CHECK(t.encode("").empty());
  // Invalid UTF-8 is an error naming the file, never a crash.
  CHECK_THROWS_AS(t.encode(std::string("a\xff"
                                       "b")),
                  Error);
}

TEST_CASE("tokenizer.json: whether encoding with special tokens puts BOS first", "[unit]") {
  TempDir dir;
  write_text(dir.file("plain.json"), tiny_json());
  CHECK_FALSE(Tokenizer::load(dir.file("plain.json")).adds_bos());
  std::string with_bos = tiny_json();
  const std::string null_post = R"("post_processor":null)";
  with_bos.replace(with_bos.find(null_post), null_post.size(),
                   R"("post_processor":{"type":"TemplateProcessing","single":[{"SpecialToken":)"
                   R"({"id":"<|x|>","type_id":0}},{"Sequence":{"id":"A","type_id":0}}]})");
  write_text(dir.file("bos.json"), with_bos);
  CHECK(Tokenizer::load(dir.file("bos.json")).adds_bos());
}

TEST_CASE("tokenizer.json: ignore_merges emits a pre-token that is in the vocab whole", "[unit]") {
  TempDir dir;
  // A vocab entry the merges cannot reach: "bc" once the "b c" merge is removed.
  std::string json = tiny_json(R"("ignore_merges":true,)");
  json.replace(json.find("\"b c\","), 6, "");
  write_text(dir.file("tokenizer.json"), json);
  CHECK(Tokenizer::load(dir.file("tokenizer.json")).encode("bc") == std::vector<int32_t>{259});
  std::string plain = tiny_json();
  plain.replace(plain.find("\"b c\","), 6, "");
  write_text(dir.file("plain.json"), plain);
  CHECK(Tokenizer::load(dir.file("plain.json")).encode("bc") == std::vector<int32_t>{98, 99});
}

TEST_CASE("tokenizer.json: unsupported components are errors naming the JSON path", "[unit]") {
  TempDir dir;
  write_text(dir.file("wp.json"), tiny_json("", "null", R"({"type":"ByteLevel"})", "WordPiece"));
  std::string e = error_of(dir.file("wp.json"));
  CHECK_THAT(e, Catch::Contains("model") && Catch::Contains("WordPiece") &&
                    Catch::Contains(dir.file("wp.json")));
  write_text(
      dir.file("norm.json"),
      tiny_json("", R"({"type":"Sequence","normalizers":[{"type":"NFC"},{"type":"Lowercase"}]})"));
  e = error_of(dir.file("norm.json"));
  CHECK_THAT(e, Catch::Contains("normalizer.normalizers[1]") && Catch::Contains("Lowercase"));
  write_text(
      dir.file("pre.json"),
      tiny_json("", "null", R"({"type":"Sequence","pretokenizers":[{"type":"Metaspace"}]})"));
  e = error_of(dir.file("pre.json"));
  CHECK_THAT(e, Catch::Contains("pre_tokenizer.pretokenizers[0]") && Catch::Contains("Metaspace"));
  write_text(dir.file("fallback.json"), tiny_json(R"("byte_fallback":true,)"));
  CHECK_THAT(error_of(dir.file("fallback.json")), Catch::Contains("byte_fallback"));
  write_text(
      dir.file("split.json"),
      tiny_json("", "null",
                R"({"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":"\\s"},)"
                R"("behavior":"Contiguous","invert":false},{"type":"ByteLevel"}]})"));
  CHECK_THAT(error_of(dir.file("split.json")), Catch::Contains("behavior"));
}

TEST_CASE("broken tokenizer files are errors naming the file", "[unit]") {
  TempDir dir;
  std::string full = tiny_json();
  write_text(dir.file("tokenizer.json"), full.substr(0, full.size() / 2));
  CHECK_THAT(error_of(dir.file("tokenizer.json")), Catch::Contains(dir.file("tokenizer.json")));
  write_text(dir.file("other.json"), "this is not json");
  CHECK_THAT(error_of(dir.file("other.json")), Catch::Contains(dir.file("other.json")));
  write_text(dir.file("neither.json"), R"({"hello": 1})");
  CHECK_THAT(error_of(dir.file("neither.json")), Catch::Contains("not a tokenizer file"));
}

TEST_CASE("a model directory: which file is read, and the error when there is none", "[unit]") {
  TempDir empty;
  std::string e = error_of(empty.path());
  CHECK_THAT(e, Catch::Contains("tokenizer.model") && Catch::Contains("tokenizer.json") &&
                    Catch::Contains("tekken"));

  // Both files, valid sentencepiece model: the .model wins (existing datasets used it).
  TempDir both;
  std::filesystem::copy_file(dus::testing::tiny_tokenizer(), both.file("tokenizer.model"));
  write_text(both.file("tokenizer.json"), tiny_json());
  CHECK(Tokenizer::load(both.path()).path() == both.file("tokenizer.model"));
  CHECK(Tokenizer::load(both.path()).vocab_size() == 400);

  // A tokenizer.model that is not sentencepiece: tokenizer.json is used.
  TempDir bad_model;
  write_text(bad_model.file("tokenizer.model"), "not a model");
  write_text(bad_model.file("tokenizer.json"), tiny_json());
  CHECK(Tokenizer::load(bad_model.path()).path() == bad_model.file("tokenizer.json"));

  // Only a Tekken file: ids are rank + the number of control tokens.
  TempDir tekken;
  write_text(tekken.file("tekken_test.json"), tiny_tekken("267", "10"));
  Tokenizer t = Tokenizer::load(tekken.path());
  CHECK(t.path() == tekken.file("tekken_test.json"));
  CHECK(t.vocab_size() == 267);
  CHECK(t.bos_id() == 1);
  CHECK(t.eos_id() == 2);
  CHECK(t.adds_bos());  // mistral-common's encode(bos=True), as the harness asks for it
  CHECK(t.encode("ab a") == std::vector<int32_t>{266, 10 + ' ', 10 + 'a'});
  CHECK(t.decode(t.encode("abc ab")) == "abc ab");
  // Byte lengths: control tokens 0, byte pieces 1, "ab" 2; the sum over an encoded text is
  // the text's byte count.
  const std::vector<int32_t> lengths = t.token_byte_lengths();
  REQUIRE(lengths.size() == 267);
  for (int32_t id = 0; id < 10; ++id) CHECK(lengths[id] == 0);
  CHECK(lengths[10 + 'a'] == 1);
  CHECK(lengths[266] == 2);
  CHECK(t.token_byte_lengths(true) == lengths);
  int64_t sum = 0;
  const std::string text = "abc ab, ünïcode ✓";
  for (int32_t id : t.encode(text)) sum += lengths[id];
  CHECK(sum == static_cast<int64_t>(text.size()));
}

TEST_CASE("tokenizer.json: token_byte_lengths sum to the decoded text's bytes", "[unit]") {
  TempDir dir;
  write_text(dir.file("tokenizer.json"), tiny_json());
  Tokenizer t = Tokenizer::load(dir.file("tokenizer.json"));
  const std::vector<int32_t> lengths = t.token_byte_lengths();
  REQUIRE(lengths.size() == 301);
  CHECK(t.token_byte_lengths(true) == lengths);  // the ByteLevel decoder strips nothing
  CHECK(lengths[300] == 0);                      // <|x|> is special: no text
  CHECK(lengths['a'] == 1);
  CHECK(lengths[258] == 3);  // "Ġab" = " ab"
  CHECK(lengths[260] == 3);
  // Ids 0..260 in random orders: decode emits each token's bytes, so the sum is decode()'s
  // size whatever the sequence.
  std::mt19937 rng(5);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<int32_t> ids(1 + rng() % 40);
    int64_t sum = 0;
    for (int32_t& id : ids) sum += lengths[id = static_cast<int32_t>(rng() % 261)];
    CHECK(sum == static_cast<int64_t>(t.decode(ids).size()));
  }
  // With the special token inside, decode() writes "<|x|>" but the text has no such bytes.
  const std::vector<int32_t> ids = t.encode("abc<|x|> ab");
  int64_t sum = 0;
  for (int32_t id : ids) sum += lengths[id];
  CHECK(sum == static_cast<int64_t>(std::string("abc ab").size()));
  CHECK(t.decode(ids).size() == sum + 5);
}

// Damaged files the loaders must refuse with a dus::Error: otherwise a byte-level decode reads
// past a string's end or a dense per-id table asks for gigabytes (std::bad_alloc).
// tests/fuzz/fuzz_tokenizer_json.cpp fuzzes these loaders.
TEST_CASE("damaged tokenizer files: invalid UTF-8 and huge ids are errors, not crashes", "[unit]") {
  TempDir dir;
  // A vocab string ending inside a UTF-8 character (the byte-level map would decode past it).
  write_text(dir.file("piece.json"),
             replaced(tiny_json(), "\"abc\":260", "\"abc\":260,\"\xE2\x82\":261"));
  CHECK_THAT(error_of(dir.file("piece.json")),
             Catch::Contains("model.vocab") && Catch::Contains("not valid UTF-8"));
  // An added token that is not UTF-8 could match inside a character of the text.
  write_text(dir.file("added.json"), replaced(tiny_json(), "<|x|>", "<|\xC3"));
  CHECK_THAT(error_of(dir.file("added.json")),
             Catch::Contains("added_tokens[0].content") && Catch::Contains("not valid UTF-8"));
  // Ids size dense per-id tables: 2^31 - 2 would ask for 64 GB; 2^32 + 300 wraps in int32.
  write_text(dir.file("vocab_id.json"), replaced(tiny_json(), "\"abc\":260", "\"abc\":2147483646"));
  CHECK_THAT(error_of(dir.file("vocab_id.json")),
             Catch::Contains("model.vocab[\"abc\"]") && Catch::Contains("16777216"));
  write_text(dir.file("added_id.json"), replaced(tiny_json(), "\"id\":300", "\"id\":4294967596"));
  CHECK_THAT(error_of(dir.file("added_id.json")),
             Catch::Contains("added_tokens[0]") && Catch::Contains("16777216"));
  // Tekken: 2^32 control tokens fit the size check (257 entries) but not an int32.
  write_text(dir.file("tekken_big.json"), tiny_tekken("4294967553", "4294967296"));
  CHECK_THAT(error_of(dir.file("tekken_big.json")),
             Catch::Contains("default_vocab_size") && Catch::Contains("16777216"));
  // The same files with sane values load.
  write_text(dir.file("ok.json"),
             replaced(tiny_json(), "\"abc\":260", "\"abc\":260,\"\xE2\x82\xAC\":261"));
  CHECK(Tokenizer::load(dir.file("ok.json")).vocab_size() == 301);
  write_text(dir.file("tekken_ok.json"), tiny_tekken("267", "10"));
  CHECK(Tokenizer::load(dir.file("tekken_ok.json")).vocab_size() == 267);
}
