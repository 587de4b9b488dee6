#include "core/json.h"

#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "core/error.h"

namespace dus::json {

// ---------------------------------------------------------------------------------------------
// Value

const char* Value::type_name() const {
  switch (type_) {
    case Type::Null: return "null";
    case Type::Bool: return "bool";
    case Type::Int: return "integer";
    case Type::Double: return "number";
    case Type::String: return "string";
    case Type::Array: return "array";
    case Type::Object: return "object";
  }
  return "?";
}

namespace {
[[noreturn]] void type_error(const std::string& where, const char* want, const Value& v) {
  throw Error(where, std::string("expected ") + want + ", found " + v.type_name());
}
}  // namespace

bool Value::as_bool(const std::string& where) const {
  if (type_ != Type::Bool) type_error(where, "a boolean", *this);
  return bool_;
}
int64_t Value::as_int(const std::string& where) const {
  if (type_ == Type::Int) return int_;
  // 4096.0 is accepted as an integer; 0.5 is not.
  if (type_ == Type::Double && std::floor(double_) == double_ && std::fabs(double_) < 9.0e15)
    return static_cast<int64_t>(double_);
  type_error(where, "an integer", *this);
}
double Value::as_double(const std::string& where) const {
  if (type_ == Type::Double) return double_;
  if (type_ == Type::Int) return static_cast<double>(int_);
  type_error(where, "a number", *this);
}
const std::string& Value::as_string(const std::string& where) const {
  if (type_ != Type::String) type_error(where, "a string", *this);
  return string_;
}
const Array& Value::as_array(const std::string& where) const {
  if (type_ != Type::Array) type_error(where, "an array", *this);
  return *array_;
}
const Object& Value::as_object(const std::string& where) const {
  if (type_ != Type::Object) type_error(where, "an object", *this);
  return *object_;
}
Array& Value::mutable_array(const std::string& where) {
  if (type_ != Type::Array) type_error(where, "an array", *this);
  if (array_.use_count() > 1) array_ = std::make_shared<Array>(*array_);
  return *array_;
}
Object& Value::mutable_object(const std::string& where) {
  if (type_ != Type::Object) type_error(where, "an object", *this);
  if (object_.use_count() > 1) object_ = std::make_shared<Object>(*object_);
  return *object_;
}

const Value* Value::find(std::string_view key) const {
  if (type_ != Type::Object) return nullptr;
  for (const auto& [k, v] : *object_)
    if (k == key) return &v;
  return nullptr;
}

void Value::set(const std::string& key, Value v) {
  if (type_ == Type::Null) *this = Value(Object{});
  Object& object = mutable_object();
  for (auto& [k, old] : object) {
    if (k == key) {
      old = std::move(v);
      return;
    }
  }
  object.emplace_back(key, std::move(v));
}

void Value::erase(std::string_view key) {
  if (type_ != Type::Object) return;
  Object& object = mutable_object();
  for (auto it = object.begin(); it != object.end(); ++it) {
    if (it->first == key) {
      object.erase(it);
      return;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Parser: recursive descent with an explicit depth bound.

namespace {

class Parser {
 public:
  Parser(std::string_view text, const std::string& source, const ParseOptions& options)
      : text_(text), source_(source), options_(options) {}

  Value parse_document() {
    skip_space();
    Value v = parse_value(0);
    skip_space();
    if (pos_ != text_.size()) fail("unexpected trailing characters after the JSON value");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw Error(source_, fmt::format("invalid JSON at byte {}: {}", pos_, what));
  }

  void skip_space() {
    while (pos_ < text_.size()) {
      char c = text_[pos_];
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
        ++pos_;
      else
        break;
    }
  }

  char peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }

  void expect_literal(std::string_view lit) {
    if (text_.substr(pos_, lit.size()) != lit) fail("expected '" + std::string(lit) + "'");
    pos_ += lit.size();
  }

  Value parse_value(int depth) {
    if (depth > options_.max_depth)
      fail(fmt::format("nesting deeper than {} levels", options_.max_depth));
    if (pos_ >= text_.size()) fail("unexpected end of input");
    char c = text_[pos_];
    switch (c) {
      case '{': return parse_object(depth);
      case '[': return parse_array(depth);
      case '"': return Value(parse_string());
      case 't': expect_literal("true"); return Value(true);
      case 'f': expect_literal("false"); return Value(false);
      case 'n': expect_literal("null"); return Value();
      default:
        if (c == '-' || (c >= '0' && c <= '9')) return parse_number();
        fail(std::string("unexpected character '") + c + "'");
    }
  }

  Value parse_object(int depth) {
    ++pos_;  // '{'
    Object object;
    skip_space();
    if (peek() == '}') {
      ++pos_;
      return Value(std::move(object));
    }
    while (true) {
      skip_space();
      if (peek() != '"') fail("expected a string key");
      std::string key = parse_string();
      if (options_.reject_duplicate_keys) {
        for (const auto& kv : object)
          if (kv.first == key) fail("duplicate key \"" + key + "\"");
      }
      skip_space();
      if (peek() != ':') fail("expected ':' after key \"" + key + "\"");
      ++pos_;
      skip_space();
      Value v = parse_value(depth + 1);
      object.emplace_back(std::move(key), std::move(v));
      skip_space();
      char c = peek();
      if (c == ',') {
        ++pos_;
        continue;
      }
      if (c == '}') {
        ++pos_;
        return Value(std::move(object));
      }
      fail("expected ',' or '}' in object");
    }
  }

  Value parse_array(int depth) {
    ++pos_;  // '['
    Array array;
    skip_space();
    if (peek() == ']') {
      ++pos_;
      return Value(std::move(array));
    }
    while (true) {
      skip_space();
      array.push_back(parse_value(depth + 1));
      skip_space();
      char c = peek();
      if (c == ',') {
        ++pos_;
        continue;
      }
      if (c == ']') {
        ++pos_;
        return Value(std::move(array));
      }
      fail("expected ',' or ']' in array");
    }
  }

  static void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  uint32_t parse_hex4() {
    if (pos_ + 4 > text_.size()) fail("truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      char c = text_[pos_++];
      v <<= 4;
      if (c >= '0' && c <= '9')
        v |= c - '0';
      else if (c >= 'a' && c <= 'f')
        v |= c - 'a' + 10;
      else if (c >= 'A' && c <= 'F')
        v |= c - 'A' + 10;
      else
        fail("invalid hex digit in \\u escape");
    }
    return v;
  }

  std::string parse_string() {
    ++pos_;  // opening quote
    std::string out;
    while (true) {
      if (pos_ >= text_.size()) fail("unterminated string");
      char c = text_[pos_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) fail("control character inside a string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= text_.size()) fail("unterminated escape");
      char e = text_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp = parse_hex4();
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (text_.substr(pos_, 2) != "\\u") fail("unpaired surrogate in \\u escape");
            pos_ += 2;
            uint32_t low = parse_hex4();
            if (low < 0xDC00 || low > 0xDFFF) fail("invalid low surrogate in \\u escape");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            fail("unpaired low surrogate in \\u escape");
          }
          append_utf8(out, cp);
          break;
        }
        default: fail(std::string("invalid escape '\\") + e + "'");
      }
    }
  }

  Value parse_number() {
    size_t start = pos_;
    bool is_integer = true;
    if (peek() == '-') ++pos_;
    if (peek() == '0') {
      ++pos_;
    } else if (peek() >= '1' && peek() <= '9') {
      while (peek() >= '0' && peek() <= '9') ++pos_;
    } else {
      fail("invalid number");
    }
    if (peek() == '.') {
      is_integer = false;
      ++pos_;
      if (!(peek() >= '0' && peek() <= '9')) fail("invalid number: digit expected after '.'");
      while (peek() >= '0' && peek() <= '9') ++pos_;
    }
    if (peek() == 'e' || peek() == 'E') {
      is_integer = false;
      ++pos_;
      if (peek() == '+' || peek() == '-') ++pos_;
      if (!(peek() >= '0' && peek() <= '9')) fail("invalid number: digit expected in exponent");
      while (peek() >= '0' && peek() <= '9') ++pos_;
    }
    std::string_view literal = text_.substr(start, pos_ - start);
    if (is_integer) {
      int64_t v = 0;
      auto [ptr, ec] = std::from_chars(literal.data(), literal.data() + literal.size(), v);
      if (ec == std::errc() && ptr == literal.data() + literal.size()) return Value(v);
      // Out of int64 range: keep it as a double rather than failing.
    }
    double d = 0;
    auto [ptr, ec] = std::from_chars(literal.data(), literal.data() + literal.size(), d);
    if (ec != std::errc() || ptr != literal.data() + literal.size())
      fail("number out of range: " + std::string(literal));
    return Value(d);
  }

  std::string_view text_;
  const std::string& source_;
  const ParseOptions& options_;
  size_t pos_ = 0;
};

}  // namespace

Value parse(std::string_view text, const std::string& source, const ParseOptions& options) {
  return Parser(text, source, options).parse_document();
}

Value parse_file(const std::string& path, const ParseOptions& options) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path, "cannot open file", "check that the path exists and is readable");
  std::stringstream buffer;
  buffer << in.rdbuf();
  return parse(buffer.str(), path, options);
}

