// Task accuracy across the seam: for each multiple-choice task of eval.tasks, its accuracy on
// the base model (base_acc), on the up-scaled model before training (scaled_acc_0) and at
// evaluations during training (acc(t)), and a recovery defined as for the loss:
//   recovery(t) = (scaled_acc_0 - acc(t)) / (scaled_acc_0 - base_acc)
// 0 right after scaling, 1 back at the base's accuracy. Absent without a base or a scaled
// accuracy, or when scaling did not lower the accuracy (nothing to recover; on a small task the
// two can tie). Part of the recovery tracker's state (checkpoint state.json, recovery.json), so
// a resumed run keeps its base and scaled numbers. Torch-free.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/json.h"
#include "train/task_scoring.h"

namespace dus {

class TaskRecovery {
 public:
  struct Eval {  ///< one evaluation of one task
    int64_t step = 0;
    int64_t tokens = 0;  ///< training tokens seen when evaluated
    TaskMetrics metrics;
  };
  struct Task {
    std::string name;  ///< the task file's stem
    std::string file;
    int64_t items = 0;
    std::optional<TaskMetrics> base;      ///< absent when training from scratch
    std::optional<TaskMetrics> scaled_0;  ///< absent without scaling
    std::vector<Eval> history;
  };

  /// Registers a task with its start-of-run scores; tasks keep this order everywhere. A name
  /// given twice is an error.
  void add_task(std::string name, std::string file, int64_t items, std::optional<TaskMetrics> base,
                std::optional<TaskMetrics> scaled_0);

  /// (scaled_acc_0 - acc) / (scaled_acc_0 - base_acc); see the top of this file.
  static std::optional<double> recovery(const Task& task, double acc);

  /// Records one evaluation of every task (`scores` in add_task order). Steps must increase.
  void observe(int64_t step, int64_t tokens, const std::vector<TaskMetrics>& scores);

  /// Wall seconds of one evaluation of all tasks (the start-of-run ones included): the cost
  /// reported as task_eval_seconds (the mean).
  void add_seconds(double seconds);
  std::optional<double> mean_seconds() const;

  const std::vector<Task>& tasks() const { return tasks_; }
  bool empty() const { return tasks_.empty(); }

  /// Everything, for the checkpoint; from_json restores it (stderr NaN <-> null).
  json::Value to_json() const;
  static TaskRecovery from_json(const json::Value& value, const std::string& source);

  /// recovery.json's "tasks": per task {name, file, items, base_acc, base_acc_norm,
  /// scaled_acc_0, scaled_acc_norm_0, final_acc, final_acc_norm, final_recovery,
  /// history: [{step, tokens, acc, acc_stderr, acc_norm, acc_norm_stderr, recovery}]}
  /// (null where absent).
  json::Value summary_json() const;
  /// One line per task for the console and `dus report`, from recovery.json's "tasks".
  static std::string summary_text(const json::Value& tasks);

 private:
  std::vector<Task> tasks_;
  double seconds_total_ = 0;
  int64_t evaluations_ = 0;
};

}  // namespace dus
