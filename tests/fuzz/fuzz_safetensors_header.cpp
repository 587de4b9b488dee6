// libFuzzer target: the safetensors header parser must reject any byte string with a dus::Error
// (or accept it), never crash, leak, overflow or read out of bounds. Built by scripts/fuzz.sh
// with clang and AddressSanitizer.
#include <cstddef>
#include <cstdint>

#include "core/error.h"
#include "model/safetensors_header.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    dus::StHeader h = dus::parse_safetensors_header(data, size, "fuzz");
    // Accepted headers must describe byte ranges inside the input.
    for (const auto& e : h.tensors)
      if (h.data_start + e.end > size) __builtin_trap();
  } catch (const dus::Error&) {
  }
  return 0;
}
