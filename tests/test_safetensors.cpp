// Safetensors as torch tensors: write/read round trips, zero-copy mapping, copy-on-write,
// sharded directories and their index.
#include "torch_test.h"

#include "core/error.h"
#include "core/file_util.h"
#include "core/json.h"
#include "model/safetensors.h"
#include "test_util.h"

using dus::testing::TempDir;

TEST_CASE("safetensors round trip keeps dtype, shape and values", "[unit]") {
  TempDir dir;
  torch::manual_seed(0);
  dus::NamedTensors tensors = {
      {"f32", torch::randn({3, 5})},
      {"bf16", torch::randn({7}).to(torch::kBFloat16)},
      {"f16", torch::randn({2, 2, 2}).to(torch::kFloat16)},
      {"i64", torch::arange(6, torch::kLong).reshape({2, 3})},
      {"u8", torch::arange(5, torch::kUInt8)},
      {"scalar", torch::tensor(3.5)},
      {"empty", torch::zeros({0, 4})},
  };
  const std::string path = dir.file("t.safetensors");
  dus::write_safetensors(path, tensors, {{"note", "hello"}});
  auto f = dus::SafetensorsFile::open(path);
  CHECK(f.metadata().at("format") == "pt");
  CHECK(f.metadata().at("note") == "hello");
  for (const auto& [name, t] : tensors) {
    auto r = f.tensor(name);
    CHECK(r.scalar_type() == t.scalar_type());
    CHECK(r.sizes() == t.sizes());
    CHECK(torch::equal(r, t));
  }
}

TEST_CASE("safetensors reads are zero-copy and copy-on-write", "[unit]") {
  TempDir dir;
  const std::string path = dir.file("t.safetensors");
  dus::write_safetensors(path, {{"a", torch::ones({1024})}, {"b", torch::ones({3}, torch::kBFloat16)}});
  const std::string before = dus::read_file(path);
  auto f = dus::SafetensorsFile::open(path);
  auto a = f.tensor("a");
  CHECK(f.is_mapped(a));
  CHECK(f.is_mapped(f.tensor("b")));
  a.mul_(2);  // writes go to private pages, never to the file
  CHECK(a[0].item<float>() == 2.0f);
  CHECK(dus::read_file(path) == before);
  CHECK(f.tensor("a")[0].item<float>() == 2.0f);  // same mapping, same private pages
}

TEST_CASE("writing twice gives identical bytes", "[unit]") {
  TempDir dir;
  dus::NamedTensors t = {{"x", torch::randn({4, 4})}, {"y", torch::randn({9})}};
  dus::write_safetensors(dir.file("1.safetensors"), t);
  dus::write_safetensors(dir.file("2.safetensors"), t);
  CHECK(dus::read_file(dir.file("1.safetensors")) == dus::read_file(dir.file("2.safetensors")));
}

TEST_CASE("sharded checkpoints write an index and read back", "[unit]") {
  TempDir dir;
  dus::NamedTensors t;
  for (int i = 0; i < 6; ++i) t.emplace_back("w" + std::to_string(i), torch::full({256}, float(i)));
  dus::ShardOptions opts;
  opts.max_shard_bytes = 2048;  // two 1 KiB tensors per shard
  auto files = dus::write_safetensors_sharded(dir.path(), t, opts);
  CHECK(files.size() == 4);  // three shards + index
  auto index = dus::json::parse_file(dir.file("model.safetensors.index.json"));
  CHECK(index.find("metadata")->find("total_size")->as_int() == 6 * 1024);
  CHECK(index.find("weight_map")->find("w5")->as_string() == "model-00003-of-00003.safetensors");
  auto ckpt = dus::SafetensorsCheckpoint::open_dir(dir.path());
  CHECK(ckpt.names().size() == 6);
  CHECK(ckpt.tensor("w4")[0].item<float>() == 4.0f);
  CHECK_THAT(ckpt.file_of("w0"), Catch::EndsWith("model-00001-of-00003.safetensors"));
}

TEST_CASE("sharded index defects are named", "[unit]") {
  TempDir dir;
  dus::NamedTensors t = {{"a", torch::ones({256})}, {"b", torch::ones({256})}};
  dus::ShardOptions opts;
  opts.max_shard_bytes = 1024;
  dus::write_safetensors_sharded(dir.path(), t, opts);
  const std::string index = dir.file("model.safetensors.index.json");
  auto expect_error = [&](const std::string& text, const std::string& needle) {
    dus::testing::write_text(index, text);
    try {
      dus::SafetensorsCheckpoint::open_dir(dir.path());
      FAIL("no error for " + text);
    } catch (const dus::Error& e) {
      CHECK_THAT(e.what(), Catch::Contains(needle));
    }
  };
  expect_error(R"({"weight_map":{"a":"model-00001-of-00002.safetensors","b":"missing.safetensors"}})",
               "shard 'missing.safetensors' listed for tensor 'b' does not exist");
  expect_error(R"({"weight_map":{"a":"model-00002-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}})",
               "index lists tensor 'a' in this shard, but the shard does not hold it");
  expect_error(R"({"weight_map":{"a":"../x.safetensors"}})", "not a plain file name");
  expect_error(R"({"nothing":1})", "missing \"weight_map\"");
}

TEST_CASE("a tensor in a shard but missing from the index is an error", "[unit]") {
  TempDir dir;
  dus::write_safetensors(dir.file("model.safetensors"), {{"a", torch::ones({4})}, {"b", torch::ones({4})}});
  dus::testing::write_text(dir.file("model.safetensors.index.json"), R"({"weight_map":{"a":"model.safetensors"}})");
  CHECK_THROWS_WITH(dus::SafetensorsCheckpoint::open_dir(dir.path()),
                    Catch::Contains("tensor 'b' is in the shard but not in"));
}

TEST_CASE("a directory without safetensors is a clear error", "[unit]") {
  TempDir dir;
  try {
    dus::SafetensorsCheckpoint::open_dir(dir.path());
    FAIL("no error");
  } catch (const dus::Error& e) {
    CHECK_THAT(e.what(), Catch::Contains("no model.safetensors"));
  }
}

TEST_CASE("a truncated file is an error, not a crash", "[unit]") {
  TempDir dir;
  const std::string path = dir.file("t.safetensors");
  dus::write_safetensors(path, {{"a", torch::ones({100})}});
  std::string bytes = dus::read_file(path);
  dus::testing::write_text(path, bytes.substr(0, bytes.size() - 10));
  CHECK_THROWS_WITH(dus::SafetensorsFile::open(path), Catch::Contains("run past the end of the data buffer"));
}
