// The packed loader: packing with EOS (and BOS per policy), the seeded permutation, global
// samples identical for world sizes 1, 2 and 4 with disjoint rank parts, exact stop/restore,
// deterministic weighted mixtures, and the checks on tokenizer hash and vocabulary bound.
#include <catch2/catch.hpp>
#include <functional>
#include <map>
#include <set>

#include "core/error.h"
#include "core/file_util.h"
#include "data/dataset_writer.h"
#include "data/packed_loader.h"
#include "data/sample_order.h"
#include "test_util.h"

using namespace dus;
using dus::testing::TempDir;

namespace {

constexpr int32_t kBos = 1, kEos = 2;

json::Value tokenizer_fields(const std::string& sha = "aaaa") {
  return json::Object{
      {"sha256", sha}, {"vocab_size", 1000}, {"bos_id", kBos}, {"eos_id", kEos}, {"unk_id", 0}};
}

// Documents whose tokens encode (document, position): doc d has 1 + d % 17 tokens valued
// 10 + (d * 7 + i) % 900, easy to recognise.
std::vector<std::vector<int32_t>> make_docs(int n, int offset = 0) {
  std::vector<std::vector<int32_t>> docs;
  for (int d = 0; d < n; ++d) {
    std::vector<int32_t> doc;
    for (int i = 0; i < 1 + (d + offset) % 17; ++i)
      doc.push_back(10 + ((d + offset) * 7 + i) % 900);
    docs.push_back(doc);
  }
  return docs;
}

std::string make_dataset(const TempDir& dir, const std::string& name, int docs, int offset = 0,
                         const std::string& sha = "aaaa", int64_t vocab = 1000) {
  const std::string path = dir.file(name);
  write_token_dataset(path, make_docs(docs, offset), make_docs(5, offset + 1),
                      tokenizer_fields(sha), vocab,
                      /*shard_tokens=*/300);  // several shards
  return path;
}

LoaderOptions options(const std::string& dir, int64_t seq_len = 16, int64_t global_batch = 8) {
  LoaderOptions o;
  o.sources = {{dir, "train", 1.0}};
  o.seq_len = seq_len;
  o.global_batch = global_batch;
  o.seed = 1234;
  return o;
}

}  // namespace

TEST_CASE("packing: documents joined with BOS/EOS, windows overlap by one token", "[unit]") {
  TempDir dir;
  const std::string path = make_dataset(dir, "d", 200);
  TokenDataset ds = TokenDataset::open(path, "train");
  REQUIRE(ds.num_documents() == 200);
  for (BosPolicy bos : {BosPolicy::PerDocument, BosPolicy::None}) {
    std::vector<int32_t> stream;
    for (const auto& d : make_docs(200)) {
      if (bos == BosPolicy::PerDocument) stream.push_back(kBos);
      stream.insert(stream.end(), d.begin(), d.end());
      stream.push_back(kEos);
    }
    PackedSequences seq(&ds, 16, bos);
    CHECK(seq.stream_length() == static_cast<int64_t>(stream.size()));
    CHECK(seq.num_windows() == (static_cast<int64_t>(stream.size()) - 1) / 16);
    std::vector<int32_t> w(17);
    for (int64_t k = 0; k < seq.num_windows(); ++k) {
      seq.fill(k, w.data());
      INFO("window " << k << " bos " << bos_policy_name(bos));
      REQUIRE(std::equal(w.begin(), w.end(), stream.begin() + k * 16));
    }
  }
  CHECK_THROWS_WITH(PackedSequences(&ds, 100000, BosPolicy::None),
                    Catch::Contains("fewer than one sequence"));
}

TEST_CASE("the sample permutation is a seeded bijection", "[unit]") {
  for (uint64_t n : {1ull, 2ull, 7ull, 1000ull, 4097ull}) {
    SamplePermutation p(n, 42, 0);
    std::set<uint64_t> seen;
    for (uint64_t i = 0; i < n; ++i) seen.insert(p(i));
    CHECK(seen.size() == n);
    CHECK(*seen.rbegin() == n - 1);
  }
  SamplePermutation a(1000, 42, 0), b(1000, 42, 1), c(1000, 43, 0), a2(1000, 42, 0);
  int same_epoch = 0, same_seed = 0, fixed = 0;
  for (uint64_t i = 0; i < 1000; ++i) {
    same_epoch += a(i) == b(i);
    same_seed += a(i) == c(i);
    fixed += a(i) == i;
    REQUIRE(a(i) == a2(i));
  }
  CHECK(same_epoch < 20);
  CHECK(same_seed < 20);
  CHECK(fixed < 20);
  SamplePermutation identity(50, 42, 3, /*shuffle=*/false);
  CHECK(identity(17) == 17);
}

