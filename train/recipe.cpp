#include "train/recipe.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <set>
#include <unordered_map>

#include <fmt/format.h>

#include "core/error.h"
#include "core/file_util.h"
#include "core/sha256.h"
#include "core/suggestion.h"
#include "data/unicode_text.h"

namespace dus {

// ---------------------------------------------------------------------------------------------
// YAML <-> tree

namespace {

constexpr int kMaxYamlDepth = 64;
constexpr int64_t kMaxYamlNodes = 10000;  // aliases can expand exponentially ("YAML bombs")
// A recipe is a few KiB; these bound what a damaged or hostile file costs to read.
constexpr size_t kMaxYamlBytes = size_t{1} << 20;
constexpr size_t kMaxYamlScalarBytes = size_t{64} << 10;

json::Value scalar_value(const YAML::Node& node) {
  const std::string& s = node.Scalar();
  if (node.Tag() == "!") return json::Value(s);  // quoted: always a string
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return json::Value();
  if (s == "true" || s == "True" || s == "TRUE") return json::Value(true);
  if (s == "false" || s == "False" || s == "FALSE") return json::Value(false);
  // YAML 1.2 core schema numbers: ints, then floats (1e-5, 3.0e-4, .5, -2.5).
  char* end = nullptr;
  errno = 0;
  long long i = std::strtoll(s.c_str(), &end, 10);
  if (*end == '\0' && errno == 0 && s.find_first_not_of("+-0123456789") == std::string::npos)
    return json::Value(static_cast<int64_t>(i));
  double d = std::strtod(s.c_str(), &end);
  if (*end == '\0' && s.find_first_not_of("+-0123456789.eE") == std::string::npos &&
      s.find_first_of("0123456789") != std::string::npos)
    return json::Value(d);
  return json::Value(s);
}

// Offset of the first byte that is not part of well-formed UTF-8 (no overlong forms, no
// surrogates, nothing above U+10FFFF) or is an ASCII control character YAML forbids, or npos. YAML
// text must be Unicode; yaml-cpp would otherwise carry the bytes through and its emitter replace
// them with U+FFFD, so the recipe saved into the run would differ from the one that was read.
size_t invalid_utf8_at(const std::string& text, bool allow_controls = false) {
  if (allow_controls) return find_invalid_utf8(text);
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  for (size_t i = 0, n = text.size(); i < n;) {
    // YAML's printable set: no C0 controls but tab, LF, CR, and no DEL. A NUL would also make
    // yaml-cpp guess UTF-16 or UTF-32 and decode the file as such.
    const unsigned char c = p[i];
    if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7F) return i;
    const size_t len = utf8_sequence_length(p + i, n - i);
    if (len == 0) return i;
    i += len;
  }
  return std::string::npos;
}

// What a document has expanded to so far. Aliases repeat what they name, so the node count is
// capped, and so is a bound on the size of the document written back out (to_yaml, as the run
// directory and every checkpoint keep it): each key and scalar at most 6 bytes per byte (the
// emitter's escapes: "\x06" for one control byte), each node its indentation and punctuation.
// Within kMaxYamlBytes, what to_yaml writes reads back; without the bound, ten thousand aliases of
// one 64 KiB scalar would build a 640 MB tree from a 70 KB file.
struct Expansion {
  int64_t nodes = 0;
  size_t written_bytes = 0;
};

void add_written(Expansion* e, size_t n, const std::string& source) {
  e->written_bytes += n;
  if (e->written_bytes > kMaxYamlBytes)
    throw Error(source,
                fmt::format("YAML expands to more than {} bytes when written out (an alias bomb?)",
                            kMaxYamlBytes));
}

json::Value convert(const YAML::Node& node, const std::string& source, int depth,
                    Expansion* count) {
  if (++count->nodes > kMaxYamlNodes)
    throw Error(source,
                fmt::format("YAML expands to more than {} nodes (an alias bomb?)", kMaxYamlNodes));
  if (depth > kMaxYamlDepth)
    throw Error(source, fmt::format("YAML nested deeper than {} levels", kMaxYamlDepth));
  add_written(count, 2 * static_cast<size_t>(depth) + 8, source);  // indent, "- " or ": ", quotes
  switch (node.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return json::Value();
    case YAML::NodeType::Scalar:
      add_written(count, 6 * node.Scalar().size(), source);
      if (node.Scalar().size() > kMaxYamlScalarBytes)
        throw Error(fmt::format("{}:{}", source, node.Mark().line + 1),
                    fmt::format("a scalar of {} bytes; a recipe value may have at most {}",
                                node.Scalar().size(), kMaxYamlScalarBytes));
      // yaml-cpp decodes the escape "\N" (U+0085) to the byte 0x85, not to its UTF-8: a scalar
      // must be checked again after decoding (controls are fine here; they came escaped).
      if (invalid_utf8_at(node.Scalar(), true) != std::string::npos)
        throw Error(fmt::format("{}:{}", source, node.Mark().line + 1),
                    "a value that is not valid UTF-8 (the \\N escape?)", "write \\u0085 instead");
      if (json::Value v = scalar_value(node);
          v.type() != json::Value::Type::Double || std::isfinite(v.as_double())) {
        return v;
      }
      // 5e505: a float by YAML's grammar but beyond double; no recipe number may be infinite
      // (and JSON, which the resolved recipe is hashed as, has no infinity).
      throw Error(fmt::format("{}:{}", source, node.Mark().line + 1),
                  "number " + node.Scalar() + " is out of range");
    case YAML::NodeType::Sequence: {
      json::Array a;
      for (const auto& item : node) a.push_back(convert(item, source, depth + 1, count));
      return json::Value(std::move(a));
    }
    case YAML::NodeType::Map: {
      json::Value o(json::Object{});
      for (const auto& kv : node) {
        if (!kv.first.IsScalar())
          throw Error(fmt::format("{}:{}", source, kv.first.Mark().line + 1),
                      "mapping keys must be plain strings");
        const std::string key = kv.first.Scalar();
        add_written(count, 6 * key.size() + 2 * static_cast<size_t>(depth) + 8, source);
        if (invalid_utf8_at(key, true) != std::string::npos)
          throw Error(fmt::format("{}:{}", source, kv.first.Mark().line + 1),
                      "a key that is not valid UTF-8 (the \\N escape?)");
        if (o.contains(key))
          throw Error(fmt::format("{}:{}", source, kv.first.Mark().line + 1),
                      "duplicate key \"" + key + "\"");
        o.set(key, convert(kv.second, source, depth + 1, count));
      }
      return o;
    }
  }
  return json::Value();
}

// Whether a string must be emitted double-quoted to read back as the same string: one that
// would read back as another type, or not as one plain scalar at all ("[", "a: b", "- x":
// YAML::Load throws or builds a collection). Control characters and edge spaces are quoted
// outright: how a plain scalar keeps them depends on its context (a lone "\r\r\r" loads as
// itself, as a map value it does not).
bool needs_quotes(const std::string& str) {
  if (str.empty() || str.front() == ' ' || str.back() == ' ' ||
      std::any_of(str.begin(), str.end(),
                  [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7F; }))
    return true;
  // Most keys and values are words and paths ("lr_warmup_steps", "bf16", "data/kjv-1.bin"): a
  // letter or '_' first, then letters, digits and _ . / - only. No YAML indicator can occur, so
  // such a string loads as the plain scalar it is, a string unless it is a null or bool word
  // (not a number: the first character is not part of one). Deciding these here spares a
  // YAML::Load per key and value, most of the cost of writing a recipe out.
  const auto word_start = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
  };
  const auto word_rest = [&](char c) {
    return word_start(c) || (c >= '0' && c <= '9') || c == '.' || c == '/' || c == '-';
  };
  if (word_start(str.front()) && std::all_of(str.begin() + 1, str.end(), word_rest)) {
    static const char* const kWords[] = {"null", "Null",  "NULL",  "true", "True",
                                         "TRUE", "false", "False", "FALSE"};
    return std::any_of(std::begin(kWords), std::end(kWords),
                       [&](const char* w) { return str == w; });
  }
  try {
    const YAML::Node plain = YAML::Load(str);
    return !plain.IsScalar() || !scalar_value(plain).is_string() || plain.Scalar() != str;
  } catch (const YAML::Exception&) {
    return true;
  }
}

