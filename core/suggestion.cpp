#include "core/suggestion.h"

#include <algorithm>

namespace dus {

namespace {
// Optimal string alignment distance: insertions, deletions, substitutions and transpositions
// of neighbours each cost 1 ("trian" is one edit from "train").
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.size()][b.size()];
}
}  // namespace

std::string nearest(const std::string& word, const std::vector<std::string>& candidates) {
  // Close enough to be a typo: at most a third of the word, and at least one edit allowed.
  const size_t limit = std::max<size_t>(1, word.size() / 3);
  std::string best;
  size_t best_d = std::string::npos;
  for (const auto& c : candidates) {
    // The distance is at least the difference in length: a candidate that far off cannot be
    // suggested, and skipping it keeps a long unknown word from costing |word| x |c| per
    // candidate (a recipe key may be kilobytes long).
    const size_t gap = word.size() > c.size() ? word.size() - c.size() : c.size() - word.size();
    if (gap > limit) continue;
    size_t d = edit_distance(word, c);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  if (best_d <= limit) return best;
  return "";
}

}  // namespace dus