TEST_CASE("global samples are the same for world sizes 1, 2 and 4; ranks are disjoint", "[unit]") {
  TempDir dir;
  const std::string path = make_dataset(dir, "d", 300);
  PackedLoader single(options(path));
  const int64_t windows = single.windows(0);
  std::vector<std::vector<int32_t>> reference;  // per global batch, all rows
  std::vector<std::vector<uint64_t>> reference_samples;
  const int batches = static_cast<int>(2 * windows / 8 + 3);  // crosses two epoch boundaries
  for (int b = 0; b < batches; ++b) {
    Batch batch = single.next();
    reference.push_back(batch.tokens);
    reference_samples.push_back(batch.samples);
  }
  CHECK(single.epoch() == 2);
  for (int world : {2, 4}) {
    std::vector<PackedLoader> ranks;
    for (int r = 0; r < world; ++r) {
      LoaderOptions o = options(path);
      o.world_size = world;
      o.rank = r;
      ranks.emplace_back(o);
    }
    for (int b = 0; b < batches; ++b) {
      std::vector<int32_t> joined;
      std::vector<uint64_t> samples;
      for (auto& loader : ranks) {
        Batch part = loader.next();
        CHECK(part.rows == 8 / world);
        joined.insert(joined.end(), part.tokens.begin(), part.tokens.end());
        samples.insert(samples.end(), part.samples.begin(), part.samples.end());
      }
      INFO("world " << world << " batch " << b);
      REQUIRE(joined == reference[static_cast<size_t>(b)]);
      REQUIRE(samples == reference_samples[static_cast<size_t>(b)]);
    }
  }
  // One epoch visits every window exactly once.
  LoaderOptions o = options(path, 16, 1);
  PackedLoader one(o);
  PackedSequences seq(&one.dataset(0), 16, BosPolicy::PerDocument);
  std::map<std::vector<int32_t>, int> expected, got;
  std::vector<int32_t> w(17);
  for (int64_t k = 0; k < windows; ++k) {
    seq.fill(k, w.data());
    ++expected[w];
    ++got[one.next().tokens];
  }
  CHECK(got == expected);

  LoaderOptions bad = options(path, 16, 6);
  bad.world_size = 4;
  CHECK_THROWS_WITH(PackedLoader(bad),
                    Catch::Contains("not a positive multiple of the world size"));
}

TEST_CASE("stop, save state, restore, continue equals an uninterrupted run", "[unit]") {
  TempDir dir;
  const std::string a = make_dataset(dir, "a", 300), b = make_dataset(dir, "b", 120, 5);
  LoaderOptions o = options(a);
  o.sources = {{a, "train", 3.0}, {b, "train", 1.0}};
  PackedLoader full(o);
  std::vector<std::vector<int32_t>> uninterrupted;
  for (int i = 0; i < 60; ++i) uninterrupted.push_back(full.next().tokens);

  PackedLoader first(o);
  for (int i = 0; i < 23; ++i) first.next();
  // Through JSON, as a checkpoint's state.json carries it.
  const std::string saved = json::dump(first.state().to_json());
  LoaderState state = LoaderState::from_json(json::parse(saved, "state.json"), "state.json");
  CHECK(state == first.state());
  // Resume with a different world size: rank parts of the same global batches.
  std::vector<PackedLoader> resumed;
  for (int r = 0; r < 2; ++r) {
    LoaderOptions ro = o;
    ro.world_size = 2;
    ro.rank = r;
    resumed.emplace_back(ro);
    resumed.back().restore(state);
  }
  for (int i = 23; i < 60; ++i) {
    std::vector<int32_t> joined = resumed[0].next().tokens;
    std::vector<int32_t> second = resumed[1].next().tokens;
    joined.insert(joined.end(), second.begin(), second.end());
    INFO("batch " << i);
    REQUIRE(joined == uninterrupted[static_cast<size_t>(i)]);
  }
  CHECK(resumed[0].state() == full.state());

  LoaderOptions other_seed = o;
  other_seed.seed = 99;
  PackedLoader wrong(other_seed);
  CHECK_THROWS_WITH(wrong.restore(state), Catch::Contains("seed"));
  CHECK_THROWS_WITH(LoaderState::from_json(json::parse("{\"samples\": 1}", "s"), "state.json"),
                    Catch::Contains("state.json") && Catch::Contains("source_samples"));
}

