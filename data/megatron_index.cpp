#include "data/megatron_index.h"

#include <sys/stat.h>

#include <limits>

#include <fmt/format.h>

#include "core/error.h"

namespace dus {

namespace {

constexpr char kMagic[9] = {'M', 'M', 'I', 'D', 'I', 'D', 'X', '\0', '\0'};
const char* const kRebuild =
    "the index is damaged or not a Megatron indexed dataset; rebuild it with Megatron's "
    "preprocess_data.py (or the tool that wrote it)";

uint64_t load_u64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

std::string at(size_t offset) {
  return fmt::format(" (byte offset {})", offset);
}

// Printable form of the first bytes of a file, for a wrong magic.
std::string escaped(const uint8_t* p, size_t n) {
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\') {
      out += static_cast<char>(p[i]);
    } else {
      out += "\\x";
      out += hex[p[i] >> 4];
      out += hex[p[i] & 15];
    }
  }
  return out;
}

}  // namespace

const char* megatron_dtype_name(uint8_t code) {
  switch (code) {
    case 1:
      return "uint8";
    case 2:
      return "int8";
    case 3:
      return "int16";
    case 4:
      return "int32";
    case 5:
      return "int64";
    case 6:
      return "float64";
    case 7:
      return "float32";
    case 8:
      return "uint16";
    default:
      return "unknown";
  }
}

