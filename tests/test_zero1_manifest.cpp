// The "zero1" manifest of a sharded checkpoint: the ones the trainer wrote (2 and 3 ranks) parse
// to the layout they describe; damaged ones are refused with an error naming the key.
#include <catch2/catch.hpp>

#include <string>

#include "core/error.h"
#include "core/file_util.h"
#include "core/json.h"
#include "train/zero1_manifest.h"

namespace {

const std::string kWhere = "step_00000006/state.json: zero1";

dus::json::Value real_manifest(int ranks) {
  const std::string path = std::string(DUS_SOURCE_DIR) + "/tests/fuzz/corpus/fuzz_zero1_manifest/" +
                           "kjv_base_zero1_" + std::to_string(ranks) + "ranks.json";
  return dus::json::parse(dus::read_file(path), path);
}

// The error's where() for the manifest `text`, or "" when it is accepted.
std::string refused_at(const std::string& text) {
  try {
    dus::zero1_manifest_from_json(dus::json::parse(text, "m"), kWhere);
  } catch (const dus::Error& e) {
    return e.where();
  }
  return "";
}

// A two-parameter layout of 6 + 4 = 10 elements, with `shards` substituted.
std::string two_params(const std::string& shards, const std::string& world = "2") {
  return R"({"world_size": )" + world + R"(, "params": [["a", [2, 3], 0], ["b", [4], 6]], )" +
         R"("shards": )" + shards + "}";
}

}  // namespace

TEST_CASE("zero1 manifest: the trainer's own manifests parse", "[unit]") {
  for (int ranks : {2, 3}) {
    const dus::Zero1Manifest m = dus::zero1_manifest_from_json(real_manifest(ranks), kWhere);
    CHECK(m.world_size == ranks);
    REQUIRE(m.shards.size() == static_cast<size_t>(ranks));
    // tests/base.yaml's model: vocab 512 x hidden 64 embedding first, 238,144 elements in all.
    CHECK(m.params.front().name == "model.embed_tokens.weight");
    CHECK(m.params.front().shape == std::vector<int64_t>{512, 64});
    CHECK(m.params.front().numel == 512 * 64);
    CHECK(dus::flat_layout_total(m.params) == 238144);
    CHECK(m.shards.front().begin == 0);
    CHECK(m.shards.back().end == 238144);
    for (int r = 0; r < ranks; ++r) CHECK(m.shards[r].file == dus::zero1_shard_file(r));
    // Written back as the sharded optimizer writes it, the layout reads back equal.
    const dus::FlatLayout back =
        dus::flat_layout_from_json(dus::flat_layout_to_json(m.params), kWhere + ".params");
    REQUIRE(back.size() == m.params.size());
    for (size_t i = 0; i < back.size(); ++i) CHECK(back[i].offset == m.params[i].offset);
  }
}

TEST_CASE("zero1 manifest: a well-formed small manifest", "[unit]") {
  CHECK(refused_at(two_params(R"([["zero1_shard_00000.safetensors", 0, 5],
                                   ["zero1_shard_00001.safetensors", 5, 10]])")) == "");
}

TEST_CASE("zero1 manifest: damaged manifests are refused naming the key", "[unit]") {
  const std::string ok_shards =
      R"([["zero1_shard_00000.safetensors", 0, 5], ["zero1_shard_00001.safetensors", 5, 10]])";
  // Missing and unknown keys, wrong types.
  CHECK(refused_at(R"({"world_size": 1, "params": [["a", [2], 0]]})") == kWhere);
  CHECK(refused_at(R"({"world_size": 2, "params": [], "shards": [], "extra": 1})") ==
        kWhere + ".extra");
  CHECK(refused_at(two_params(ok_shards, "\"2\"")) == kWhere + ".world_size");
  CHECK(refused_at(two_params(ok_shards, "0")) == kWhere + ".world_size");
  CHECK(refused_at(R"({"world_size": 1, "params": {}, "shards": []})") == kWhere + ".params");
  CHECK(refused_at(R"({"world_size": 1, "params": [], "shards": []})") == kWhere + ".params");
  // Parameters: arity, name, shape, offsets.
  const auto param = [&](const std::string& p) {
    return refused_at(R"({"world_size": 1, "params": [["a", [2], 0], )" + p +
                      R"(], "shards": [["zero1_shard_00000.safetensors", 0, 2]]})");
  };
  CHECK(param(R"(["b", [2]])") == kWhere + ".params[1]");
  CHECK(param(R"(["", [2], 2])") == kWhere + ".params[1].name");
  CHECK(param(R"(["a", [2], 2])") == kWhere + ".params[1].name");  // listed twice
  CHECK(param(R"(["b", [2, -3], 2])") == kWhere + ".params[1].shape[1]");
  CHECK(param(R"(["b", [2.5], 2])") == kWhere + ".params[1].shape[0]");
  CHECK(param(R"(["b", [4294967296, 4294967296], 2])") == kWhere + ".params[1].shape");
  CHECK(param(R"(["b", [2], 3])") == kWhere + ".params[1].offset");                   // a gap
  CHECK(param(R"(["b", [2], -1])") == kWhere + ".params[1].offset");                  // negative
  CHECK(param(R"(["b", [9223372036854775807], 2])") == kWhere + ".params[1].shape");  // total
  // Shards: count, names, ranges.
  CHECK(refused_at(two_params(ok_shards, "3")) == kWhere + ".shards");
  CHECK(refused_at(two_params(R"([["zero1_shard_00000.safetensors", 0, 5],
                                  ["../../model.safetensors", 5, 10]])")) ==
        kWhere + ".shards[1].file");
  CHECK(refused_at(two_params(R"([["zero1_shard_00000.safetensors", 0, 5],
                                  ["zero1_shard_00001.safetensors", 5]])")) ==
        kWhere + ".shards[1]");
  CHECK(refused_at(two_params(R"([["zero1_shard_00000.safetensors", 1, 5],
                                  ["zero1_shard_00001.safetensors", 5, 10]])")) ==
        kWhere + ".shards[0].begin");
  CHECK(refused_at(two_params(R"([["zero1_shard_00000.safetensors", 0, 5],
                                  ["zero1_shard_00001.safetensors", 6, 10]])")) ==
        kWhere + ".shards[1].begin");
  CHECK(refused_at(two_params(R"([["zero1_shard_00000.safetensors", 0, 5],
                                  ["zero1_shard_00001.safetensors", 5, 4]])")) ==
        kWhere + ".shards[1].end");
  CHECK(refused_at(two_params(R"([["zero1_shard_00000.safetensors", 0, 5],
                                  ["zero1_shard_00001.safetensors", 5, 11]])")) ==
        kWhere + ".shards[1].end");
  CHECK(refused_at(two_params(R"([["zero1_shard_00000.safetensors", 0, 5],
                                  ["zero1_shard_00001.safetensors", 5, 9]])")) ==
        kWhere + ".shards");
}
