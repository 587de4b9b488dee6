#include "data/special_token_check.h"

#include <fmt/format.h>

#include "core/error.h"

namespace dus {

namespace {

[[noreturn]] void mismatch(const ModelSpecialTokens& model, const std::string& dataset_index,
                           const char* what, int64_t dataset_id, const SpecialTokenIds& model_id) {
  const std::string which = std::string(what) + "_id";
  throw Error(dataset_index + ": tokenizer." + which,
              fmt::format("the dataset's {} is {} but the model's {}_token_id is {} ({})", which,
                          dataset_id, what, model_id.describe(), model.config_path),
              "prepare the data with the base model's tokenizer (dus prepare --tokenizer "
              "<model>/tokenizer.model), or continue from a model whose config.json states "
              "the dataset's ids");
}

}  // namespace

void check_special_tokens(const ModelSpecialTokens& model, const std::string& dataset_index,
                          int64_t dataset_bos, int64_t dataset_eos, BosPolicy bos) {
  if (model.eos.known() && !model.eos.accepts(dataset_eos))
    mismatch(model, dataset_index, "eos", dataset_eos, model.eos);
  // A BOS id only reaches the model when the loader inserts it; with bos: none the dataset's
  // bos_id is never trained on, so a difference there is harmless.
  if (bos == BosPolicy::PerDocument && model.bos.known() && dataset_bos >= 0 &&
      !model.bos.accepts(dataset_bos))
    mismatch(model, dataset_index, "bos", dataset_bos, model.bos);
}

std::string special_tokens_unchecked(const ModelSpecialTokens& model, BosPolicy bos) {
  const bool bos_unknown = bos == BosPolicy::PerDocument && !model.bos.known();
  const bool eos_unknown = !model.eos.known();
  if (!bos_unknown && !eos_unknown) return "";
  const std::string which = bos_unknown && eos_unknown
                                ? "bos_token_id nor eos_token_id"
                                : (bos_unknown ? "bos_token_id" : "eos_token_id");
  return "warning: " + model.config_path + " states no " + which +
         "; the datasets' ids are not checked against the model's";
}

}  // namespace dus
