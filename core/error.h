// The one error type of the project: what was wrong, where (file, key, tensor, rank) and a hint.
// Every user-facing failure is a dus::Error, so the command line can print it and exit cleanly
// instead of crashing.
#pragma once

#include <stdexcept>
#include <string>

namespace dus {

class Error : public std::runtime_error {
 public:
  /// where: the file, key, tensor or rank at fault; what: what was wrong (and what was expected);
  /// hint: optional, what the user can do about it.
  Error(std::string where, std::string what, std::string hint = "");

  const std::string& where() const { return where_; }
  const std::string& problem() const { return problem_; }
  const std::string& hint() const { return hint_; }

 private:
  std::string where_, problem_, hint_;
};

}  // namespace dus
