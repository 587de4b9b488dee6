// Number formatting for console tables: 10,731,524,096 and 49.4 MB.
#pragma once

#include <cstdint>
#include <string>

namespace dus {

/// 10731524096 -> "10,731,524,096".
std::string with_commas(int64_t value);
/// Bytes with a decimal unit: "49.4 kB", "21.5 GB".
std::string human_bytes(double bytes);
/// "5GB", "200MB", "40kB" or plain bytes (decimal units, as transformers uses) -> bytes.
/// Throws dus::Error naming `where` for anything else.
int64_t parse_byte_size(const std::string& text, const std::string& where);

}  // namespace dus
