// Whether a prepared dataset's BOS/EOS ids (its index.json, from the tokenizer that prepared it)
// are the ones the model was trained with (its config.json). A mismatch trains the model to end
// documents with a token it never used for that, silently: the loss still falls. Checked before
// training starts, on a fresh start and on resume.
#pragma once

#include <cstdint>
#include <string>

#include "core/special_token_ids.h"
#include "data/packed_sequences.h"

namespace dus {

/// What a model's config.json states about its special tokens.
struct ModelSpecialTokens {
  std::string config_path;  ///< the config.json, named in errors
  SpecialTokenIds bos;      ///< "bos_token_id"; unknown when the config does not say
  SpecialTokenIds eos;      ///< "eos_token_id"; any id of a list matches
};

/// Throws dus::Error naming `dataset_index` and the model's config.json when a stated model id
/// disagrees with the dataset's: EOS always (the loader ends every document with it), BOS only
/// under BosPolicy::PerDocument (the only policy that inserts it). An id the model does not
/// state is not checked (see special_tokens_unchecked).
void check_special_tokens(const ModelSpecialTokens& model, const std::string& dataset_index,
                          int64_t dataset_bos, int64_t dataset_eos, BosPolicy bos);

/// A one-line warning when the model states no BOS or no EOS (so the check cannot be made for
/// it), else "". Printed once per run by the caller.
std::string special_tokens_unchecked(const ModelSpecialTokens& model, BosPolicy bos);

}  // namespace dus
