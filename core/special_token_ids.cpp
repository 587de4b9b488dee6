#include "core/special_token_ids.h"

#include <algorithm>

namespace dus {

bool SpecialTokenIds::accepts(int64_t id) const {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

std::string SpecialTokenIds::describe() const {
  if (!known()) return "unknown";
  if (!as_list) return std::to_string(primary());
  std::string s = "[";
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? ", " : "") + std::to_string(ids[i]);
  return s + "]";
}

}  // namespace dus
