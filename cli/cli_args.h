// The command-line parser of `dus`: each command declares its flags (name, value, help,
// default), so unknown flags are errors that suggest the nearest valid one, `--help` is
// generated, and a test can check that every flag README shows exists.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace dus {

class ParsedArgs {
 public:
  bool has(const std::string& name) const;
  /// The value of a flag; throws dus::Error when absent and without default.
  const std::string& get(const std::string& name) const;
  std::string get_or(const std::string& name, const std::string& fallback) const;
  int64_t get_int(const std::string& name) const;
  double get_double(const std::string& name) const;
  bool flag(const std::string& name) const { return has(name); }
  /// Every value of a repeatable option, in order.
  std::vector<std::string> all(const std::string& name) const;
  const std::vector<std::string>& positionals() const { return positionals_; }

 private:
  friend class ArgParser;
  std::string command_;
  std::map<std::string, std::vector<std::string>> values_;
  std::vector<std::string> positionals_;
};

class ArgParser {
 public:
  ArgParser(std::string command, std::string summary);

  /// A boolean switch: --name.
  ArgParser& flag(const std::string& name, const std::string& help);
  /// --name VALUE (or --name=VALUE). `fallback` empty means no default.
  ArgParser& option(const std::string& name, const std::string& value_name,
                    const std::string& help, std::optional<std::string> fallback = std::nullopt,
                    bool repeatable = false);
  /// A required option (error naming it when absent).
  ArgParser& required(const std::string& name, const std::string& value_name,
                      const std::string& help);
  /// Positional arguments: `count` of them (-1: any number), described in help.
  ArgParser& positional(const std::string& name, const std::string& help, int count = 1);
  /// Everything after "--" is passed through as positionals (launch).
  ArgParser& passthrough();

  ParsedArgs parse(const std::vector<std::string>& args) const;
  std::string usage() const;
  const std::string& command() const { return command_; }
  bool knows(const std::string& flag_name) const;

 private:
  struct Spec {
    std::string name, value_name, help;
    bool takes_value = false, repeatable = false, required = false;
    std::optional<std::string> fallback;
  };
  std::string command_, summary_;
  std::vector<Spec> specs_;
  std::string positional_name_, positional_help_;
  int positional_count_ = 0;
  bool passthrough_ = false;
};

}  // namespace dus
