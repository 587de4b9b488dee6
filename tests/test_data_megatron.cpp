// Megatron indexed datasets (.bin/.idx) read as training data: the fixtures written by
// megatron-core's IndexedDatasetBuilder (tests/data/megatron/make_fixtures.py) read back
// document by document in uint16 and int32; each validation error, made by corrupting the
// bytes of a real builder output, names the file and the field; packing with eos: add / data;
// the loader refuses a Megatron source without its tokenizer and resumes on other world sizes.
#include <catch2/catch.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#include "core/error.h"
#include "data/megatron_index.h"
#include "data/packed_loader.h"
#include "data/packed_sequences.h"
#include "data/token_dataset.h"
#include "test_util.h"

using namespace dus;
using dus::testing::TempDir;
using dus::testing::write_text;

namespace {

const std::string kFixtures = std::string(DUS_SOURCE_DIR) + "/tests/data/megatron/";

// The documents make_fixtures.py writes (each the concatenation of its sequences).
const std::vector<std::vector<int32_t>> kDocs = {
    {5, 6, 7, 8, 9}, {}, {10, 11, 12, 13}, {40, 41, 42, 43, 44, 45, 63}};

MegatronOptions tokenizer(int64_t vocab = 64) {
  return {vocab, /*bos=*/1, /*eos=*/2, "sha-of-the-tokenizer"};
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()),
             static_cast<std::streamsize>(bytes.size()));
}

// A copy of fixture NAME in `dir`, its .idx and .bin bytes passed through the edits.
struct Copy {
  std::string prefix;
  std::vector<uint8_t> idx, bin;
  Copy(const TempDir& dir, const std::string& name)
      : prefix(dir.file(name)),
        idx(read_bytes(kFixtures + name + ".idx")),
        bin(read_bytes(kFixtures + name + ".bin")) {
    REQUIRE(idx.size() > kMegatronHeaderBytes);
  }
  template <typename T>
  void put(std::vector<uint8_t>& bytes, size_t offset, T value) {
    std::memcpy(bytes.data() + offset, &value, sizeof value);
  }
  std::string save() const {
    write_bytes(prefix + ".idx", idx);
    write_bytes(prefix + ".bin", bin);
    return prefix;
  }
};

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::vector<int32_t> document(const TokenDataset& ds, int64_t d) {
  std::vector<int32_t> out(static_cast<size_t>(ds.document_length(d)));
  ds.read(d, 0, static_cast<int64_t>(out.size()), out.data());
  return out;
}

}  // namespace

TEST_CASE("megatron: builder output reads back document by document (uint16, int32)", "[unit]") {
  for (const char* name : {"tiny_u16", "tiny_i32"}) {
    INFO(name);
    for (const std::string& path :
         {kFixtures + name, kFixtures + name + ".bin", kFixtures + name + ".idx"}) {
      const TokenDataset ds = TokenDataset::open_megatron(path, tokenizer());
      CHECK(ds.dtype() == (std::string(name) == "tiny_u16" ? TokenDtype::U16 : TokenDtype::I32));
      REQUIRE(ds.num_documents() == 4);
      CHECK(ds.num_tokens() == 16);
      CHECK(ds.dir() == kFixtures + name);
      CHECK(ds.split() == "all");
      CHECK(ds.bos_id() == 1);
      CHECK(ds.eos_id() == 2);
      CHECK(ds.tokenizer_sha256() == "sha-of-the-tokenizer");
      CHECK(ds.scan_max_token_id() == 63);
      for (int64_t d = 0; d < 4; ++d) CHECK(document(ds, d) == kDocs[static_cast<size_t>(d)]);
      CHECK(ds.document_start(4) == 16);
      // A read inside a document that spans two sequences.
      int32_t mid[2];
      ds.read(0, 2, 2, mid);
      CHECK(mid[0] == 7);
      CHECK(mid[1] == 8);
    }
  }
}

