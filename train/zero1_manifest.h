// The "zero1" manifest of a sharded-optimizer checkpoint (state.json; train/checkpoint.h):
// the parameters flattened and concatenated in model order (name, shape, offset) and the shard
// files that hold ranges [begin, end) of that flat space, one per saving rank:
//
//   "zero1": {"world_size": 2,
//             "params": [["model.embed_tokens.weight", [512, 64], 0], ...],
//             "shards": [["zero1_shard_00000.safetensors", 0, 54400], ...]}
//
// Torch-free, so the parsing and every check on it can be fuzzed alone (tests/fuzz/). What needs
// the files (each shard's tensors have end - begin elements) or the model (the parameters are
// the weights of config.json) is checked by open_checkpoint.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/json.h"

namespace dus {

/// One parameter in the flattened order of a sharded optimizer.
struct FlatParam {
  std::string name;            ///< Hugging Face name
  std::vector<int64_t> shape;  ///< its shape
  int64_t offset = 0;          ///< first element in the flat space
  int64_t numel = 0;           ///< elements
};
using FlatLayout = std::vector<FlatParam>;
json::Value flat_layout_to_json(const FlatLayout& layout);
/// Parses [[name, shape, offset], ...]. Throws dus::Error naming the entry unless every name is a
/// non-empty string seen once, every dimension a non-negative integer whose product fits int64,
/// and the offsets run contiguously from 0 (each the sum of the elements before it).
FlatLayout flat_layout_from_json(const json::Value& v, const std::string& where);
/// Elements of the flat space: the last parameter's offset + numel (0 when empty).
int64_t flat_layout_total(const FlatLayout& layout);

/// The name of rank r's shard file of a ZeRO-1 checkpoint.
std::string zero1_shard_file(int rank);

/// One shard file: elements [begin, end) of the flat space.
struct Zero1Shard {
  std::string file;  ///< zero1_shard_file(its rank), relative to the checkpoint directory
  int64_t begin = 0;
  int64_t end = 0;
};

struct Zero1Manifest {
  int64_t world_size = 0;          ///< ranks that saved it (one shard each)
  FlatLayout params;               ///< the flat layout, at least one parameter
  std::vector<Zero1Shard> shards;  ///< world_size shards, contiguous, covering [0, total)
};

/// Parses and checks state.json's "zero1" object: exactly the keys world_size, params and
/// shards; world_size >= 1 shards, shard i named zero1_shard_file(i) (never a path elsewhere),
/// begin of each the end of the one before (the first 0), begin <= end, and the last ending at
/// the layout's total. Throws dus::Error naming the key at fault.
Zero1Manifest zero1_manifest_from_json(const json::Value& v, const std::string& where);

}  // namespace dus
