// A small, strict JSON value, parser and writer. Written for the project because the files it
// reads (safetensors headers, config.json, index.json, state.json) may be hostile: the parser
// bounds nesting depth, rejects duplicate keys, and reports errors as dus::Error with the byte
// offset, never crashing. Objects keep their key order so a config round-trips unchanged.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dus::json {

class Value;
using Array = std::vector<Value>;
using Object = std::vector<std::pair<std::string, Value>>;  // insertion order kept

class Value {
 public:
  enum class Type { Null, Bool, Int, Double, String, Array, Object };

  Value() = default;
  Value(std::nullptr_t) {}
  Value(bool b) : type_(Type::Bool), bool_(b) {}
  Value(int i) : type_(Type::Int), int_(i) {}
  Value(int64_t i) : type_(Type::Int), int_(i) {}
  Value(uint64_t i) : type_(Type::Int), int_(static_cast<int64_t>(i)) {}
  Value(double d) : type_(Type::Double), double_(d) {}
  Value(const char* s) : type_(Type::String), string_(s) {}
  Value(std::string s) : type_(Type::String), string_(std::move(s)) {}
  Value(Array a) : type_(Type::Array), array_(std::make_shared<Array>(std::move(a))) {}
  Value(Object o) : type_(Type::Object), object_(std::make_shared<Object>(std::move(o))) {}

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::Null; }
  bool is_bool() const { return type_ == Type::Bool; }
  bool is_int() const { return type_ == Type::Int; }
  bool is_number() const { return type_ == Type::Int || type_ == Type::Double; }
  bool is_string() const { return type_ == Type::String; }
  bool is_array() const { return type_ == Type::Array; }
  bool is_object() const { return type_ == Type::Object; }
  const char* type_name() const;

  // Accessors throw dus::Error naming `where` when the type differs.
  bool as_bool(const std::string& where = "json") const;
  int64_t as_int(const std::string& where = "json") const;
  double as_double(const std::string& where = "json") const;  // ints convert
  const std::string& as_string(const std::string& where = "json") const;
  const Array& as_array(const std::string& where = "json") const;
  const Object& as_object(const std::string& where = "json") const;
  Array& mutable_array(const std::string& where = "json");
  Object& mutable_object(const std::string& where = "json");

  // Object helpers. find returns nullptr when absent (or when this is not an object).
  const Value* find(std::string_view key) const;
  bool contains(std::string_view key) const { return find(key) != nullptr; }
  /// Sets key (replacing in place, keeping its position, or appending).
  void set(const std::string& key, Value v);
  /// Removes key if present.
  void erase(std::string_view key);

 private:
  Type type_ = Type::Null;
  bool bool_ = false;
  int64_t int_ = 0;
  double double_ = 0;
  std::string string_;
  // Shared so copying a large parsed header is cheap; mutation copies on write.
  std::shared_ptr<Array> array_;
  std::shared_ptr<Object> object_;
};

struct ParseOptions {
  /// Deeper documents are rejected (protects the stack against hostile input).
  int max_depth = 64;
  /// Duplicate keys in one object are an error (safetensors requires unique tensor names).
  bool reject_duplicate_keys = true;
};

/// A number, or null for NaN and infinity (JSON has none; null stands for "not a number" both
/// ways) and for an absent optional.
Value number_or_null(double d);
Value number_or_null(const std::optional<double>& d);

/// Parses a whole document; trailing non-space is an error. `source` names the file in errors.
Value parse(std::string_view text, const std::string& source, const ParseOptions& options = {});
/// Reads and parses a file.
Value parse_file(const std::string& path, const ParseOptions& options = {});

/// Serialises. indent < 0: compact; otherwise pretty with that many spaces. Doubles use the
/// shortest form that round-trips; output is deterministic (object order as stored).
std::string dump(const Value& value, int indent = -1);

}  // namespace dus::json