// needs_quotes per distinct string of one document: an expanded alias repeats the same strings
// thousands of times, and each answer not decided by the word rule costs a YAML::Load.
class QuoteDecisions {
 public:
  bool operator()(const std::string& str) {
    auto it = known_.find(str);
    if (it == known_.end()) it = known_.emplace(str, needs_quotes(str)).first;
    return it->second;
  }

 private:
  std::unordered_map<std::string, bool> known_;
};

void emit(YAML::Emitter& out, const json::Value& v, QuoteDecisions& quote) {
  switch (v.type()) {
    case json::Value::Type::Null:
      out << YAML::Null;
      break;
    case json::Value::Type::Bool:
      out << v.as_bool();
      break;
    case json::Value::Type::Int:
      out << v.as_int();
      break;
    case json::Value::Type::Double: {
      // The shortest round-trip form, kept visibly a float.
      out << json::dump(v);
      break;
    }
    case json::Value::Type::String:
      if (quote(v.as_string())) out << YAML::DoubleQuoted;
      out << v.as_string();
      break;
    case json::Value::Type::Array:
      out << YAML::BeginSeq;
      for (const auto& x : v.as_array()) emit(out, x, quote);
      out << YAML::EndSeq;
      break;
    case json::Value::Type::Object:
      out << YAML::BeginMap;
      for (const auto& [k, x] : v.as_object()) {
        out << YAML::Key;
        if (quote(k)) out << YAML::DoubleQuoted;
        out << k << YAML::Value;
        emit(out, x, quote);
      }
      out << YAML::EndMap;
      break;
  }
}

}  // namespace

