// libFuzzer target: the JSON parser must accept a byte string or reject it with a dus::Error,
// never crash, overflow or read out of bounds; and every accepted value must survive the writer:
// dump (compact and pretty) then parse gives an equal value. Built by scripts/fuzz.sh.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/error.h"
#include "core/json.h"

namespace {

// Structural equality; doubles compare bit-for-bit except that every NaN is alike (the writer
// turns non-finite numbers into null, which the parser cannot produce from text anyway).
bool same(const dus::json::Value& a, const dus::json::Value& b) {
  using T = dus::json::Value::Type;
  if (a.type() != b.type()) return false;
  switch (a.type()) {
    case T::Null:
      return true;
    case T::Bool:
      return a.as_bool() == b.as_bool();
    case T::Int:
      return a.as_int() == b.as_int();
    case T::Double: {
      const double x = a.as_double(), y = b.as_double();
      return (std::isnan(x) && std::isnan(y)) || (x == y && std::signbit(x) == std::signbit(y));
    }
    case T::String:
      return a.as_string() == b.as_string();
    case T::Array: {
      const auto &x = a.as_array(), &y = b.as_array();
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i)
        if (!same(x[i], y[i])) return false;
      return true;
    }
    case T::Object: {
      const auto &x = a.as_object(), &y = b.as_object();
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i)
        if (x[i].first != y[i].first || !same(x[i].second, y[i].second)) return false;
      return true;
    }
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  dus::json::Value value;
  try {
    value = dus::json::parse(text, "fuzz.json");
  } catch (const dus::Error&) {
    return 0;
  }
  // An accepted document must round-trip through both writer forms without an error.
  for (int indent : {-1, 2}) {
    const std::string out = dus::json::dump(value, indent);
    dus::json::Value back;
    try {
      back = dus::json::parse(out, "fuzz.json (written back)");
    } catch (const dus::Error&) {
      __builtin_trap();
    }
    if (!same(value, back)) __builtin_trap();
  }
  return 0;
}