TEST_CASE("megatron: a source is recognised by .bin/.idx or by PREFIX.idx", "[unit]") {
  TempDir dir;
  CHECK(megatron_prefix(dir.file("a/b.bin")) == dir.file("a/b"));
  CHECK(megatron_prefix(dir.file("a/b.idx")) == dir.file("a/b"));
  CHECK(megatron_prefix(kFixtures + "tiny_u16") == kFixtures + "tiny_u16");
  CHECK(megatron_prefix(dir.file("none")).empty());
  // A prepared dataset is a directory, even when DIR.idx exists beside it.
  std::filesystem::create_directories(dir.file("ds"));
  write_text(dir.file("ds.idx"), "");
  CHECK(megatron_prefix(dir.file("ds")).empty());
}

TEST_CASE("megatron: every damaged .idx/.bin is an error naming the file and field", "[unit]") {
  TempDir dir;
  const std::string idx = dir.file("tiny_u16.idx"), bin = dir.file("tiny_u16.bin");
  auto open_error = [&](Copy& c) {
    const std::string prefix = c.save();
    return error_of([&] { TokenDataset::open_megatron(prefix, tokenizer()); });
  };
  // Offsets of the fixture's arrays: 5 sequences, 5 document indices.
  const size_t lengths_at = 34, pointers_at = 34 + 5 * 4, docs_at = pointers_at + 5 * 8;

  SECTION("bad magic") {
    Copy c(dir, "tiny_u16");
    c.idx[0] = 'X';
    const std::string e = open_error(c);
    CHECK_THAT(e, Catch::Contains(idx) && Catch::Contains("magic (byte offset 0)") &&
                      Catch::Contains("XMIDIDX"));
  }
  SECTION("version") {
    Copy c(dir, "tiny_u16");
    c.put<uint64_t>(c.idx, 9, 2);
    CHECK_THAT(open_error(c),
               Catch::Contains(idx) && Catch::Contains("version (byte offset 9) is 2, expected 1"));
  }
  SECTION("dtype code") {
    Copy c(dir, "tiny_u16");
    c.idx[17] = 6;
    CHECK_THAT(open_error(c), Catch::Contains(idx) &&
                                  Catch::Contains("dtype code (byte offset 17) is 6 (float64)"));
    c.idx[17] = 99;
    CHECK_THAT(open_error(c), Catch::Contains(idx) && Catch::Contains("is 99 (unknown)"));
  }
  SECTION("truncated .idx") {
    Copy c(dir, "tiny_u16");
    c.idx.resize(c.idx.size() - 8);
    CHECK_THAT(open_error(c), Catch::Contains(idx) && Catch::Contains("truncated: 126 bytes") &&
                                  Catch::Contains("need at least 134"));
    c.idx.resize(20);
    CHECK_THAT(open_error(c), Catch::Contains(idx) && Catch::Contains("header alone needs 34"));
  }
  SECTION("counts larger than any file") {
    Copy c(dir, "tiny_u16");
    c.put<uint64_t>(c.idx, 18, ~uint64_t{0});
    CHECK_THAT(open_error(c), Catch::Contains(idx) && Catch::Contains("truncated"));
  }
  SECTION("trailing bytes; a multimodal index") {
    Copy c(dir, "tiny_u16");
    c.idx.push_back(0);
    CHECK_THAT(open_error(c), Catch::Contains(idx) && Catch::Contains("imply 134"));
    c.idx.resize(134 + 5);  // one mode byte per sequence
    CHECK_THAT(open_error(c), Catch::Contains(idx) && Catch::Contains("multimodal"));
  }
  SECTION(".bin too short or too long") {
    Copy c(dir, "tiny_u16");
    c.bin.resize(c.bin.size() - 2);
    CHECK_THAT(open_error(c), Catch::Contains(bin) && Catch::Contains("30 bytes") &&
                                  Catch::Contains("16 uint16 tokens = 32 bytes") &&
                                  Catch::Contains("truncated"));
    c.bin.resize(40);
    CHECK_THAT(open_error(c), Catch::Contains(bin) && Catch::Contains("40 bytes"));
  }
  SECTION("missing .bin") {
    Copy c(dir, "tiny_u16");
    c.save();
    std::filesystem::remove(bin);
    CHECK_THAT(error_of([&] { TokenDataset::open_megatron(c.prefix, tokenizer()); }),
               Catch::Contains(bin) && Catch::Contains("cannot open"));
  }
  SECTION("pointers going backwards") {
    Copy c(dir, "tiny_u16");
    c.put<int64_t>(c.idx, pointers_at + 8 * 2, 2);  // sequence 2 claims to start before 1 ends
    CHECK_THAT(open_error(c), Catch::Contains(idx) &&
                                  Catch::Contains("sequence_pointers[2] (byte offset 70) is 2, "
                                                  "expected 10") &&
                                  Catch::Contains("increasing and contiguous"));
    c.put<int64_t>(c.idx, pointers_at + 8 * 2, 10);
    c.put<int64_t>(c.idx, pointers_at, 4);
    CHECK_THAT(open_error(c), Catch::Contains("sequence_pointers[0]") &&
                                  Catch::Contains("the first sequence starts the .bin"));
  }
  SECTION("negative length") {
    Copy c(dir, "tiny_u16");
    c.put<int32_t>(c.idx, lengths_at + 4, -2);
    CHECK_THAT(open_error(c), Catch::Contains(idx) &&
                                  Catch::Contains("sequence_lengths[1] (byte offset 38) is -2"));
  }
  SECTION("document indices") {
    Copy c(dir, "tiny_u16");
    c.put<int64_t>(c.idx, docs_at + 8 * 2, 1);  // [0, 2, 1, 4, 5]: goes backwards
    CHECK_THAT(open_error(c), Catch::Contains(idx) && Catch::Contains("document_indices[2]") &&
                                  Catch::Contains("non-decreasing"));
    c.put<int64_t>(c.idx, docs_at + 8 * 2, 2);
    c.put<int64_t>(c.idx, docs_at + 8 * 4, 4);  // the last sequence in no document
    CHECK_THAT(open_error(c), Catch::Contains("expected the sequence count 5"));
    c.put<int64_t>(c.idx, docs_at + 8 * 4, 9);  // past the sequences
    CHECK_THAT(open_error(c), Catch::Contains("document_indices[4]") && Catch::Contains("is 9"));
  }
  SECTION("token ids >= the tokenizer's vocabulary") {
    Copy c(dir, "tiny_u16");
    const TokenDataset ds = TokenDataset::open_megatron(c.save(), tokenizer(/*vocab=*/50));
    CHECK(document(ds, 0) == kDocs[0]);  // ids below 50 read fine
    // Document 3 holds 63 at token 15 (byte 30).
    CHECK_THAT(error_of([&] { document(ds, 3); }),
               Catch::Contains(bin) && Catch::Contains("token id 63 at byte offset 30") &&
                   Catch::Contains("not below vocab_size 50"));
  }
  SECTION("negative ids of an int32 .bin") {
    Copy c(dir, "tiny_i32");
    c.put<int32_t>(c.bin, 4 * 6, -7);  // token 6: document 2's 11
    const TokenDataset ds = TokenDataset::open_megatron(c.save(), tokenizer());
    CHECK_THAT(error_of([&] { document(ds, 2); }),
               Catch::Contains(dir.file("tiny_i32.bin")) &&
                   Catch::Contains("token id -7 at byte offset 24") && Catch::Contains("negative"));
  }
}