MegatronIndex MegatronIndex::parse(const uint8_t* data, size_t size, const std::string& idx_path) {
  if (size < kMegatronHeaderBytes)
    throw Error(idx_path,
                fmt::format("truncated: {} bytes, the MMIDIDX header alone needs {}", size,
                            kMegatronHeaderBytes),
                kRebuild);
  if (std::memcmp(data, kMagic, sizeof kMagic) != 0)
    throw Error(idx_path,
                "magic" + at(0) + " is \"" + escaped(data, sizeof kMagic) +
                    "\", expected \"MMIDIDX\\x00\\x00\"",
                "not a Megatron .idx file; " + std::string(kRebuild));
  const uint64_t version = load_u64(data + 9);
  if (version != 1)
    throw Error(idx_path, fmt::format("version{} is {}, expected 1", at(9), version), kRebuild);
  MegatronIndex ix;
  ix.dtype_code_ = data[17];
  switch (ix.dtype_code_) {
    case 8:
      ix.item_bytes_ = 2;
      break;  // uint16: vocabularies up to 65,536
    case 4:
      ix.item_bytes_ = 4;
      break;  // int32: larger vocabularies (Megatron's default)
    case 5:
      ix.item_bytes_ = 8;
      break;  // int64: ids are still bounded by the vocabulary
    default:
      throw Error(idx_path,
                  fmt::format("dtype code{} is {} ({}), expected a token dtype: 8 (uint16), 4 "
                              "(int32) or 5 (int64)",
                              at(17), static_cast<int>(ix.dtype_code_),
                              megatron_dtype_name(ix.dtype_code_)),
                  "token datasets are written as uint16 or int32 by preprocess_data.py");
  }
  const uint64_t sequences = load_u64(data + 18);
  const uint64_t doc_entries = load_u64(data + 26);
  // The arrays take 12 bytes per sequence and 8 per document index; bound the counts by the
  // file's length before multiplying, so no product can overflow.
  const uint64_t body = size - kMegatronHeaderBytes;
  if (sequences > body / 12 || doc_entries > body / 8 || sequences * 12 + doc_entries * 8 > body) {
    throw Error(idx_path,
                fmt::format("truncated: {} bytes, but the header's counts ({} sequences{}, {} "
                            "document indices{}) need at least {}",
                            size, sequences, at(18), doc_entries, at(26),
                            sequences > body / 12 || doc_entries > body / 8
                                ? std::string("more")
                                : fmt::format("{}", kMegatronHeaderBytes + sequences * 12 +
                                                        doc_entries * 8)),
                kRebuild);
  }
  const uint64_t expected = kMegatronHeaderBytes + sequences * 12 + doc_entries * 8;
  if (size != expected) {
    if (size == expected + sequences && sequences > 0)
      throw Error(idx_path,
                  "a multimodal index (it carries sequence_modes, one byte per sequence after "
                  "the document indices)",
                  "only text token datasets are supported");
    throw Error(idx_path,
                fmt::format("{} bytes, the header's counts ({} sequences, {} document indices) "
                            "imply {}",
                            size, sequences, doc_entries, expected),
                kRebuild);
  }
  if (doc_entries < 1)
    throw Error(idx_path, "document count" + at(26) + " is 0, expected at least 1 (a leading 0)",
                kRebuild);
  ix.sequences_ = static_cast<int64_t>(sequences);
  ix.documents_ = static_cast<int64_t>(doc_entries) - 1;
  ix.lengths_ = data + kMegatronHeaderBytes;
  ix.pointers_ = ix.lengths_ + sequences * 4;
  ix.doc_indices_ = ix.pointers_ + sequences * 8;
  const size_t lengths_at = kMegatronHeaderBytes;
  const size_t pointers_at = lengths_at + sequences * 4;
  const size_t docs_at = pointers_at + sequences * 8;

  // Pointers contiguous from 0: pointer[i] is the byte sum of the lengths before i. The running
  // sum stays below 2^63 / 8 tokens (no file is that large), so nothing overflows.
  const int64_t width = static_cast<int64_t>(ix.item_bytes_);
  const int64_t token_limit = std::numeric_limits<int64_t>::max() / 8;
  int64_t tokens = 0;
  for (int64_t i = 0; i < ix.sequences_; ++i) {
    const int32_t length = ix.sequence_length(i);
    if (length < 0)
      throw Error(idx_path,
                  fmt::format("sequence_lengths[{}]{} is {}, expected a length >= 0", i,
                              at(lengths_at + 4 * i), length),
                  kRebuild);
    const int64_t pointer = ix.sequence_pointer(i);
    if (pointer != tokens * width)
      throw Error(
          idx_path,
          fmt::format("sequence_pointers[{}]{} is {}, expected {}", i, at(pointers_at + 8 * i),
                      pointer, tokens * width) +
              (i == 0 ? std::string(" (the first sequence starts the .bin)")
                      : fmt::format(" (the previous pointer plus its length times {} bytes): "
                                    "pointers must be increasing and contiguous",
                                    width)),
          kRebuild);
    if (length > token_limit - tokens)
      throw Error(idx_path, "sequence lengths add up past any file size", kRebuild);
    tokens += length;
  }
  ix.tokens_ = tokens;

  int64_t previous = 0;
  for (int64_t d = 0; d <= ix.documents_; ++d) {
    const int64_t seq = ix.document_index(d);
    const std::string field =
        fmt::format("document_indices[{}]{} is {}", d, at(docs_at + 8 * d), seq);
    if (d == 0 && seq != 0) throw Error(idx_path, field + ", expected 0", kRebuild);
    if (seq < previous || seq > ix.sequences_)
      throw Error(idx_path,
                  fmt::format("{}, expected a sequence index in [{}, {}]: document indices must be "
                              "non-decreasing and within the sequences",
                              field, previous, ix.sequences_),
                  kRebuild);
    previous = seq;
  }
  if (previous != ix.sequences_)
    throw Error(idx_path,
                fmt::format("the last document index{} is {}, expected the sequence count {} "
                            "(every sequence belongs to a document)",
                            at(docs_at + 8 * ix.documents_), previous, ix.sequences_),
                kRebuild);
  return ix;
}

void MegatronIndex::check_bin_size(uint64_t bin_bytes, const std::string& bin_path) const {
  const uint64_t expected = static_cast<uint64_t>(tokens_) * item_bytes_;
  if (bin_bytes != expected)
    throw Error(bin_path,
                fmt::format("{} bytes, its .idx describes {} {} tokens = {} bytes", bin_bytes,
                            tokens_, megatron_dtype_name(dtype_code_), expected),
                bin_bytes < expected ? "the .bin is truncated; copy or rebuild it again"
                                     : "the .bin and .idx do not belong together");
}

std::string megatron_prefix(const std::string& path) {
  auto ends_with = [&](const char* suffix) {
    const size_t n = std::strlen(suffix);
    return path.size() > n && path.compare(path.size() - n, n, suffix) == 0;
  };
  if (ends_with(".bin") || ends_with(".idx")) return path.substr(0, path.size() - 4);
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return "";
  if (::stat((path + ".idx").c_str(), &st) == 0) return path;
  return "";
}

}  // namespace dus
