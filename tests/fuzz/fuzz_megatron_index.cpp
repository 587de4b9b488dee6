// libFuzzer target: a Megatron .idx (MMIDIDX) parsed from the raw input bytes with
// MegatronIndex::parse. Any input must parse or give a dus::Error. An accepted index must keep
// the promises the reader relies on: every document a token range inside [0, num_tokens],
// starts non-decreasing, and check_bin_size accepting exactly num_tokens * itemsize bytes.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/error.h"
#include "data/megatron_index.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // A copy in a heap buffer of exactly `size` bytes, so ASan sees any read past the end.
  std::vector<uint8_t> bytes(data, data + size);
  try {
    const dus::MegatronIndex ix = dus::MegatronIndex::parse(bytes.data(), bytes.size(), "fuzz.idx");
    if (ix.num_documents() < 0 || ix.num_tokens() < 0) __builtin_trap();
    int64_t previous = 0;
    for (int64_t d = 0; d <= ix.num_documents(); ++d) {
      const int64_t start = ix.document_start(d);
      if (start < previous || start > ix.num_tokens()) __builtin_trap();
      previous = start;
    }
    if (previous != ix.num_tokens()) __builtin_trap();
    const uint64_t bin = static_cast<uint64_t>(ix.num_tokens()) * ix.item_bytes();
    ix.check_bin_size(bin, "fuzz.bin");
    try {
      ix.check_bin_size(bin + 1, "fuzz.bin");
      __builtin_trap();  // a wrong .bin size must be refused
    } catch (const dus::Error&) {
    }
  } catch (const dus::Error&) {
  }
  return 0;
}
