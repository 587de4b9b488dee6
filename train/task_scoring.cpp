#include "train/task_scoring.h"

#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "core/error.h"
#include "core/json.h"
#include "data/tokenizer.h"
#include "data/unicode_text.h"

namespace dus {

namespace {

// Python's str.isspace: Unicode White_Space plus the four information separators U+001C..U+001F
// (bidirectional class B/S), which Python counts as whitespace and White_Space does not.
bool python_isspace(char32_t cp) {
  return is_unicode_whitespace(cp) || (cp >= 0x1C && cp <= 0x1F);
}

std::vector<int32_t> encode_default(const Tokenizer& tokenizer, std::string_view text,
                                    bool add_bos) {
  std::vector<int32_t> ids = tokenizer.encode(text);
  if (add_bos && tokenizer.bos_id() >= 0) ids.insert(ids.begin(), tokenizer.bos_id());
  return ids;
}

// First index of the maximum (numpy.argmax).
int64_t argmax(const std::vector<double>& v) {
  int64_t best = 0;
  for (size_t i = 1; i < v.size(); ++i)
    if (v[i] > v[best]) best = static_cast<int64_t>(i);
  return best;
}

void mean_and_stderr(const std::vector<double>& x, double* mean, double* stderr_out) {
  const double n = static_cast<double>(x.size());
  double sum = 0;
  for (double v : x) sum += v;
  *mean = n > 0 ? sum / n : std::numeric_limits<double>::quiet_NaN();
  if (x.size() < 2) {
    *stderr_out = std::numeric_limits<double>::quiet_NaN();
    return;
  }
  double ss = 0;
  for (double v : x) ss += (v - *mean) * (v - *mean);
  *stderr_out = std::sqrt(ss / (n - 1)) / std::sqrt(n);
}

}  // namespace

int64_t python_length(std::string_view text) {
  int64_t n = 0;
  for (size_t pos = 0; pos < text.size(); ++n) next_code_point(text, &pos);
  return n;
}

std::string_view python_rstrip(std::string_view text) {
  size_t keep = 0, pos = 0;
  while (pos < text.size()) {
    const char32_t cp = next_code_point(text, &pos);
    if (!python_isspace(cp)) keep = pos;
  }
  return text.substr(0, keep);
}

ChoiceTokens encode_choice(const Tokenizer& tokenizer, std::string_view context,
                           std::string_view continuation, bool add_bos, const std::string& where) {
  ChoiceTokens out;
  if (context.empty()) {
    out.continuation = tokenizer.encode(continuation);
    if (out.continuation.empty()) throw Error(where, "a choice encodes to no token");
    const int32_t prefix = tokenizer.bos_id() >= 0 ? tokenizer.bos_id() : tokenizer.eos_id();
    if (prefix < 0)
      throw Error(
          where,
          "an empty context needs a BOS or EOS id to condition on, and the tokenizer has neither");
    if (out.continuation.front() == prefix) {
      out.context = {prefix};
      out.continuation.erase(out.continuation.begin());
    } else {
      out.context = {prefix};
    }
    return out;
  }
  const std::string_view stripped = python_rstrip(context);
  const std::string whole = std::string(context) + std::string(continuation);
  std::vector<int32_t> whole_ids = encode_default(tokenizer, whole, add_bos);
  // A context of only whitespace strips to "": encoding it still yields the BOS the tokenizer adds.
  out.context = encode_default(tokenizer, stripped, add_bos);
  const size_t n = std::min(out.context.size(), whole_ids.size());
  out.continuation.assign(whole_ids.begin() + static_cast<std::ptrdiff_t>(n), whole_ids.end());
  if (out.continuation.empty())
    throw Error(where, "a choice encodes to no token after the context");
  return out;
}

std::vector<ChoiceTokens> encode_task(const Tokenizer& tokenizer,
                                      const std::vector<TaskItem>& items, bool add_bos,
                                      const std::string& source) {
  std::vector<ChoiceTokens> out;
  for (const TaskItem& item : items)
    for (size_t c = 0; c < item.choices.size(); ++c)
      out.push_back(encode_choice(tokenizer, item.context, item.choices[c], add_bos,
                                  fmt::format("{} item {} choice {}", source, item.id, c)));
  return out;
}

ItemResult score_item(const TaskItem& item, std::vector<double> loglik) {
  if (loglik.size() != item.choices.size())
    throw Error("score_item", fmt::format("item {}: {} log-likelihoods for {} choices", item.id,
                                          loglik.size(), item.choices.size()));
  ItemResult r;
  std::vector<double> normed(loglik.size());
  for (size_t i = 0; i < loglik.size(); ++i)
    normed[i] = loglik[i] / static_cast<double>(python_length(item.choices[i]));
  r.pred = argmax(loglik);
  r.pred_norm = argmax(normed);
  r.acc = r.pred == item.gold;
  r.acc_norm = r.pred_norm == item.gold;
  r.loglik = std::move(loglik);
  return r;
}

TaskMetrics summarize(const std::vector<ItemResult>& results) {
  TaskMetrics m;
  m.items = static_cast<int64_t>(results.size());
  std::vector<double> acc, acc_norm;
  for (const ItemResult& r : results) {
    acc.push_back(r.acc ? 1.0 : 0.0);
    acc_norm.push_back(r.acc_norm ? 1.0 : 0.0);
  }
  mean_and_stderr(acc, &m.acc, &m.acc_stderr);
  mean_and_stderr(acc_norm, &m.acc_norm, &m.acc_norm_stderr);
  return m;
}

}  // namespace dus
