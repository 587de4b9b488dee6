// Summed log-likelihood of continuation tokens given a context, batched: lm-eval's
// `_loglikelihood_tokens` for a causal LM. Rows are right-padded; causal attention means the
// padding after a row's last real token cannot reach its real positions, so a row's score does
// not depend on what it was batched with. The lm_head and the log-softmax run only on the
// positions that predict continuation tokens, in row chunks and in fp32, so a 128k vocabulary
// never needs (B, T, V) logits.
#pragma once

#include <cstdint>
#include <vector>

#include "train/task_scoring.h"

namespace dus {

class TransformerImpl;  // model/transformer.h

struct LoglikelihoodOptions {
  int64_t batch = 8;         ///< sequences per forward
  int64_t max_length = 0;    ///< tokens the model sees at most (harness: left-truncated); 0: none
  int64_t chunk_rows = 512;  ///< scored positions per lm_head + log-softmax chunk
};

struct LoglikelihoodStats {
  int64_t forwards = 0;      ///< model calls
  int64_t input_tokens = 0;  ///< real (unpadded) tokens fed
};

/// One summed log-probability (natural log, fp32 softmax, summed in double) per request, in
/// request order. Requests are grouped longest first so a batch pads little.
std::vector<double> continuation_logliks(TransformerImpl& model,
                                         const std::vector<ChoiceTokens>& requests,
                                         const LoglikelihoodOptions& options,
                                         LoglikelihoodStats* stats = nullptr);

}  // namespace dus