TEST_CASE("megatron: packing adds EOS, or trusts the data's EOD with eos: data", "[unit]") {
  const TokenDataset plain = TokenDataset::open_megatron(kFixtures + "tiny_u16", tokenizer());
  const TokenDataset eod = TokenDataset::open_megatron(kFixtures + "tiny_u16_eod", tokenizer());
  // Both give the same stream: BOS doc EOS for every document (the empty one too).
  std::vector<int32_t> expected;
  for (const auto& d : kDocs) {
    expected.push_back(1);
    expected.insert(expected.end(), d.begin(), d.end());
    expected.push_back(2);
  }
  const int64_t seq_len = 4;
  auto stream = [&](const PackedSequences& p) {
    std::vector<int32_t> out;
    std::vector<int32_t> window(static_cast<size_t>(seq_len + 1));
    for (int64_t k = 0; k < p.num_windows(); ++k) {
      p.fill(k, window.data());
      if (k == 0) out.push_back(window[0]);
      out.insert(out.end(), window.begin() + 1, window.end());
    }
    return out;
  };
  const PackedSequences add(&plain, seq_len, BosPolicy::PerDocument, EosPolicy::Add);
  const PackedSequences data(&eod, seq_len, BosPolicy::PerDocument, EosPolicy::Data);
  CHECK(add.stream_length() == static_cast<int64_t>(expected.size()));
  CHECK(data.stream_length() == static_cast<int64_t>(expected.size()));
  const int64_t covered = add.num_windows() * seq_len + 1;  // the last partial window drops
  const std::vector<int32_t> head(expected.begin(), expected.begin() + covered);
  CHECK(stream(add) == head);
  CHECK(stream(data) == head);
  // eos: add on data that already ends with EOD doubles it; eos: data on data without EOD is
  // refused, naming the document.
  const PackedSequences doubled(&eod, seq_len, BosPolicy::None, EosPolicy::Add);
  std::vector<int32_t> w(static_cast<size_t>(seq_len + 1));
  doubled.fill(1, w.data());  // stream 5 6 7 8 9 2 2 | 2 2 ...: window 1 = 9 2 2 2 2
  CHECK(w == std::vector<int32_t>{9, 2, 2, 2, 2});
  CHECK_THAT(error_of([&] { PackedSequences(&plain, seq_len, BosPolicy::None, EosPolicy::Data); }),
             Catch::Contains("eos: data, but document 0 ends with token 9") &&
                 Catch::Contains("eos: add"));
  CHECK(parse_eos_policy("data") == EosPolicy::Data);
  CHECK_THAT(error_of([] { parse_eos_policy("twice", "data.train.eos"); }),
             Catch::Contains("data.train.eos") && Catch::Contains("unknown EOS policy"));
}

