#include "model/safetensors_header.h"

#include <algorithm>
#include <string_view>

#include <fmt/format.h>

#include "core/error.h"
#include "core/json.h"

namespace dus {

namespace {
struct DtypeInfo {
  StDtype dtype;
  const char* name;
  int64_t size;
};
constexpr DtypeInfo kDtypes[] = {
    {StDtype::BOOL, "BOOL", 1},   {StDtype::U8, "U8", 1},     {StDtype::I8, "I8", 1},
    {StDtype::I16, "I16", 2},     {StDtype::U16, "U16", 2},   {StDtype::F16, "F16", 2},
    {StDtype::BF16, "BF16", 2},   {StDtype::I32, "I32", 4},   {StDtype::U32, "U32", 4},
    {StDtype::F32, "F32", 4},     {StDtype::I64, "I64", 8},   {StDtype::U64, "U64", 8},
    {StDtype::F64, "F64", 8},     {StDtype::F8_E4M3, "F8_E4M3", 1},
    {StDtype::F8_E5M2, "F8_E5M2", 1},
};
}  // namespace

int64_t st_dtype_size(StDtype dtype) {
  for (const auto& d : kDtypes)
    if (d.dtype == dtype) return d.size;
  return 0;
}

const char* st_dtype_name(StDtype dtype) {
  for (const auto& d : kDtypes)
    if (d.dtype == dtype) return d.name;
  return "?";
}

bool st_dtype_from_name(const std::string& name, StDtype* out) {
  for (const auto& d : kDtypes) {
    if (name == d.name) {
      *out = d.dtype;
      return true;
    }
  }
  return false;
}

namespace {

StTensorEntry parse_entry(const std::string& name, const json::Value& v, const std::string& source,
                          uint64_t data_size) {
  const std::string where = source + ": tensor '" + name + "'";
  if (!v.is_object()) throw Error(where, std::string("entry must be an object, found ") + v.type_name());
  for (const auto& [key, _] : v.as_object()) {
    if (key != "dtype" && key != "shape" && key != "data_offsets")
      throw Error(where, "unexpected key \"" + key + "\" (expected dtype, shape, data_offsets)");
  }
  const json::Value* dtype = v.find("dtype");
  const json::Value* shape = v.find("shape");
  const json::Value* offsets = v.find("data_offsets");
  if (!dtype || !shape || !offsets)
    throw Error(where, "entry needs the keys dtype, shape and data_offsets");

  StTensorEntry e;
  e.name = name;
  if (!dtype->is_string()) throw Error(where, "dtype must be a string");
  if (!st_dtype_from_name(dtype->as_string(), &e.dtype))
    throw Error(where, "unknown dtype \"" + dtype->as_string() + "\"",
                "known: BOOL U8 I8 I16 U16 F16 BF16 I32 U32 F32 I64 U64 F64 F8_E4M3 F8_E5M2");

  if (!shape->is_array()) throw Error(where, "shape must be an array of integers");
  // nbytes = prod(shape) * dtype size, computed with overflow checks: hostile shapes must not
  // wrap around into a small, plausible-looking size.
  unsigned __int128 nbytes = static_cast<unsigned __int128>(st_dtype_size(e.dtype));
  for (const auto& dim : shape->as_array()) {
    if (!dim.is_int() || dim.as_int() < 0)
      throw Error(where, "shape must hold non-negative integers");
    e.shape.push_back(dim.as_int());
    nbytes *= static_cast<uint64_t>(dim.as_int());
    if (nbytes > (static_cast<unsigned __int128>(1) << 64)) nbytes = static_cast<unsigned __int128>(1) << 64;
  }
  if (shape->as_array().size() > 16) throw Error(where, "shape has more than 16 dimensions");

  if (!offsets->is_array() || offsets->as_array().size() != 2 || !offsets->as_array()[0].is_int() ||
      !offsets->as_array()[1].is_int() || offsets->as_array()[0].as_int() < 0 ||
      offsets->as_array()[1].as_int() < 0)
    throw Error(where, "data_offsets must be [begin, end] with non-negative integers");
  e.begin = static_cast<uint64_t>(offsets->as_array()[0].as_int());
  e.end = static_cast<uint64_t>(offsets->as_array()[1].as_int());
  if (e.end < e.begin)
    throw Error(where, fmt::format("data_offsets end {} is before begin {}", e.end, e.begin));
  if (e.end > data_size)
    throw Error(where,
                fmt::format("data_offsets [{}, {}) run past the end of the data buffer ({} bytes)",
                            e.begin, e.end, data_size),
                "the file is truncated or the header is corrupt");
  if (nbytes != static_cast<unsigned __int128>(e.end - e.begin)) {
    std::string want = nbytes >= (static_cast<unsigned __int128>(1) << 64)
                           ? std::string("more than 2^64")
                           : std::to_string(static_cast<uint64_t>(nbytes));
    throw Error(where, fmt::format("shape x dtype size is {} bytes but data_offsets span {} bytes",
                                   want, e.end - e.begin));
  }
  return e;
}

}  // namespace

StHeader parse_safetensors_header(const uint8_t* bytes, uint64_t size, const std::string& source) {
  if (size < 8)
    throw Error(
        source,
        fmt::format("file is {} bytes, shorter than the 8-byte safetensors header length", size));
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];  // little-endian u64
  if (n > size - 8)
    throw Error(source,
                fmt::format("header length {} runs past the end of the file ({} bytes)", n, size),
                "the file is truncated or not a safetensors file");
  if (n > kMaxSafetensorsHeaderBytes)
    throw Error(source, fmt::format("header length {} exceeds the limit of {} bytes", n,
                                    kMaxSafetensorsHeaderBytes));

  std::string_view text(reinterpret_cast<const char*>(bytes + 8), n);
  json::Value header = json::parse(text, source + " (safetensors header)");
  if (!header.is_object())
    throw Error(source, std::string("safetensors header must be a JSON object, found ") +
                            header.type_name());

  StHeader out;
  out.data_start = 8 + n;
  const uint64_t data_size = size - out.data_start;
  for (const auto& [name, v] : header.as_object()) {
    if (name == "__metadata__") {
      if (!v.is_object()) throw Error(source, "__metadata__ must be an object of strings");
      for (const auto& [mk, mv] : v.as_object()) {
        if (!mv.is_string())
          throw Error(source, "__metadata__ value for \"" + mk + "\" must be a string");
        out.metadata[mk] = mv.as_string();
      }
      continue;
    }
    out.tensors.push_back(parse_entry(name, v, source, data_size));
  }

  // The data buffer must be covered exactly: entries sorted by offset start at 0, each starts
  // where the previous ended (no overlap, no hole), and the last ends at the end of the file.
  std::stable_sort(out.tensors.begin(), out.tensors.end(),
                   [](const StTensorEntry& a, const StTensorEntry& b) {
                     return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
                   });
  uint64_t expected = 0;
  for (const auto& e : out.tensors) {
    if (e.begin < expected)
      throw Error(source + ": tensor '" + e.name + "'",
                  fmt::format("data_offsets [{}, {}) overlap the previous tensor, which ends at {}",
                              e.begin, e.end, expected));
    if (e.begin > expected)
      throw Error(source + ": tensor '" + e.name + "'",
                  fmt::format("data_offsets leave a hole: bytes [{}, {}) belong to no tensor",
                              expected, e.begin));
    expected = e.end;
  }
  if (expected != data_size)
    throw Error(source,
                fmt::format("tensors cover {} bytes of the data buffer but it holds {} bytes",
                            expected, data_size),
                "the file has trailing bytes or a tensor is missing from the header");
  return out;
}

}  // namespace dus
