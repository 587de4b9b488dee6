// The safetensors header: parsing and strict validation, with no dependency on torch so the
// fuzzer can drive it alone. Format: 8 bytes little-endian header length N, N bytes of JSON,
// then the data buffer. Every tensor entry is {"dtype", "shape", "data_offsets": [begin, end)}
// relative to the data buffer; "__metadata__" is an optional string-to-string map.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace dus {

enum class StDtype { BOOL, U8, I8, I16, U16, F16, BF16, I32, U32, F32, I64, U64, F64, F8_E4M3, F8_E5M2 };

/// Bytes per element.
int64_t st_dtype_size(StDtype dtype);
/// "BF16", "F32", ... as the format spells them.
const char* st_dtype_name(StDtype dtype);
/// Parses the format's spelling; returns false when unknown.
bool st_dtype_from_name(const std::string& name, StDtype* out);

struct StTensorEntry {
  std::string name;
  StDtype dtype = StDtype::F32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets into the data buffer, half-open
  uint64_t end = 0;
};

struct StHeader {
  std::vector<StTensorEntry> tensors;           // in data-offset order
  std::map<std::string, std::string> metadata;  // "__metadata__"
  uint64_t data_start = 0;                      // 8 + header length: where the buffer starts
};

/// Header lengths above this are rejected (the reference implementation's limit).
constexpr uint64_t kMaxSafetensorsHeaderBytes = 100u * 1024u * 1024u;

/// Parses and validates the header of a safetensors file held in memory (`bytes`, `size` is the
/// whole file). Throws dus::Error naming `source` (and the tensor) on: a file shorter than 8
/// bytes, a header length past the end of the file, a header that is not a JSON object, an
/// unknown dtype, a malformed shape or offsets, shape x dtype size not equal to the byte span,
/// offsets out of range, overlapping or leaving holes, and duplicate names.
StHeader parse_safetensors_header(const uint8_t* bytes, uint64_t size, const std::string& source);

}  // namespace dus