TEST_CASE("weighted mixtures are deterministic and follow the weights", "[unit]") {
  TempDir dir;
  const std::string a = make_dataset(dir, "a", 300), b = make_dataset(dir, "b", 100, 3);
  LoaderOptions o = options(a, 16, 10);
  o.sources = {{a, "train", 0.7}, {b, "train", 0.3}};
  PackedLoader l1(o), l2(o);
  for (int i = 0; i < 50; ++i) REQUIRE(l1.next().tokens == l2.next().tokens);
  // Largest-deficit picking: after 500 samples the counts are exactly 350 / 150.
  CHECK(l1.state().source_samples == std::vector<uint64_t>{350, 150});
  CHECK(l1.epoch(1) >= 1);  // the small source wrapped into its next epoch

  MixtureSchedule m({1, 1, 2});
  std::vector<uint64_t> counts(3, 0);
  for (int i = 0; i < 8; ++i) ++counts[m.pick(counts)];
  CHECK(counts == std::vector<uint64_t>{2, 2, 4});
  CHECK_THROWS_WITH(MixtureSchedule({1.0, 0.0}), Catch::Contains("weight"));
}

TEST_CASE("loader refuses data from another tokenizer or beyond the model vocabulary", "[unit]") {
  TempDir dir;
  const std::string a = make_dataset(dir, "a", 100, 0, "aaaa"),
                    b = make_dataset(dir, "b", 100, 0, "bbbb");
  LoaderOptions o = options(a);
  o.tokenizer_sha256 = "bbbb";
  CHECK_THROWS_WITH(PackedLoader(o),
                    Catch::Contains("tokenizer.sha256") && Catch::Contains("different tokenizer"));
  o.tokenizer_sha256 = "";
  o.sources = {{a, "train", 1}, {b, "train", 1}};
  CHECK_THROWS_WITH(PackedLoader(o), Catch::Contains("same tokenizer"));
  o.sources = {{a, "train", 1}};
  o.model_vocab_size = 500;  // the documents hold ids up to 909
  CHECK_THROWS_WITH(PackedLoader(o), Catch::Contains("vocabulary has 500"));
  o.model_vocab_size = 1000;
  CHECK_NOTHROW(PackedLoader(o));

  // A truncated shard is caught at open.
  const std::string shard = a + "/train-00000.bin";
  std::filesystem::resize_file(shard, std::filesystem::file_size(shard) - 2);
  CHECK_THROWS_WITH(TokenDataset::open(a),
                    Catch::Contains("train-00000.bin") && Catch::Contains("size"));
  CHECK_THROWS_WITH(TokenDataset::open(b, "test"), Catch::Contains("no split \"test\""));
}

TEST_CASE("uint32 shards for large vocabularies; a malformed index.json names the key", "[unit]") {
  CHECK(dtype_for_vocab(32000) == TokenDtype::U16);
  CHECK(dtype_for_vocab(65536) == TokenDtype::U16);
  CHECK(dtype_for_vocab(65537) == TokenDtype::U32);
  TempDir dir;
  std::vector<std::vector<int32_t>> docs = {{70000, 5, 131071}, {65536, 65535}};
  write_token_dataset(dir.file("big"), docs, {}, tokenizer_fields(), 131072);
  TokenDataset ds = TokenDataset::open(dir.file("big"));
  CHECK(ds.dtype() == TokenDtype::U32);
  CHECK(ds.max_token_id() == 131071);
  std::vector<int32_t> got(3);
  ds.read(0, 0, 3, got.data());
  CHECK(got == docs[0]);
  ds.read(1, 1, 1, got.data());
  CHECK(got[0] == 65535);
  // A uint16 dataset cannot hold an id above 65535.
  CHECK_THROWS_WITH(write_token_dataset(dir.file("small"), docs, {}, tokenizer_fields(), 1000),
                    Catch::Contains("does not fit uint16"));

  std::string index = dus::read_file(dir.file("big/index.json"));
  index.replace(index.find("\"dtype\""), 7, "\"dtipe\"");
  dus::testing::write_text(dir.file("big/index.json"), index);
  CHECK_THROWS_WITH(TokenDataset::open(dir.file("big")),
                    Catch::Contains("index.json") && Catch::Contains("missing key \"dtype\""));
}

