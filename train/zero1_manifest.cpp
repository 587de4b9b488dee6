#include "train/zero1_manifest.h"

#include <limits>
#include <set>

#include <fmt/format.h>

#include "core/error.h"

namespace dus {

namespace {

constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();

const json::Array& tuple3(const json::Value& v, const std::string& where, const char* form) {
  if (!v.is_array())
    throw Error(where, std::string("expected ") + form + ", found " + v.type_name());
  const json::Array& t = v.as_array(where);
  if (t.size() != 3) throw Error(where, fmt::format("expected {}, found {} items", form, t.size()));
  return t;
}

int64_t require_int(const json::Value& v, const std::string& where) {
  if (!v.is_int()) throw Error(where, std::string("expected an integer, found ") + v.type_name());
  return v.as_int(where);
}

const std::string& require_string(const json::Value& v, const std::string& where) {
  if (!v.is_string()) throw Error(where, std::string("expected a string, found ") + v.type_name());
  return v.as_string(where);
}

const json::Array& require_array(const json::Value& v, const std::string& where) {
  if (!v.is_array()) throw Error(where, std::string("expected a list, found ") + v.type_name());
  return v.as_array(where);
}

}  // namespace

json::Value flat_layout_to_json(const FlatLayout& layout) {
  json::Array a;
  for (const auto& p : layout) {
    json::Array shape;
    for (int64_t d : p.shape) shape.push_back(json::Value(d));
    a.push_back(json::Value(
        json::Array{json::Value(p.name), json::Value(std::move(shape)), json::Value(p.offset)}));
  }
  return json::Value(std::move(a));
}

FlatLayout flat_layout_from_json(const json::Value& v, const std::string& where) {
  FlatLayout out;
  std::set<std::string> names;
  int64_t expect = 0;  // the sum of the elements before this parameter
  const json::Array& items = require_array(v, where);
  for (size_t i = 0; i < items.size(); ++i) {
    const std::string at = fmt::format("{}[{}]", where, i);
    const auto& t = tuple3(items[i], at, "[name, shape, offset]");
    FlatParam p;
    p.name = require_string(t[0], at + ".name");
    if (p.name.empty()) throw Error(at + ".name", "an empty parameter name");
    if (!names.insert(p.name).second)
      throw Error(at + ".name", "parameter '" + p.name + "' is listed twice");
    const json::Array& dims = require_array(t[1], at + ".shape");
    p.numel = 1;
    for (size_t k = 0; k < dims.size(); ++k) {
      const std::string dk = fmt::format("{}.shape[{}]", at, k);
      const int64_t d = require_int(dims[k], dk);
      if (d < 0) throw Error(dk, fmt::format("a negative dimension {}", d));
      if (d != 0 && p.numel > kInt64Max / d)
        throw Error(at + ".shape", "'" + p.name + "' has more than 2^63 elements");
      p.shape.push_back(d);
      p.numel *= d;
    }
    p.offset = require_int(t[2], at + ".offset");
    // Contiguous from 0: the flat space is the parameters concatenated in model order, so each
    // offset is implied; one that differs means the manifest was damaged.
    if (p.offset != expect)
      throw Error(at + ".offset",
                  fmt::format("parameter offsets are not contiguous at '{}': {}, expected {}",
                              p.name, p.offset, expect));
    if (p.numel > kInt64Max - expect)
      throw Error(at + ".shape", "the flat space exceeds 2^63 elements at '" + p.name + "'");
    expect += p.numel;
    out.push_back(std::move(p));
  }
  return out;
}

int64_t flat_layout_total(const FlatLayout& layout) {
  return layout.empty() ? 0 : layout.back().offset + layout.back().numel;
}

std::string zero1_shard_file(int rank) {
  return fmt::format("zero1_shard_{:05}.safetensors", rank);
}

Zero1Manifest zero1_manifest_from_json(const json::Value& v, const std::string& where) {
  if (!v.is_object()) throw Error(where, std::string("expected an object, found ") + v.type_name());
  for (const auto& [key, value] : v.as_object())
    if (key != "world_size" && key != "params" && key != "shards")
      throw Error(where + "." + key, "unknown key (expected world_size, params, shards)");
  auto require = [&](const char* key) -> const json::Value& {
    const json::Value* x = v.find(key);
    if (!x) throw Error(where, std::string("missing key \"") + key + "\"");
    return *x;
  };
  Zero1Manifest m;
  m.world_size = require_int(require("world_size"), where + ".world_size");
  if (m.world_size < 1)
    throw Error(where + ".world_size", fmt::format("expected >= 1, found {}", m.world_size));
  m.params = flat_layout_from_json(require("params"), where + ".params");
  if (m.params.empty()) throw Error(where + ".params", "no parameters");
  const int64_t total = flat_layout_total(m.params);

  const json::Array& shards = require_array(require("shards"), where + ".shards");
  if (static_cast<int64_t>(shards.size()) != m.world_size)
    throw Error(where + ".shards",
                fmt::format("{} shards, world_size is {}", shards.size(), m.world_size));
  int64_t covered = 0;
  for (size_t i = 0; i < shards.size(); ++i) {
    const std::string at = fmt::format("{}.shards[{}]", where, i);
    const auto& t = tuple3(shards[i], at, "[file, begin, end]");
    Zero1Shard s;
    s.file = require_string(t[0], at + ".file");
    // Opened relative to the checkpoint directory: only the name rank i writes, so a damaged
    // manifest cannot point the resume at a file elsewhere.
    if (s.file != zero1_shard_file(static_cast<int>(i)))
      throw Error(at + ".file",
                  "\"" + s.file + "\", expected \"" + zero1_shard_file(static_cast<int>(i)) + "\"");
    s.begin = require_int(t[1], at + ".begin");
    s.end = require_int(t[2], at + ".end");
    if (s.begin != covered)
      throw Error(at + ".begin",
                  fmt::format("shards do not cover the parameters contiguously: {}, expected {}",
                              s.begin, covered));
    if (s.end < s.begin || s.end > total)
      throw Error(at + ".end", fmt::format("{} is outside [{}, {}] (begin, parameter elements)",
                                           s.end, s.begin, total));
    covered = s.end;
    m.shards.push_back(std::move(s));
  }
  if (covered < total)
    throw Error(where + ".shards", fmt::format("shards cover {} of {} elements", covered, total));
  return m;
}

}  // namespace dus
