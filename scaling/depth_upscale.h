// Applying a layer plan to a loaded model, in memory: a new Transformer with the plan's layers
// as independent copies of the base layers (a layer used twice is copied twice), embeddings,
// final norm and lm_head copied over, and num_hidden_layers updated. No disk round trip.
//
// Memory: the new model is built without initialisation (allocations untouched, so they cost
// no resident memory yet) and filled tensor by tensor, so at most base + scaled weights are
// resident at once, never a third copy. The base is left unchanged.
#pragma once

#include "model/transformer.h"
#include "scaling/layer_plan.h"
#include "scaling/provenance.h"

namespace dus {

struct ScaledModel {
  Transformer model{nullptr};  ///< the up-scaled model, same dtype and device as the base
  Provenance provenance;       ///< where each of its layers came from
};

/// Builds the scaled model. Throws dus::Error when the plan was made for another depth.
ScaledModel apply_plan(Transformer& base, const LayerPlan& plan);

/// Bytes held by a model's parameters (what scaling adds to resident memory).
int64_t parameter_bytes(Transformer& model);

}  // namespace dus
