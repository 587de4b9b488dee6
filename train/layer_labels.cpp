// LayerLabels (train/recovery_tracker.h) from the scaling module's provenance: kept out of
// recovery_tracker.cpp so that restoring a tracker from state.json links without the scaling
// module (and so without LibTorch).

#include <fmt/format.h>

#include "scaling/provenance.h"
#include "train/recovery_tracker.h"

namespace dus {

LayerLabels LayerLabels::from_provenance(const Provenance& provenance) {
  LayerLabels labels;
  for (int64_t i = 0; i < provenance.plan.scaled_layers(); ++i)
    labels.layers.push_back(provenance.describe_layer(i));
  for (const Seam& seam : provenance.seams()) labels.seams.push_back({seam.layer, seam.name()});
  return labels;
}

LayerLabels LayerLabels::plain(int64_t num_layers) {
  LayerLabels labels;
  for (int64_t i = 0; i < num_layers; ++i) labels.layers.push_back(fmt::format("layer {}", i));
  return labels;
}

}  // namespace dus
