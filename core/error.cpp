#include "core/error.h"

namespace dus {

namespace {
std::string compose(const std::string& where, const std::string& what, const std::string& hint) {
  std::string message = where.empty() ? what : where + ": " + what;
  if (!hint.empty()) message += " (hint: " + hint + ")";
  return message;
}
}  // namespace

Error::Error(std::string where, std::string what, std::string hint)
    : std::runtime_error(compose(where, what, hint)),
      where_(std::move(where)),
      problem_(std::move(what)),
      hint_(std::move(hint)) {}

}  // namespace dus
