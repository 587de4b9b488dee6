// Scoring a model on multiple-choice tasks (train/task_scoring.h's semantics): the tasks are
// read and tokenized once (TaskSet), then scored on any model as often as needed, by `dus eval`
// and inside the training loop. With a process group every rank scores a contiguous share of
// each task's items and the per-item outcomes are summed over ranks, so the metrics are those
// of one process scoring them all.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/task_file.h"
#include "train/loglikelihood.h"
#include "train/task_scoring.h"

namespace dus {

class Tokenizer;
class TransformerImpl;
namespace dist {
class ProcessGroup;
}

class TaskSet {
 public:
  struct Task {
    std::string name;  ///< task_name(file)
    std::string file;
    std::vector<TaskItem> items;
    std::vector<ChoiceTokens> requests;  ///< item-major, as encode_task
  };

  /// Reads every file (a bad one fails before any model work) and tokenizes every choice the way
  /// the harness does for this tokenizer (Tokenizer::adds_bos). Names must be distinct; every id
  /// must be below `model_vocab` (the tokenizer must belong to the model).
  static TaskSet load(const std::vector<TaskSource>& sources, const Tokenizer& tokenizer,
                      int64_t model_vocab);
  /// The first half of load(): reads and checks every file (a bad one fails before any model
  /// or tokenizer is loaded), no tokens yet.
  static TaskSet read(const std::vector<TaskSource>& sources);
  /// The second half: tokenizes every choice (see load()).
  void tokenize(const Tokenizer& tokenizer, int64_t model_vocab);

  const std::vector<Task>& tasks() const { return tasks_; }
  bool add_bos() const { return add_bos_; }
  bool empty() const { return tasks_.empty(); }
  /// "PREFIX name: N items, C choices, T tokens (file)", one line per task.
  std::string describe(const std::string& prefix) const;

 private:
  std::vector<Task> tasks_;
  bool add_bos_ = false;
};

struct TaskResult {
  TaskMetrics metrics;
  /// Per item; with a process group only acc and acc_norm are filled for items another rank
  /// scored (loglik empty).
  std::vector<ItemResult> items;
  LoglikelihoodStats stats;  ///< this rank's model work
  double seconds = 0;        ///< wall time of this task on this rank
};

/// Scores every task on `model` in eval mode (its training mode is restored after) on its own
/// device and dtype. Collective when `pg` is given: every rank must call it.
std::vector<TaskResult> score_tasks(TransformerImpl& model, const TaskSet& tasks,
                                    const LoglikelihoodOptions& options,
                                    dist::ProcessGroup* pg = nullptr);

}  // namespace dus