TEST_CASE("megatron: the loader needs a tokenizer, checks it, resumes exactly", "[unit]") {
  LoaderOptions o;
  o.sources = {{kFixtures + "tiny_u16", "train", 1.0}};
  o.seq_len = 4;
  o.global_batch = 2;
  o.seed = 5;
  CHECK_THAT(error_of([&] { PackedLoader l(o); }),
             Catch::Contains(kFixtures + "tiny_u16") && Catch::Contains("does not record its "
                                                                        "tokenizer"));
  o.megatron = tokenizer();
  o.tokenizer_sha256 = "another-tokenizer";
  CHECK_THAT(error_of([&] { PackedLoader l(o); }), Catch::Contains("different tokenizer"));
  o.tokenizer_sha256 = "sha-of-the-tokenizer";
  o.model_vocab_size = 32;  // the tokenizer's ids go up to 63
  CHECK_THAT(error_of([&] { PackedLoader l(o); }), Catch::Contains("vocabulary has 32"));
  o.model_vocab_size = 64;
  o.sources.push_back({kFixtures + "tiny_i32.bin", "val", 2.0});
  PackedLoader straight(o);
  std::vector<Batch> batches;
  for (int i = 0; i < 10; ++i) batches.push_back(straight.next());  // several epochs
  PackedLoader first(o);
  for (int i = 0; i < 4; ++i) first.next();
  const json::Value saved = first.state().to_json();
  LoaderOptions two_ranks = o;
  two_ranks.world_size = 2;
  two_ranks.rank = 1;
  PackedLoader resumed(two_ranks);
  resumed.restore(LoaderState::from_json(saved, "state.json"));
  for (int i = 4; i < 10; ++i) {
    const Batch b = resumed.next();
    CHECK(std::vector<int32_t>(b.tokens.begin(), b.tokens.end()) ==
          std::vector<int32_t>(batches[i].tokens.begin() + 5, batches[i].tokens.end()));
  }
}