namespace {

// A one-shard dataset of three documents (3, 2 and 4 tokens: ends 3, 5, 9), ids below 60.
std::string small_dataset(const TempDir& dir) {
  const std::string path = dir.file("small");
  write_token_dataset(path, {{11, 12, 13}, {21, 22}, {31, 32, 33, 34}}, {{41}}, tokenizer_fields(),
                      1000);
  return path;
}

void patch_bytes(const std::string& path, size_t offset, const void* bytes, size_t n) {
  std::string data = dus::read_file(path);
  REQUIRE(offset + n <= data.size());
  data.replace(offset, n, static_cast<const char*>(bytes), n);
  dus::testing::write_text(path, data);
}

// Rewrites one number of index.json: `keys` walks down from the root (array indices as text).
void patch_index(const std::string& dir, const std::vector<std::string>& keys, json::Value v) {
  json::Value index = json::parse_file(dir + "/index.json");
  std::function<void(json::Value&, size_t)> set = [&](json::Value& node, size_t i) {
    if (i + 1 == keys.size()) {
      node.set(keys[i], v);
      return;
    }
    if (node.is_array()) {
      set(node.mutable_array()[std::stoul(keys[i])], i + 1);
    } else {
      json::Value child = *node.find(keys[i]);
      set(child, i + 1);
      node.set(keys[i], child);
    }
  };
  set(index, 0);
  dus::testing::write_text(dir + "/index.json", json::dump(index, 2));
}

}  // namespace

TEST_CASE("a .idx whose end offsets go backwards or leave the shard is refused at open",
          "[unit]") {
  TempDir dir;
  const std::string ds = small_dataset(dir);
  const std::string idx = ds + "/train-00000.idx";
  REQUIRE_NOTHROW(TokenDataset::open(ds));
  const std::string good = dus::read_file(idx);

  // Document 1 ends before document 0 does (3 -> 2): its range would be negative.
  const uint64_t backwards = 2;
  patch_bytes(idx, 8, &backwards, 8);
  CHECK_THROWS_WITH(TokenDataset::open(ds), Catch::Contains("train-00000.idx") &&
                                                Catch::Contains("document 1 (byte offset 8)") &&
                                                Catch::Contains("ends at token 2") &&
                                                Catch::Contains("non-decreasing"));
  // Document 1 ends past the shard's 9 tokens (the last end still matches the shard).
  dus::testing::write_text(idx, good);
  const uint64_t beyond = 100;
  patch_bytes(idx, 8, &beyond, 8);
  CHECK_THROWS_WITH(TokenDataset::open(ds), Catch::Contains("train-00000.idx") &&
                                                Catch::Contains("document 1 (byte offset 8)") &&
                                                Catch::Contains("[3, 9]"));
  // Document 0 ends past the shard.
  dus::testing::write_text(idx, good);
  const uint64_t huge = ~uint64_t{0};
  patch_bytes(idx, 0, &huge, 8);
  CHECK_THROWS_WITH(TokenDataset::open(ds), Catch::Contains("document 0 (byte offset 0)"));
}

