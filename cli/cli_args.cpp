#include "cli/cli_args.h"

#include <algorithm>
#include <cstdlib>

#include <fmt/format.h>

#include "core/error.h"
#include "core/suggestion.h"

namespace dus {

bool ParsedArgs::has(const std::string& name) const { return values_.count(name) != 0; }

const std::string& ParsedArgs::get(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end() || it->second.empty())
    throw Error("dus " + command_, "missing required option --" + name);
  return it->second.back();
}

std::string ParsedArgs::get_or(const std::string& name, const std::string& fallback) const {
  return has(name) ? get(name) : fallback;
}

int64_t ParsedArgs::get_int(const std::string& name) const {
  const std::string& s = get(name);
  char* end = nullptr;
  long long v = std::strtoll(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0')
    throw Error("dus " + command_, "--" + name + " expects an integer, got '" + s + "'");
  return v;
}

double ParsedArgs::get_double(const std::string& name) const {
  const std::string& s = get(name);
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0')
    throw Error("dus " + command_, "--" + name + " expects a number, got '" + s + "'");
  return v;
}

std::vector<std::string> ParsedArgs::all(const std::string& name) const {
  auto it = values_.find(name);
  return it == values_.end() ? std::vector<std::string>{} : it->second;
}

// ---------------------------------------------------------------------------------------------

ArgParser::ArgParser(std::string command, std::string summary)
    : command_(std::move(command)), summary_(std::move(summary)) {}

ArgParser& ArgParser::flag(const std::string& name, const std::string& help) {
  specs_.push_back({name, "", help, false, false, false, std::nullopt});
  return *this;
}

ArgParser& ArgParser::option(const std::string& name, const std::string& value_name,
                             const std::string& help, std::optional<std::string> fallback,
                             bool repeatable) {
  specs_.push_back({name, value_name, help, true, repeatable, false, std::move(fallback)});
  return *this;
}

ArgParser& ArgParser::required(const std::string& name, const std::string& value_name,
                               const std::string& help) {
  specs_.push_back({name, value_name, help, true, false, true, std::nullopt});
  return *this;
}

ArgParser& ArgParser::positional(const std::string& name, const std::string& help, int count) {
  positional_name_ = name;
  positional_help_ = help;
  positional_count_ = count;
  return *this;
}

ArgParser& ArgParser::passthrough() {
  passthrough_ = true;
  return *this;
}

bool ArgParser::knows(const std::string& flag_name) const {
  if (flag_name == "help") return true;
  for (const auto& s : specs_)
    if (s.name == flag_name) return true;
  return false;
}

ParsedArgs ArgParser::parse(const std::vector<std::string>& args) const {
  ParsedArgs out;
  out.command_ = command_;
  const std::string where = "dus " + command_;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--" && passthrough_) {
      for (size_t j = i + 1; j < args.size(); ++j) out.positionals_.push_back(args[j]);
      break;
    }
    if (a.size() > 2 && a.compare(0, 2, "--") == 0) {
      std::string name = a.substr(2), value;
      bool inline_value = false;
      if (auto eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
        inline_value = true;
      }
      if (name == "help") {
        out.values_["help"].push_back("");
        continue;
      }
      auto spec = std::find_if(specs_.begin(), specs_.end(), [&](const Spec& s) { return s.name == name; });
      if (spec == specs_.end()) {
        std::vector<std::string> names;
        for (const auto& s : specs_) names.push_back(s.name);
        std::string guess = nearest(name, names);
        throw Error(where, "unknown option --" + name,
                    guess.empty() ? "run 'dus " + command_ + " --help' for the options"
                                  : "did you mean --" + guess + "?");
      }
      if (spec->takes_value) {
        if (!inline_value) {
          if (i + 1 >= args.size()) throw Error(where, "option --" + name + " needs a value (" + spec->value_name + ")");
          value = args[++i];
        }
        auto& slot = out.values_[name];
        if (!spec->repeatable) slot.clear();
        slot.push_back(value);
      } else {
        if (inline_value) throw Error(where, "option --" + name + " takes no value");
        out.values_[name].push_back("");
      }
      continue;
    }
    out.positionals_.push_back(a);
  }
  if (out.has("help")) return out;
  for (const auto& s : specs_) {
    if (!out.has(s.name) && s.fallback) out.values_[s.name].push_back(*s.fallback);
    if (s.required && !out.has(s.name))
      throw Error(where, "missing required option --" + s.name + " " + s.value_name,
                  "run 'dus " + command_ + " --help' for usage");
  }
  if (!passthrough_ && positional_count_ >= 0 &&
      out.positionals_.size() != static_cast<size_t>(positional_count_)) {
    if (positional_count_ == 0)
      throw Error(where, "unexpected argument '" + out.positionals_.front() + "'");
    throw Error(where,
                fmt::format("expected {} argument(s) {}, got {}", positional_count_,
                            positional_name_, out.positionals_.size()),
                fmt::format("run 'dus {} --help' for usage", command_));
  }
  return out;
}

std::string ArgParser::usage() const {
  std::string u = "usage: dus " + command_;
  if (positional_count_ != 0) u += " " + positional_name_;
  u += " [options]\n\n" + summary_ + "\n";
  if (!positional_help_.empty()) u += "\n  " + positional_name_ + "  " + positional_help_ + "\n";
  if (!specs_.empty()) u += "\noptions:\n";
  for (const auto& s : specs_) {
    std::string left = "  --" + s.name + (s.takes_value ? " " + s.value_name : "");
    if (left.size() < 28) left.append(28 - left.size(), ' ');
    u += left + " " + s.help;
    if (s.required) u += " (required)";
    if (s.fallback && !s.fallback->empty()) u += " [default: " + *s.fallback + "]";
    if (s.repeatable) u += " (repeatable)";
    u += "\n";
  }
  return u;
}

}  // namespace dus
