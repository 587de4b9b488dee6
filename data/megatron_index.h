// Megatron-LM's indexed dataset (the MMIDIDX .bin/.idx pair that megatron-core's
// IndexedDatasetBuilder, NeMo Curator and datatrove write), index side: parsing and validating
// the .idx bytes. Layout (little-endian, no padding, so the arrays are not aligned):
//
//   offset 0   char[9]  magic "MMIDIDX\0\0"
//          9   uint64   version, 1
//         17   uint8    dtype code of the .bin tokens (numpy: 1 uint8, 2 int8, 3 int16, 4 int32,
//                       5 int64, 6 float64, 7 float32, 8 uint16)
//         18   uint64   S, the sequence count
//         26   uint64   D, the document-index count (documents + 1)
//         34   int32    sequence_lengths[S]   tokens per sequence
//              int64    sequence_pointers[S]  byte offset of each sequence in the .bin
//              int64    document_indices[D]   0, then the sequence index where each document
//                                             ends (exclusive); the last equals S
//              int8     sequence_modes[S]     multimodal datasets only (not supported here)
//
// A document is the concatenation of its sequences. megatron-core writes the sequences back to
// back (pointer[0] = 0, pointer[i+1] = pointer[i] + length[i] * itemsize), and this reader
// requires it: then a document is one contiguous token range of the .bin and needs no per-
// sequence work to read.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace dus {

/// Bytes of the fixed .idx header (magic, version, dtype code, two counts).
constexpr size_t kMegatronHeaderBytes = 34;

/// numpy's name of a Megatron dtype code ("uint16"), or "unknown".
const char* megatron_dtype_name(uint8_t code);

/// A validated view of .idx bytes (which must outlive it; nothing is copied).
class MegatronIndex {
 public:
  /// Parses and validates the .idx bytes; every error is a dus::Error naming `idx_path`, the
  /// field and its byte offset, and what was expected. Checks: magic, version 1, a supported
  /// token dtype (uint16, int32, int64), the file length against the counts (a multimodal
  /// index, one byte more per sequence, is refused by name), lengths >= 0, pointers contiguous
  /// from 0, document indices from 0, non-decreasing, ending at the sequence count.
  static MegatronIndex parse(const uint8_t* data, size_t size, const std::string& idx_path);

  /// Throws dus::Error naming `bin_path` unless the .bin holds exactly num_tokens() tokens.
  void check_bin_size(uint64_t bin_bytes, const std::string& bin_path) const;

  uint8_t dtype_code() const { return dtype_code_; }
  size_t item_bytes() const { return item_bytes_; }
  int64_t num_sequences() const { return sequences_; }
  int64_t num_documents() const { return documents_; }
  int64_t num_tokens() const { return tokens_; }

  int32_t sequence_length(int64_t i) const { return load<int32_t>(lengths_, i); }
  int64_t sequence_pointer(int64_t i) const { return load<int64_t>(pointers_, i); }
  int64_t document_index(int64_t i) const { return load<int64_t>(doc_indices_, i); }
  /// Token offset in the .bin where document d (0 <= d <= num_documents()) starts;
  /// document num_documents() "starts" at num_tokens().
  int64_t document_start(int64_t d) const {
    const int64_t seq = document_index(d);
    return seq == sequences_ ? tokens_ : sequence_pointer(seq) / static_cast<int64_t>(item_bytes_);
  }

 private:
  // The arrays start at byte 34 and 34 + 4 S: unaligned, so read through memcpy (one plain
  // load on x86/ARM; a cast pointer would be undefined behaviour).
  template <typename T>
  static T load(const uint8_t* base, int64_t i) {
    T v;
    std::memcpy(&v, base + static_cast<size_t>(i) * sizeof(T), sizeof(T));
    return v;
  }
  const uint8_t* lengths_ = nullptr;
  const uint8_t* pointers_ = nullptr;
  const uint8_t* doc_indices_ = nullptr;
  uint8_t dtype_code_ = 0;
  size_t item_bytes_ = 0;
  int64_t sequences_ = 0, documents_ = 0, tokens_ = 0;
};

/// The PREFIX of a Megatron source named by `path`, or "" when it is not one: a path ending in
/// .bin or .idx (PREFIX is the path without it), or a PREFIX where PREFIX.idx exists and PREFIX
/// itself is not a directory (a directory is a `dus prepare` dataset).
std::string megatron_prefix(const std::string& path);

}  // namespace dus
