// Helpers shared by the data tests: a small varied corpus and a tiny BPE tokenizer trained on
// it once per test process (so the data tests need no download and no Python).
#pragma once

#include <string>
#include <vector>

#include "data/tokenizer.h"
#include "test_util.h"

namespace dus::testing {

/// Deterministic English-like text with accents, numbers and some code; `n` lines.
inline std::vector<std::string> corpus_lines(int n, unsigned seed = 1) {
  static const char* words[] = {"the",   "light",      "was",      "good",   "and",
                                "God",   "divided",    "day",      "night",  "café",
                                "naïve", "über",       "x = 42;",  "for",    "i",
                                "in",    "range(10):", "print(i)", "Zürich", "2024"};
  std::vector<std::string> lines;
  unsigned s = seed;
  for (int i = 0; i < n; ++i) {
    std::string line;
    int len = 3 + static_cast<int>((s = s * 1103515245u + 12345u) >> 16) % 15;
    for (int w = 0; w < len; ++w) {
      if (w) line += ' ';
      line += words[((s = s * 1103515245u + 12345u) >> 16) % 20];
    }
    lines.push_back(line);
  }
  return lines;
}

/// Path of a 400-piece BPE tokenizer (byte fallback) trained on corpus_lines once.
inline const std::string& tiny_tokenizer() {
  static TempDir dir;
  static std::string path = [] {
    std::string text;
    for (const auto& l : corpus_lines(3000)) text += l + "\n";
    write_text(dir.file("train.txt"), text);
    TokenizerTrainOptions o;
    o.vocab_size = 400;
    o.threads = 1;
    CorpusOptions c;
    c.lines = true;
    return train_tokenizer({dir.file("train.txt")}, c, dir.file("tok"), o).model_path;
  }();
  return path;
}

}  // namespace dus::testing