json::Value parse_yaml(const std::string& text, const std::string& source) {
  if (text.size() > kMaxYamlBytes)
    throw Error(source,
                fmt::format("{} bytes; a recipe may have at most {}", text.size(), kMaxYamlBytes));
  if (const size_t bad = invalid_utf8_at(text); bad != std::string::npos)
    throw Error(source, fmt::format("invalid UTF-8 or a control character at byte {}", bad),
                "a recipe is UTF-8 text without control characters; re-save the file as UTF-8");
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw Error(fmt::format("{}:{}", source, e.mark.line + 1), "invalid YAML: " + e.msg);
  }
  Expansion count;
  return convert(root, source, 0, &count);
}

std::string to_yaml(const json::Value& tree) {
  YAML::Emitter out;
  QuoteDecisions quote;
  emit(out, tree, quote);
  return std::string(out.c_str()) + "\n";
}

std::string Recipe::to_yaml() const {
  return dus::to_yaml(resolved);
}

// ---------------------------------------------------------------------------------------------
// extends and --set

namespace {

// Deep merge: maps merge key by key (child wins), anything else is replaced.
json::Value merge(const json::Value& base, const json::Value& child) {
  if (!base.is_object() || !child.is_object()) return child;
  json::Value out = base;
  for (const auto& [k, v] : child.as_object()) {
    const json::Value* b = out.find(k);
    out.set(k, b ? merge(*b, v) : v);
  }
  return out;
}

json::Value load_tree(const std::string& path, std::set<std::string>& chain) {
  namespace fs = std::filesystem;
  if (!fs::exists(path)) throw Error(path, "recipe file does not exist");
  std::string canonical = fs::weakly_canonical(path).string();
  if (chain.count(canonical)) throw Error(path, "recipe extends itself (a cycle of extends)");
  chain.insert(canonical);
  json::Value tree = parse_yaml(read_file(path), path);
  if (tree.is_null()) tree = json::Value(json::Object{});
  if (!tree.is_object()) throw Error(path, "a recipe must be a mapping of sections");
  if (const json::Value* ext = tree.find("extends")) {
    // extends is relative to the recipe that names it (recipes travel as a folder).
    std::string parent_path = ext->as_string(path + ": extends");
    if (!fs::path(parent_path).is_absolute())
      parent_path = (fs::path(path).parent_path() / parent_path).string();
    json::Value parent = load_tree(parent_path, chain);
    tree.erase("extends");
    tree = merge(parent, tree);
  }
  return tree;
}

void apply_override(json::Value& tree, const std::string& assignment) {
  auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    throw Error("--set " + assignment, "expected section.key=value");
  const std::string path = assignment.substr(0, eq);
  json::Value value = parse_yaml(assignment.substr(eq + 1), "--set " + path);
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    size_t dot = path.find('.', start);
    parts.push_back(path.substr(start, dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  // Walk down, creating sections as needed (unknown ones are caught by validation).
  std::function<void(json::Value&, size_t)> set_at = [&](json::Value& node, size_t i) {
    if (!node.is_object()) node = json::Value(json::Object{});
    if (i + 1 == parts.size()) {
      node.set(parts[i], value);
      return;
    }
    json::Value child = node.find(parts[i]) ? *node.find(parts[i]) : json::Value(json::Object{});
    set_at(child, i + 1);
    node.set(parts[i], child);
  };
  set_at(tree, 0);
}

// ---------------------------------------------------------------------------------------------
// Typed sections

// Reads one section's keys with types, defaults and ranges; collects the reference in describe
// mode; done() reports keys nobody read.
class Section {
 public:
  Section(const json::Value& root, const std::string& name, const std::string& source,
          std::vector<std::string>* reference)
      : name_(name), source_(source), reference_(reference) {
    if (const json::Value* v = root.find(name); v && !v->is_null()) {
      if (!v->is_object()) throw Error(source, "section \"" + name + "\" must be a mapping");
      node_ = v;
    }
  }

  const json::Value* raw(const std::string& key, const std::string& type, const std::string& def,
                         const std::string& doc) {
    known_.push_back(key);
    if (reference_)
      reference_->push_back(name_ + "." + key + "\t" + type + "\t" + def + "\t" + doc);
    return node_ ? node_->find(key) : nullptr;
  }

  std::string where(const std::string& key) const { return source_ + ": " + name_ + "." + key; }

  std::string str(const std::string& key, const std::string& def, const std::string& doc,
                  const std::vector<std::string>& choices = {}) {
    std::string type = "string";
    if (!choices.empty()) {
      type.clear();
      for (const auto& c : choices) type += (type.empty() ? "" : "|") + c;
    }
    const json::Value* v = raw(key, type, def.empty() ? "-" : def, doc);
    if (!v || v->is_null()) return def;
    if (!v->is_string())
      throw Error(where(key), std::string("expected a string, got ") + v->type_name());
    const std::string& s = v->as_string();
    if (!choices.empty() && std::find(choices.begin(), choices.end(), s) == choices.end()) {
      std::string guess = nearest(s, choices);
      throw Error(where(key), "\"" + s + "\" is not one of " + type,
                  guess.empty() ? "" : "did you mean \"" + guess + "\"?");
    }
    return s;
  }

  int64_t integer(const std::string& key, int64_t def, int64_t lo, int64_t hi,
                  const std::string& doc) {
    const json::Value* v = raw(key, "int", std::to_string(def), doc);
    if (!v || v->is_null()) return def;
    if (!v->is_int())
      throw Error(where(key), std::string("expected an integer, got ") + v->type_name());
    int64_t x = v->as_int();
    if (x < lo || x > hi)
      throw Error(where(key), fmt::format("{} is out of range [{}, {}]", x, lo, hi));
    return x;
  }

  std::optional<int64_t> optional_integer(const std::string& key, int64_t lo, int64_t hi,
                                          const std::string& doc) {
    const json::Value* v = raw(key, "int", "-", doc);
    if (!v || v->is_null()) return std::nullopt;
    if (!v->is_int())
      throw Error(where(key), std::string("expected an integer, got ") + v->type_name());
    int64_t x = v->as_int();
    if (x < lo || x > hi)
      throw Error(where(key), fmt::format("{} is out of range [{}, {}]", x, lo, hi));
    return x;
  }

  double number(const std::string& key, double def, double lo, double hi, const std::string& doc) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", def);
    const json::Value* v = raw(key, "float", buf, doc);
    if (!v || v->is_null()) return def;
    if (!v->is_number())
      throw Error(where(key), std::string("expected a number, got ") + v->type_name());
    double x = v->as_double();
    if (!std::isfinite(x) || x < lo || x > hi) {
      throw Error(where(key),
                  fmt::format("{} is out of range [{:g}, {:g}]", json::dump(*v), lo, hi));
    }
    return x;
  }

  bool boolean(const std::string& key, bool def, const std::string& doc) {
    const json::Value* v = raw(key, "bool", def ? "true" : "false", doc);
    if (!v || v->is_null()) return def;
    if (!v->is_bool())
      throw Error(where(key), std::string("expected true or false, got ") + v->type_name());
    return v->as_bool();
  }

  void done() const {
    if (!node_) return;
    for (const auto& [key, _] : node_->as_object()) {
      if (std::find(known_.begin(), known_.end(), key) != known_.end()) continue;
      std::string guess = nearest(key, known_);
      throw Error(source_ + ": " + name_ + "." + key, "unknown key",
                  guess.empty() ? "valid keys of " + name_ + ": " + join(known_)
                                : "did you mean " + name_ + "." + guess + "?");
    }
  }

  bool present() const { return node_ != nullptr; }

 private:
  static std::string join(const std::vector<std::string>& v) {
    std::string out;
    for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
    return out;
  }
  std::string name_, source_;
  std::vector<std::string>* reference_;
  const json::Value* node_ = nullptr;
  std::vector<std::string> known_;
};

constexpr int64_t kBig = int64_t{1} << 50;
const std::vector<std::string> kSections = {"run",         "model",   "scaling",    "data",
                                            "train",       "eval",    "checkpoint", "log",
                                            "distributed", "kernels", "resume"};

Recipe parse_tree(const json::Value& tree, const std::string& source,
                  std::vector<std::string>* reference) {
  const bool describe = reference != nullptr;
  if (!tree.is_object()) throw Error(source, "a recipe must be a mapping of sections");
  for (const auto& [key, _] : tree.as_object()) {
    if (std::find(kSections.begin(), kSections.end(), key) == kSections.end()) {
      std::string guess = nearest(key, kSections);
      throw Error(source + ": " + key, "unknown section",
                  guess.empty() ? "sections: run, model, scaling, data, train, eval, checkpoint, "
                                  "log, distributed, kernels, resume"
                                : "did you mean " + guess + "?");
    }
  }
  Recipe r;
  r.source = source;

  Section run(tree, "run", source, reference);
  r.run.name = run.str("name", "run", "run name (console, TensorBoard)");
  r.run.dir = run.str("dir", "", "run directory (default runs/<name>)");
  r.run.seed = static_cast<uint64_t>(
      run.integer("seed", 1234, 0, kBig, "seed of the model init and the data order"));
  r.run.threads =
      static_cast<int>(run.integer("threads", 0, 0, 4096, "CPU threads; 0 = all cores"));
  run.done();
  if (r.run.dir.empty()) r.run.dir = "runs/" + r.run.name;

  Section model(tree, "model", source, reference);
  r.model.init_from =
      model.str("init_from", "", "Hugging Face model directory to continue from (and scale)");
  r.model.config =
      model.str("config", "", "config.json to train from scratch when init_from is empty");
  model.done();

  Section scaling(tree, "scaling", source, reference);
  std::string method = scaling.str("method", "none", "depth up-scaling applied to init_from",
                                   {"none", "dus", "slices", "block_expansion"});
  PlanRequest plan;
  plan.method = method;
  plan.m = scaling.optional_integer("m", -kBig, kBig,
                                    "dus: layers dropped from each copy (s = 2(n - m))");
  plan.slices = scaling.str("slices", "", "slices: half-open base layer ranges, e.g. 0:24,8:32");
  plan.every =
      scaling.integer("every", 0, 0, kBig, "block_expansion: insert a copy after every k-th layer");
  plan.allow_shallower =
      scaling.boolean("allow_shallower", false, "dus: allow m >= n/2 (a model no deeper)");
  scaling.done();
  if (method != "none") r.model.scaling = plan;

  Section data(tree, "data", source, reference);
  const json::Value* train_sources =
      data.raw("train", "list", "-",
               "prepared datasets or Megatron .bin/.idx: paths, or {path, weight, eos} maps");
  const json::Value* val_sources = data.raw(
      "val", "list", "(train's)", "held out: prepared datasets' val splits, Megatron pairs whole");
  r.data.tokenizer = data.str("tokenizer", "",
                              "tokenizer file or model directory the data was made with (sha256 "
                              "checked; Megatron: needed)");
  r.data.seq_len = data.integer("seq_len", 256, 2, 1 << 20, "tokens per training sequence");
  r.data.bos =
      data.str("bos", "document", "BOS before every document, or none", {"document", "none"});
  data.done();
  auto read_sources = [&](const json::Value* list, const std::string& key,
                          const std::string& split) {
    std::vector<DataSource> out;
    if (!list || list->is_null()) return out;
    const std::string where = source + ": data." + key;
    if (list->is_string()) {
      out.push_back({list->as_string(), split, 1.0});
      return out;
    }
    if (!list->is_array()) throw Error(where, "expected a list of dataset paths");
    for (const auto& item : list->as_array()) {
      if (item.is_string()) {
        out.push_back({item.as_string(), split, 1.0});
      } else if (item.is_object()) {
        DataSource d;
        d.split = split;
        for (const auto& [k, v] : item.as_object()) {
          if (k == "path")
            d.dir = v.as_string(where + ".path");
          else if (k == "weight")
            d.weight = v.as_double(where + ".weight");
          else if (k == "eos") {
            const std::string eos = v.as_string(where + ".eos");
            if (eos != "add" && eos != "data")
              throw Error(where + ".eos", "unknown EOS policy '" + eos + "'",
                          "add: the packer appends EOS after each document; data: the "
                          "documents already end with EOS (Megatron's --append-eod)");
            d.eos = eos == "data" ? EosPolicy::Data : EosPolicy::Add;
          } else
            throw Error(where + "." + k, "unknown key", "a data source has path, weight and eos");
        }
        if (d.dir.empty()) throw Error(where, "a data source needs a path");
        if (!(d.weight > 0)) throw Error(where + ".weight", "must be positive");
        out.push_back(d);
      } else {
        throw Error(where,
                    std::string("expected a path or {path, weight}, got ") + item.type_name());
      }
    }
    return out;
  };
  r.data.train = read_sources(train_sources, "train", "train");
  r.data.val = read_sources(val_sources, "val", "val");

  Section train(tree, "train", source, reference);
  r.train.steps = train.integer("steps", 100, 1, kBig, "optimizer steps");
  const int64_t batch_tokens =
      train.integer("global_batch_tokens", 0, 0, kBig,
                    "tokens per optimizer step over all ranks (= global batch x seq_len)");
  r.train.micro_batch =
      train.integer("micro_batch", 8, 1, 1 << 20, "sequences per forward/backward on each rank");
  auto& s = r.train.schedule;
  const ScheduleOptions schedule_defaults;
  s.lr = train.number("lr", schedule_defaults.lr, 1e-12, 10.0, "peak learning rate");
  s.lr_min = train.number("lr_min", schedule_defaults.lr_min, 0.0, 10.0, "learning-rate floor");
  s.kind = train.str("lr_schedule", schedule_defaults.kind, "shape after warm-up",
                     {"cosine", "linear", "constant", "wsd"});
  s.warmup_steps = train.integer("warmup_steps", schedule_defaults.warmup_steps, 0, kBig,
                                 "linear warm-up steps");
  s.decay_fraction = train.number("decay_fraction", schedule_defaults.decay_fraction, 0.0, 1.0,
                                  "wsd: final share of steps spent decaying");
  auto& o = r.train.optimizer;
  o.weight_decay = train.number("weight_decay", 0.1, 0.0, 10.0, "AdamW decoupled weight decay");
  o.beta1 = train.number("beta1", 0.9, 0.0, 0.999999, "AdamW first-moment decay");
  o.beta2 = train.number("beta2", 0.95, 0.0, 0.999999, "AdamW second-moment decay");
  o.eps = train.number("eps", 1e-8, 0.0, 1.0, "AdamW denominator epsilon");
  o.decay_norms_and_embeddings = train.boolean("decay_norms_and_embeddings", false,
                                               "also decay RMSNorm weights and embeddings");
  r.train.grad_clip =
      train.number("grad_clip", 1.0, 0.0, 1e6, "clip the global gradient L2 norm; 0 = off");
  r.train.precision =
      train.str("precision", "auto",
                "compute precision (auto: bf16 on CUDA, and on a CPU only where bf16 is faster)",
                {"auto", "fp32", "bf16"});
  r.train.grad_accumulation = train.str(
      "grad_accumulation", "auto",
      "dtype gradients accumulate over micro-batches and reduce over ranks in (bf16 runs): fp32 "
      "(an fp32 buffer; zero2 shards it) or compute (bf16; what zero1 does); auto: compute for "
      "zero1, fp32 otherwise",
      {"auto", "fp32", "compute"});
  r.train.activation_checkpointing = train.boolean(
      "activation_checkpointing", false, "recompute each decoder layer in backward (less memory)");
  r.train.max_nonfinite_in_row = train.integer("max_nonfinite_in_row", 5, 1, kBig,
                                               "stop after this many non-finite steps in a row");
  r.train.loss_spike_factor = train.number(
      "loss_spike_factor", 0.0, 0.0, 1e6,
      "skip the update of a step whose loss exceeds this many times the recent mean (0: off)");
  if (r.train.loss_spike_factor != 0 && r.train.loss_spike_factor <= 1)
    throw Error(train.where("loss_spike_factor"),
                "must be above 1 (or 0 to turn the guard off), got " +
                    json::dump(json::Value(r.train.loss_spike_factor)));
  r.train.loss_spike_window =
      train.integer("loss_spike_window", 20, 1, 100000,
                    "updated steps whose mean loss the spike guard compares to");
  if (const json::Value* v = train.raw("skip_batches", "list", "[]",
                                       "[[first, last], ...] steps whose batch is read and "
                                       "discarded, no update (a known bad data range; may be set "
                                       "on resume)");
      v && !v->is_null()) {
    const std::string at = train.where("skip_batches");
    if (!v->is_array())
      throw Error(at, std::string("expected a list of [first, last] step ranges"));
    for (const auto& range : v->as_array()) {
      if (!range.is_array() || range.as_array().size() != 2 || !range.as_array()[0].is_int() ||
          !range.as_array()[1].is_int())
        throw Error(at, "expected [first, last] pairs of step numbers, got " + json::dump(range));
      const int64_t first = range.as_array()[0].as_int(), last = range.as_array()[1].as_int();
      if (first < 1 || last < first)
        throw Error(at, "range " + json::dump(range) + " is not 1 <= first <= last");
      r.train.skip_batches.emplace_back(first, last);
    }
  }
  train.done();
  s.total_steps = r.train.steps;

  Section eval(tree, "eval", source, reference);
  r.eval.every = eval.integer("every", 50, 1, kBig, "steps between evaluations (and at the end)");
  r.eval.sequences =
      eval.integer("sequences", 32, 1, kBig, "held-out sequences per evaluation (always the same)");
  r.eval.batch = eval.integer("batch", 8, 1, 1 << 20, "sequences per evaluation forward");
  const json::Value* tasks = eval.raw(
      "tasks", "list", "-",
      "multiple-choice JSONL task files scored on the base, the scaled model and at evaluations "
      "(paths, or {path, limit} maps; needs data.tokenizer)");
  r.eval.tasks_every =
      eval.integer("tasks_every", 0, 0, kBig,
                   "steps between task evaluations, a multiple of eval.every (0: every one)");
  eval.done();
  if (tasks && !tasks->is_null()) {
    const std::string where = source + ": eval.tasks";
    if (!tasks->is_array()) throw Error(where, "expected a list of task files");
    for (const auto& item : tasks->as_array()) {
      TaskSource t;
      if (item.is_string()) {
        t.path = item.as_string();
      } else if (item.is_object()) {
        for (const auto& [k, v] : item.as_object()) {
          if (k == "path")
            t.path = v.as_string(where + ".path");
          else if (k == "limit")
            t.limit = v.as_int(where + ".limit");
          else
            throw Error(where + "." + k, "unknown key", "a task has path and limit");
        }
        if (t.limit < 0) throw Error(where + ".limit", "must be 0 (all items) or more");
      } else {
        throw Error(where,
                    std::string("expected a path or {path, limit}, got ") + item.type_name());
      }
      if (t.path.empty()) throw Error(where, "a task needs a path");
      r.eval.tasks.push_back(t);
    }
    check_task_names(r.eval.tasks, where);
  }

  Section checkpoint(tree, "checkpoint", source, reference);
  r.checkpoint.every =
      checkpoint.integer("every", 100, 1, kBig, "steps between checkpoints (and at the end)");
  r.checkpoint.keep = checkpoint.integer("keep", 3, 1, 1000, "newest complete checkpoints kept");
  r.checkpoint.max_failed_saves = checkpoint.integer(
      "max_failed_saves", 3, 1, 1000,
      "checkpoint saves that may fail in a row (disk full, permission denied, I/O error) while "
      "training goes on; the next one stops the run");
  checkpoint.done();

  Section log(tree, "log", source, reference);
  r.log.every = log.integer("every", 10, 1, kBig, "steps between console lines");
  r.log.tensorboard = log.boolean("tensorboard", true, "write TensorBoard event files");
  log.done();

  Section distributed(tree, "distributed", source, reference);
  r.distributed.strategy = distributed.str(
      "strategy", "ddp",
      "data parallelism over ranks (zero1: shard fp32 masters and Adam moments; zero2: also the "
      "fp32 gradients)",
      {"ddp", "zero1", "zero2"});
  r.distributed.bucket_mb = distributed.number("bucket_mb", 25, 0.001, 1e6,
                                               "ddp: MiB of gradients per all-reduce bucket");
  r.distributed.timeout_s = distributed.number("timeout_s", 300, 1, 1e6,
                                               "seconds a collective or the rendezvous may take");
  distributed.done();
  if (r.train.grad_accumulation == "auto")
    r.train.grad_accumulation = r.distributed.strategy == "zero1" ? "compute" : "fp32";
  if (r.distributed.strategy == "zero1" && r.train.grad_accumulation == "fp32")
    throw Error(source + ": train.grad_accumulation",
                "zero1 accumulates gradients in the compute dtype (its full gradient buffer)",
                "use distributed.strategy: zero2 for sharded fp32 gradients");
  if (r.distributed.strategy == "zero2" && r.train.grad_accumulation == "compute")
    throw Error(source + ": train.grad_accumulation",
                "zero2 accumulates and reduces gradients in fp32 by design",
                "use zero1 for compute-dtype gradients");

  if (reference) {
    reference->push_back(
        "kernels\tauto|on|off\tauto\tfused ops: CUDA kernels; CPU loops for RMSNorm, rotary, "
        "SwiGLU, loss, fp32 causal attention (auto: self-test at start-up)");
    reference->push_back(
        "resume\tstring\t-\ta run directory to resume (exclusive with model.init_from)");
  }
  if (const json::Value* k = tree.find("kernels"); k && !k->is_null()) {
    r.kernels = k->as_string(source + ": kernels");
    if (r.kernels != "auto" && r.kernels != "on" && r.kernels != "off")
      throw Error(source + ": kernels", "\"" + r.kernels + "\" is not one of auto|on|off");
  }
  if (const json::Value* res = tree.find("resume"); res && !res->is_null())
    r.resume = res->as_string(source + ": resume");
  if (describe) return r;

  // Cross-field rules.
  if (!r.resume.empty() && !r.model.init_from.empty())
    throw Error(
        source, "model.init_from and resume are mutually exclusive",
        "resume continues a run with its own weights; start a new run to init from a model");
  if (r.model.init_from.empty() && r.model.config.empty() && r.resume.empty())
    throw Error(
        source + ": model",
        "set model.init_from (a Hugging Face directory) or model.config (train from scratch)");
  if (!r.model.init_from.empty() && !r.model.config.empty())
    throw Error(source + ": model",
                "model.init_from and model.config are exclusive (init_from has its own config)");
  if (r.model.scaling && r.model.init_from.empty())
    throw Error(source + ": scaling", "scaling applies to model.init_from, which is not set");
  if (r.data.train.empty())
    throw Error(source + ": data.train", "no training data", "list prepared dataset directories");
  // A Megatron pair records no tokenizer: data.tokenizer supplies its vocabulary bound and its
  // BOS/EOS ids. Its files hold no val split either: without data.val, a prepared train
  // dataset must provide one.
  bool has_val = !r.data.val.empty();
  for (const char* key : {"train", "val"})
    for (const DataSource& d : std::string(key) == "train" ? r.data.train : r.data.val) {
      if (!d.is_megatron()) {
        has_val = true;
        continue;
      }
      if (r.data.tokenizer.empty())
        throw Error(source + ": data." + key,
                    d.dir + " is a Megatron dataset, which does not record its tokenizer",
                    "set data.tokenizer to the tokenizer its ids come from");
    }
  if (!has_val)
    throw Error(source + ": data.val",
                "every train source is a Megatron dataset, which has no val split to hold out",
                "set data.val to a held-out Megatron pair or prepared dataset");
  r.train.global_batch = batch_tokens == 0 ? r.train.micro_batch : batch_tokens / r.data.seq_len;
  if (batch_tokens != 0 && batch_tokens % r.data.seq_len != 0)
    throw Error(
        source + ": train.global_batch_tokens",
        fmt::format("{} is not a multiple of data.seq_len ({})", batch_tokens, r.data.seq_len));
  if (r.train.global_batch % r.train.micro_batch != 0)
    throw Error(source + ": train.micro_batch",
                fmt::format("the global batch of {} sequences is not a multiple of micro_batch {}",
                            r.train.global_batch, r.train.micro_batch));
  if (!r.eval.tasks.empty() && r.data.tokenizer.empty())
    throw Error(source + ": eval.tasks", "task evaluation needs the tokenizer",
                "set data.tokenizer to the model's tokenizer file or directory");
  if (r.eval.tasks_every % r.eval.every != 0)
    throw Error(
        source + ": eval.tasks_every",
        fmt::format("{} is not a multiple of eval.every ({})", r.eval.tasks_every, r.eval.every),
        "tasks are scored at evaluations");
  validate_schedule(s, source + ": train");
  return r;
}

}  // namespace

Recipe recipe_from_tree(const json::Value& tree, const std::string& source) {
  Recipe r = parse_tree(tree, source, nullptr);
  r.resolved = tree;
  // The hash identifies the run's content. What may change on resume without making it another
  // run: where it lives (run.dir) and how it logs (log.*); how it meets faults (a known bad data
  // range to skip, the spike guard, how many failed saves to bear); how often tasks are scored
  // (like logging, it changes no weight); how the ranks share the work (distributed.*).
  static const std::pair<const char*, std::vector<const char*>> kResumeMayChange[] = {
      {"run", {"dir"}},
      {"train", {"skip_batches", "loss_spike_factor", "loss_spike_window"}},
      {"checkpoint", {"max_failed_saves"}},
      {"eval", {"tasks_every"}},
  };
  json::Value identity = tree;
  for (const auto& [section, keys] : kResumeMayChange) {
    const json::Value* found = identity.find(section);
    if (!found) continue;
    json::Value copy = *found;
    for (const char* key : keys) copy.erase(key);
    identity.set(section, copy);
  }
  identity.erase("log");
  identity.erase("distributed");
  r.sha256 = sha256_hex(json::dump(identity));
  return r;
}

Recipe load_recipe(const std::string& path, const std::vector<std::string>& overrides) {
  std::set<std::string> chain;
  json::Value tree = load_tree(path, chain);
  for (const auto& o : overrides) apply_override(tree, o);
  return recipe_from_tree(tree, path);
}

std::vector<std::string> recipe_reference() {
  std::vector<std::string> out;
  parse_tree(json::Value(json::Object{}), "reference", &out);
  return out;
}

}  // namespace dus
