#include "train/loglikelihood.h"

#include <ATen/ops/from_blob.h>
#include <ATen/ops/gather.h>
#include <ATen/ops/logsumexp.h>
#include <ATen/ops/zeros.h>
#include <torch/types.h>

#include <algorithm>
#include <numeric>

#include <fmt/format.h>

#include "core/error.h"
#include "model/transformer.h"

namespace dus {

namespace {

// The harness's input for one request: (context + continuation) left-truncated to
// max_length + 1 tokens, without its last token; the last len(continuation) positions predict
// the continuation.
struct Row {
  std::vector<int64_t> input;   // fed to the model
  std::vector<int64_t> target;  // continuation ids, predicted by the last target.size() positions
};

Row make_row(const ChoiceTokens& r, int64_t max_length) {
  std::vector<int64_t> all(r.context.begin(), r.context.end());
  all.insert(all.end(), r.continuation.begin(), r.continuation.end());
  if (max_length > 0 && static_cast<int64_t>(all.size()) > max_length + 1)
    all.erase(all.begin(), all.end() - (max_length + 1));
  Row row;
  row.input.assign(all.begin(), all.end() - 1);
  const size_t n = std::min(r.continuation.size(), row.input.size());
  row.target.assign(r.continuation.end() - static_cast<std::ptrdiff_t>(n), r.continuation.end());
  return row;
}

}  // namespace

std::vector<double> continuation_logliks(TransformerImpl& model,
                                         const std::vector<ChoiceTokens>& requests,
                                         const LoglikelihoodOptions& options,
                                         LoglikelihoodStats* stats) {
  if (options.batch < 1) throw Error("continuation_logliks", "batch must be at least 1");
  torch::NoGradGuard no_grad;
  const int64_t V = model.config().vocab_size;
  std::vector<Row> rows;
  rows.reserve(requests.size());
  for (const ChoiceTokens& r : requests) {
    rows.push_back(make_row(r, options.max_length));
    for (int64_t id : rows.back().input)
      if (id < 0 || id >= V)
        throw Error("continuation_logliks",
                    fmt::format("token id {} is outside the model's vocabulary [0, {})", id, V),
                    "the tokenizer does not belong to this model");
    for (int64_t id : rows.back().target)
      if (id < 0 || id >= V)
        throw Error("continuation_logliks",
                    fmt::format("token id {} is outside the model's vocabulary [0, {})", id, V),
                    "the tokenizer does not belong to this model");
  }
  // Longest first: similar lengths share a batch, so little padding is computed.
  std::vector<size_t> order(rows.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return rows[a].input.size() > rows[b].input.size(); });

  std::vector<double> out(rows.size(), 0.0);
  const auto device = model.lm_head_weight().device();
  for (size_t start = 0; start < order.size(); start += static_cast<size_t>(options.batch)) {
    const size_t end = std::min(order.size(), start + static_cast<size_t>(options.batch));
    const int64_t B = static_cast<int64_t>(end - start);
    const int64_t T = static_cast<int64_t>(rows[order[start]].input.size());
    // Right padding with id 0: any valid id does, the causal mask keeps it out of real rows.
    std::vector<int64_t> ids(static_cast<size_t>(B * T), 0);
    std::vector<int64_t> flat_pos, targets,
        owner;  // scored positions in (B*T), their targets, request
    for (int64_t b = 0; b < B; ++b) {
      const Row& row = rows[order[start + static_cast<size_t>(b)]];
      std::copy(row.input.begin(), row.input.end(), ids.begin() + b * T);
      const int64_t L = static_cast<int64_t>(row.input.size());
      const int64_t n = static_cast<int64_t>(row.target.size());
      for (int64_t j = 0; j < n; ++j) {
        flat_pos.push_back(b * T + (L - n + j));
        targets.push_back(row.target[static_cast<size_t>(j)]);
        owner.push_back(static_cast<int64_t>(order[start + static_cast<size_t>(b)]));
      }
      if (stats) stats->input_tokens += L;
    }
    auto input_BT = torch::from_blob(ids.data(), {B, T}, torch::kLong).to(device);
    auto hidden_BTD = model.hidden_states(input_BT);
    const int64_t D = hidden_BTD.size(2);
    auto hidden_ND = hidden_BTD.reshape({B * T, D});
    const int64_t N = static_cast<int64_t>(flat_pos.size());
    auto pos_N = torch::from_blob(flat_pos.data(), {N}, torch::kLong).to(device);
    auto target_N = torch::from_blob(targets.data(), {N}, torch::kLong).to(device);
    auto selected_ND = hidden_ND.index_select(0, pos_N);
    std::vector<double> logprob(static_cast<size_t>(N));
    for (int64_t lo = 0; lo < N; lo += options.chunk_rows) {
      const int64_t n = std::min(options.chunk_rows, N - lo);
      // fp32 log-softmax (the harness's F.log_softmax on fp32 logits): log p = logit - logsumexp.
      auto logits_nV = model.logits_from_hidden(selected_ND.narrow(0, lo, n)).to(torch::kFloat32);
      auto lse_n = at::logsumexp(logits_nV, {1});
      auto picked_n = logits_nV.gather(1, target_N.narrow(0, lo, n).unsqueeze(1)).squeeze(1);
      auto lp_n = (picked_n - lse_n).to(torch::kDouble).cpu().contiguous();
      std::copy(lp_n.data_ptr<double>(), lp_n.data_ptr<double>() + n, logprob.begin() + lo);
    }
    for (int64_t i = 0; i < N; ++i)
      out[static_cast<size_t>(owner[static_cast<size_t>(i)])] += logprob[static_cast<size_t>(i)];
    if (stats) ++stats->forwards;
  }
  return out;
}

}  // namespace dus
