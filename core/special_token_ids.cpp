#include "core/special_token_ids.h"

#include <fmt/ranges.h>

#include <algorithm>

#include <fmt/format.h>

namespace dus {

bool SpecialTokenIds::accepts(int64_t id) const {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

std::string SpecialTokenIds::describe() const {
  if (!known()) return "unknown";
  if (!as_list) return std::to_string(primary());
  return fmt::format("[{}]", fmt::join(ids, ", "));
}

}  // namespace dus
