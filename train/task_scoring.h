// Multiple-choice scoring as lm-evaluation-harness 0.4.x scores it for a Hugging Face causal LM
// (lm_eval/api/model.py `loglikelihood` and `_encode_pair`, models/huggingface.py
// `_loglikelihood_tokens`, api/task.py `process_results`, api/metrics.py `mean_stderr`):
//  * tokens: trailing whitespace of the context moves to the continuation; whole =
//    encode(context + continuation), context = encode(context), continuation =
//    whole[len(context):], both encoded as the Hugging Face tokenizer does by default
//    (add_special_tokens): a sentencepiece model (LlamaTokenizer) prepends BOS, a tokenizer.json
//    does what its post_processor says (Llama-3's and Mistral's add BOS). An empty context becomes
//    [BOS] (EOS when there is no BOS) before the continuation encoded without BOS, unless the
//    continuation already starts with that id.
//  * a choice's score is the summed log-probability of its continuation tokens;
//  * acc: argmax of the scores (first on ties, as numpy) is gold; acc_norm: argmax of score /
//    len(choice) in characters (Python's len: code points); stderr: sample stddev / sqrt(n).
// Torch-free: the log-likelihoods come from train/loglikelihood.h.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "data/task_file.h"

namespace dus {

class Tokenizer;

/// One choice of one item, tokenized.
struct ChoiceTokens {
  std::vector<int32_t> context;       ///< conditioning ids (BOS first when the tokenizer has one)
  std::vector<int32_t> continuation;  ///< ids scored, at least one
};

/// The harness's split of (context, continuation) into ids; `add_bos`: Tokenizer::adds_bos().
/// Throws dus::Error naming `where` when the continuation encodes to no token.
ChoiceTokens encode_choice(const Tokenizer& tokenizer, std::string_view context,
                           std::string_view continuation, bool add_bos, const std::string& where);

/// Every choice of every item, item-major (item 0's choices, then item 1's, ...).
std::vector<ChoiceTokens> encode_task(const Tokenizer& tokenizer,
                                      const std::vector<TaskItem>& items, bool add_bos,
                                      const std::string& source);

/// Python's len(): code points of UTF-8 text.
int64_t python_length(std::string_view text);
/// Python's str.rstrip() length: `text` without its trailing whitespace (str.isspace).
std::string_view python_rstrip(std::string_view text);

struct ItemResult {
  std::vector<double> loglik;  ///< per choice
  int64_t pred = 0;            ///< argmax of loglik
  int64_t pred_norm = 0;       ///< argmax of loglik / characters
  bool acc = false, acc_norm = false;
};

/// Scores one item from its choices' log-likelihoods (one per choice).
ItemResult score_item(const TaskItem& item, std::vector<double> loglik);

struct TaskMetrics {
  int64_t items = 0;
  double acc = 0, acc_stderr = 0;  ///< stderr NaN for fewer than 2 items
  double acc_norm = 0, acc_norm_stderr = 0;
};

/// Means and their standard errors (lm-eval's mean_stderr: sample stddev / sqrt(n)).
TaskMetrics summarize(const std::vector<ItemResult>& results);

}  // namespace dus