// ---------------------------------------------------------------------------------------------
// Writer

namespace {

void dump_string(std::string& out, const std::string& s) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

void dump_double(std::string& out, double d) {
  if (!std::isfinite(d)) {  // JSON has no inf/nan; null is what Python's json writes as strict
    out += "null";
    return;
  }
  char buf[32];
  auto [ptr, ec] = std::to_chars(buf, buf + sizeof buf, d);  // shortest round-trip form
  std::string s(buf, ptr);
  // Keep it visibly a float ("1e-05", "10000.0") so readers do not turn it into an int.
  if (s.find_first_of(".eE") == std::string::npos) s += ".0";
  out += s;
}

void dump_value(std::string& out, const Value& v, int indent, int level) {
  auto newline = [&](int lvl) {
    if (indent < 0) return;
    out += '\n';
    out.append(static_cast<size_t>(indent * lvl), ' ');
  };
  switch (v.type()) {
    case Value::Type::Null: out += "null"; break;
    case Value::Type::Bool: out += v.as_bool() ? "true" : "false"; break;
    case Value::Type::Int: out += std::to_string(v.as_int()); break;
    case Value::Type::Double: dump_double(out, v.as_double()); break;
    case Value::Type::String: dump_string(out, v.as_string()); break;
    case Value::Type::Array: {
      const Array& a = v.as_array();
      out += '[';
      for (size_t i = 0; i < a.size(); ++i) {
        if (i) out += ',';
        newline(level + 1);
        dump_value(out, a[i], indent, level + 1);
      }
      if (!a.empty()) newline(level);
      out += ']';
      break;
    }
    case Value::Type::Object: {
      const Object& o = v.as_object();
      out += '{';
      for (size_t i = 0; i < o.size(); ++i) {
        if (i) out += ',';
        newline(level + 1);
        dump_string(out, o[i].first);
        out += indent < 0 ? ":" : ": ";
        dump_value(out, o[i].second, indent, level + 1);
      }
      if (!o.empty()) newline(level);
      out += '}';
      break;
    }
  }
}

}  // namespace

Value number_or_null(double d) { return std::isfinite(d) ? Value(d) : Value(); }

Value number_or_null(const std::optional<double>& d) { return d ? number_or_null(*d) : Value(); }

std::string dump(const Value& value, int indent) {
  std::string out;
  dump_value(out, value, indent, 0);
  return out;
}

}  // namespace dus::json
