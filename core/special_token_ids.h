// The BOS/EOS ids a model's config.json states, kept apart from ModelConfig so the torch-free
// data pipeline can check a dataset against them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dus {

/// A special token (BOS, EOS) as config.json states it: one id, a list (Llama-3 instruct lists
/// several EOS ids; the first is the primary, any of them ends a document), or nothing (key
/// absent or null). Nothing is kept as unknown rather than guessed, so a check against a
/// dataset can tell "the model says otherwise" from "the model does not say".
struct SpecialTokenIds {
  std::vector<int64_t> ids;  ///< as stated, in order; empty = unknown
  bool as_list = false;      ///< stated as a JSON list (written back as one)

  bool known() const { return !ids.empty(); }
  int64_t primary() const { return ids.at(0); }  ///< the first id; only when known()
  bool accepts(int64_t id) const;                ///< one of the stated ids
  std::string describe() const;                  ///< "2", "[128001, 128008]" or "unknown"
};

}  // namespace dus
