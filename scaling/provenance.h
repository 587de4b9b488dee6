// Provenance of an up-scaled model: for every layer, the copy and base layer it came from, and
// the seams where one copy ends and another begins (where the loss jump of DUS comes from, and
// what the recovery tracking of the trainer watches). Saved with the scaled model in config.json
// under "dus" and, JSON-encoded, in every safetensors shard's __metadata__ under "dus".
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/json.h"
#include "scaling/layer_plan.h"

namespace dus {

class ModelConfig;

/// A boundary between scaled layers `layer - 1` and `layer` where the stack does not continue
/// the base model (a new copy starts, or the base index jumps).
struct Seam {
  int64_t layer = 0;   ///< index of the first scaled layer after the seam
  LayerOrigin before;  ///< origin of scaled layer `layer - 1`
  LayerOrigin after;   ///< origin of scaled layer `layer`
  /// "23|24: copy 1 layer 23 -> copy 2 layer 8".
  std::string name() const;
};

/// The config.json / safetensors metadata key.
inline constexpr const char* kProvenanceKey = "dus";

struct Provenance {
  LayerPlan plan;

  /// Every seam, in layer order (dus(32, 8): one, between scaled layers 23 and 24).
  std::vector<Seam> seams() const;
  /// "copy 2, base layer 8" (plus ", zeroed output" for block expansion copies).
  std::string describe_layer(int64_t scaled_layer) const;

  /// {"method", "base_layers", "scaled_layers", "m"|"every"|-, "slices", "layers", "seams"}.
  json::Value to_json() const;
  /// Reads what to_json wrote; `source` names the file in errors. Checks the layers agree
  /// with the plan fields (a hand-edited block that disagrees is an error).
  static Provenance from_json(const json::Value& value, const std::string& source);
  /// The "dus" block of a loaded config.json, when it has one (a model that was up-scaled).
  static std::optional<Provenance> from_config(const ModelConfig& config,
                                               const std::string& source);
  /// {"dus": compact JSON}: string values as safetensors metadata requires.
  std::map<std::string, std::string> safetensors_metadata() const;
};

}  // namespace dus
