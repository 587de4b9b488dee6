#include "train/task_evaluator.h"

#include <torch/types.h>

#include <fmt/format.h>

#include "core/clock.h"
#include "core/error.h"
#include "data/tokenizer.h"
#include "model/transformer.h"
#include "train/distributed/process_group.h"

namespace dus {

TaskSet TaskSet::load(const std::vector<TaskSource>& sources, const Tokenizer& tokenizer,
                      int64_t model_vocab) {
  TaskSet set = read(sources);
  set.tokenize(tokenizer, model_vocab);
  return set;
}

TaskSet TaskSet::read(const std::vector<TaskSource>& sources) {
  check_task_names(sources, "task files");
  TaskSet set;
  for (const TaskSource& source : sources) {
    Task task;
    task.name = task_name(source.path);
    task.file = source.path;
    task.items = load_task(source);
    set.tasks_.push_back(std::move(task));
  }
  return set;
}

void TaskSet::tokenize(const Tokenizer& tokenizer, int64_t model_vocab) {
  if (tokenizer.vocab_size() > model_vocab)
    throw Error(tokenizer.path(),
                fmt::format("the tokenizer has {} ids, the model's vocabulary {}",
                            tokenizer.vocab_size(), model_vocab),
                "use the model's own tokenizer");
  add_bos_ = tokenizer.adds_bos();
  for (Task& task : tasks_) task.requests = encode_task(tokenizer, task.items, add_bos_, task.file);
}

std::string TaskSet::describe(const std::string& prefix) const {
  std::string out;
  for (const Task& t : tasks_) {
    int64_t tokens = 0;
    for (const ChoiceTokens& r : t.requests)
      tokens += static_cast<int64_t>(r.context.size() + r.continuation.size());
    fmt::format_to(std::back_inserter(out), "{}{}: {} items, {} choices, {} tokens ({})\n", prefix,
                   t.name, t.items.size(), t.requests.size(), tokens, t.file);
  }
  return out;
}

std::vector<TaskResult> score_tasks(TransformerImpl& model, const TaskSet& tasks,
                                    const LoglikelihoodOptions& options, dist::ProcessGroup* pg) {
  const bool was_training = model.is_training();
  model.eval();
  std::vector<TaskResult> out;
  for (const TaskSet::Task& task : tasks.tasks()) {
    const auto start = std::chrono::steady_clock::now();
    const int64_t n = static_cast<int64_t>(task.items.size());
    const int64_t first = pg ? n * pg->rank() / pg->size() : 0;
    const int64_t last = pg ? n * (pg->rank() + 1) / pg->size() : n;
    // The requests of items [first, last): item-major, so one contiguous range.
    size_t req_first = 0, req_count = 0;
    for (int64_t i = 0; i < last; ++i) {
      const size_t c = task.items[static_cast<size_t>(i)].choices.size();
      if (i < first)
        req_first += c;
      else
        req_count += c;
    }
    const std::vector<ChoiceTokens> mine(
        task.requests.begin() + static_cast<std::ptrdiff_t>(req_first),
        task.requests.begin() + static_cast<std::ptrdiff_t>(req_first + req_count));
    TaskResult result;
    const std::vector<double> loglik = continuation_logliks(model, mine, options, &result.stats);
    result.items.resize(static_cast<size_t>(n));
    size_t next = 0;
    for (int64_t i = first; i < last; ++i) {
      const TaskItem& item = task.items[static_cast<size_t>(i)];
      std::vector<double> item_ll(
          loglik.begin() + static_cast<std::ptrdiff_t>(next),
          loglik.begin() + static_cast<std::ptrdiff_t>(next + item.choices.size()));
      next += item.choices.size();
      result.items[static_cast<size_t>(i)] = score_item(item, std::move(item_ll));
    }
    if (pg) {
      // Each item's outcome is 0 on every rank but its scorer's: the sums are the outcomes.
      std::vector<double> flags(static_cast<size_t>(2 * n), 0.0);
      for (int64_t i = first; i < last; ++i) {
        flags[static_cast<size_t>(2 * i)] = result.items[static_cast<size_t>(i)].acc ? 1 : 0;
        flags[static_cast<size_t>(2 * i + 1)] =
            result.items[static_cast<size_t>(i)].acc_norm ? 1 : 0;
      }
      flags = pg->all_reduce_scalars(std::move(flags));
      for (int64_t i = 0; i < n; ++i) {
        result.items[static_cast<size_t>(i)].acc = flags[static_cast<size_t>(2 * i)] > 0.5;
        result.items[static_cast<size_t>(i)].acc_norm = flags[static_cast<size_t>(2 * i + 1)] > 0.5;
      }
    }
    result.metrics = summarize(result.items);
    result.seconds = seconds_since(start);
    out.push_back(std::move(result));
  }
  if (was_training) model.train();
  return out;
}

}  // namespace dus