TEST_CASE("token ids at or above the dataset's vocabulary are refused", "[unit]") {
  TempDir dir;
  const std::string ds = small_dataset(dir);

  SECTION("index.json's max_token_id must be below vocab_size") {
    patch_index(ds, {"splits", "train", "max_token_id"}, json::Value(1000));
    CHECK_THROWS_WITH(TokenDataset::open(ds), Catch::Contains("index.json: splits.train") &&
                                                  Catch::Contains("max_token_id") &&
                                                  Catch::Contains("vocab_size 1000"));
  }
  SECTION("vocab_size must fit the dtype, special ids must be below it") {
    patch_index(ds, {"vocab_size"}, json::Value(70000));  // uint16 holds 65536 ids
    CHECK_THROWS_WITH(TokenDataset::open(ds),
                      Catch::Contains("index.json: vocab_size") && Catch::Contains("uint16"));
    patch_index(ds, {"vocab_size"}, json::Value(0));
    CHECK_THROWS_WITH(TokenDataset::open(ds), Catch::Contains("index.json: vocab_size"));
    patch_index(ds, {"vocab_size"}, json::Value(1000));
    patch_index(ds, {"tokenizer", "eos_id"}, json::Value(1000));
    CHECK_THROWS_WITH(TokenDataset::open(ds), Catch::Contains("tokenizer.eos_id"));
  }
  SECTION("a stored id >= vocab_size is refused on read, naming the shard and byte offset") {
    // Token 1 of document 2 (shard position 5 + 1 = 6, byte offset 12) becomes 1000.
    const uint16_t bad = 1000;
    patch_bytes(ds + "/train-00000.bin", 12, &bad, 2);
    TokenDataset d = TokenDataset::open(ds);  // index.json still claims max 34
    std::vector<int32_t> out(4);
    d.read(1, 0, 2, out.data());  // other documents read as before
    CHECK(out[0] == 21);
    CHECK_NOTHROW(d.read(2, 0, 1, out.data()));  // the part before the bad id too
    CHECK_THROWS_WITH(d.read(2, 0, 4, out.data()),
                      Catch::Contains("train-00000.bin") && Catch::Contains("token id 1000") &&
                          Catch::Contains("byte offset 12") && Catch::Contains("document 2"));
    CHECK_THROWS_WITH(d.read(3, 0, 1, out.data()), Catch::Contains("out of range"));
  }
}

TEST_CASE("index.json counts must be non-negative and sizes must not overflow", "[unit]") {
  TempDir dir;
  const std::string ds = small_dataset(dir);
  SECTION("negative shard tokens") {
    patch_index(ds, {"splits", "train", "shards", "0", "tokens"}, json::Value(-1));
    CHECK_THROWS_WITH(TokenDataset::open(ds), Catch::Contains("splits.train.shards[0]: tokens") &&
                                                  Catch::Contains("count >= 0"));
  }
  SECTION("negative split documents") {
    patch_index(ds, {"splits", "train", "documents"}, json::Value(-1));
    CHECK_THROWS_WITH(TokenDataset::open(ds), Catch::Contains("splits.train: documents"));
  }
  SECTION("shard tokens x dtype bytes overflows") {
    patch_index(ds, {"splits", "train", "shards", "0", "tokens"},
                json::Value(int64_t{1} << 62));  // x 2 bytes = 2^63
    CHECK_THROWS_WITH(TokenDataset::open(ds),
                      Catch::Contains("shards[0].tokens") && Catch::Contains("overflows"));
  }
  SECTION("tokens in a shard without documents") {
    patch_index(ds, {"splits", "train", "shards", "0", "documents"}, json::Value(0));
    CHECK_THROWS_WITH(TokenDataset::open(ds),
                      Catch::Contains("shards[0]") && Catch::Contains("but no documents"));
  }
  SECTION("a shard name that is not a file in the dataset") {
    patch_index(ds, {"splits", "train", "shards", "0", "file"}, json::Value(".."));
    CHECK_THROWS_WITH(TokenDataset::open(ds), Catch::Contains("shards[0].file"));
  }
}

TEST_CASE("a state.json loader entry with a malformed seed or a negative count is an Error",
          "[unit]") {
  LoaderState s;
  s.samples = 24;
  s.source_samples = {24};
  s.seed = 18446744073709551615ull;  // uint64 max: why the seed is a string
  s.seq_len = 64;
  s.source_windows = {100};
  CHECK(LoaderState::from_json(s.to_json(), "state.json") == s);
  for (const char* seed : {"12abc", "", "-1", " 12", "18446744073709551616"}) {
    json::Value v = s.to_json();
    v.set("seed", json::Value(seed));
    CHECK_THROWS_AS(LoaderState::from_json(v, "state.json: loader"), dus::Error);
    CHECK_THROWS_WITH(LoaderState::from_json(v, "state.json: loader"),
                      Catch::Contains("state.json: loader: seed"));
  }
  json::Value v = s.to_json();
  v.set("samples", json::Value(-1));
  CHECK_THROWS_WITH(LoaderState::from_json(v, "state.json: loader"),
                    Catch::Contains("samples") && Catch::Contains("count >= 0"));
  CHECK_THROWS_AS(LoaderState::from_json(json::Value(json::Array{}), "state.json"), dus::Error);
}
