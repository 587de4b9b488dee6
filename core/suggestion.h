// "Did you mean": the valid name nearest to a mistyped one, for flags, commands and recipe keys.
#pragma once

#include <string>
#include <vector>

namespace dus {

/// The candidate nearest to `word` by edit distance, or "" when none is close.
std::string nearest(const std::string& word, const std::vector<std::string>& candidates);

}  // namespace dus
