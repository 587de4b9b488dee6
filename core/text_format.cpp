#include "core/text_format.h"

#include <cstdlib>

#include <fmt/format.h>

#include "core/error.h"

namespace dus {

std::string with_commas(int64_t value) {
  std::string digits = std::to_string(value < 0 ? -value : value);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return value < 0 ? "-" + out : out;
}

std::string human_bytes(double bytes) {
  const char* units[] = {"B", "kB", "MB", "GB", "TB"};
  int u = 0;
  while (bytes >= 1000.0 && u < 4) {
    bytes /= 1000.0;
    ++u;
  }
  return u == 0 ? fmt::format("{:.0f} {}", bytes, units[u])
                : fmt::format("{:.1f} {}", bytes, units[u]);
}

int64_t parse_byte_size(const std::string& text, const std::string& where) {
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  const std::string unit = end ? std::string(end) : "";
  const double scale = unit.empty() || unit == "B"    ? 1
                       : unit == "kB" || unit == "KB" ? 1e3
                       : unit == "MB"                 ? 1e6
                       : unit == "GB"                 ? 1e9
                                                      : 0;
  if (end == text.c_str() || scale == 0 || !(value > 0))
    throw Error(where, fmt::format("'{}' is not a size like 5GB, 200MB or 40kB", text));
  return static_cast<int64_t>(value * scale);
}

}  // namespace dus
