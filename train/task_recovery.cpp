#include "train/task_recovery.h"

#include <cmath>
#include <limits>
#include <utility>

#include <fmt/format.h>

#include "core/error.h"

namespace dus {

namespace {

double read_number(const json::Value& v, const std::string& where) {
  return v.is_null() ? std::numeric_limits<double>::quiet_NaN() : v.as_double(where);
}
const json::Value& require(const json::Value& obj, const char* key, const std::string& where) {
  if (!obj.is_object()) throw Error(where, "expected an object");
  const json::Value* v = obj.find(key);
  if (!v) throw Error(where, std::string("missing key \"") + key + "\"");
  return *v;
}

json::Value metrics_json(const TaskMetrics& m) {
  return json::Value(json::Object{{"items", json::Value(m.items)},
                                  {"acc", json::number_or_null(m.acc)},
                                  {"acc_stderr", json::number_or_null(m.acc_stderr)},
                                  {"acc_norm", json::number_or_null(m.acc_norm)},
                                  {"acc_norm_stderr", json::number_or_null(m.acc_norm_stderr)}});
}
TaskMetrics read_metrics(const json::Value& v, const std::string& where) {
  TaskMetrics m;
  m.items = require(v, "items", where).as_int(where + ".items");
  m.acc = read_number(require(v, "acc", where), where + ".acc");
  m.acc_stderr = read_number(require(v, "acc_stderr", where), where + ".acc_stderr");
  m.acc_norm = read_number(require(v, "acc_norm", where), where + ".acc_norm");
  m.acc_norm_stderr = read_number(require(v, "acc_norm_stderr", where), where + ".acc_norm_stderr");
  return m;
}
json::Value optional_metrics_json(const std::optional<TaskMetrics>& m) {
  return m ? metrics_json(*m) : json::Value();
}
std::optional<TaskMetrics> read_optional_metrics(const json::Value& v, const std::string& where) {
  if (v.is_null()) return std::nullopt;
  return read_metrics(v, where);
}

std::string format_acc(const json::Value* v) {
  if (!v || v->is_null()) return "n/a";
  return fmt::format("{:.3f}", v->as_double());
}

}  // namespace

void TaskRecovery::add_task(std::string name, std::string file, int64_t items,
                            std::optional<TaskMetrics> base, std::optional<TaskMetrics> scaled_0) {
  for (const Task& t : tasks_)
    if (t.name == name)
      throw Error("eval.tasks",
                  "two tasks are named \"" + name + "\" (" + t.file + ", " + file + ")",
                  "a task is named by its file's stem: rename one file");
  tasks_.push_back({std::move(name), std::move(file), items, base, scaled_0, {}});
}

std::optional<double> TaskRecovery::recovery(const Task& task, double acc) {
  if (!task.base || !task.scaled_0) return std::nullopt;
  const double drop = task.base->acc - task.scaled_0->acc;
  if (!(drop > 0)) return std::nullopt;
  return (acc - task.scaled_0->acc) / drop;
}

void TaskRecovery::observe(int64_t step, int64_t tokens, const std::vector<TaskMetrics>& scores) {
  if (scores.size() != tasks_.size())
    throw Error("task recovery",
                fmt::format("{} scores for {} tasks", scores.size(), tasks_.size()));
  for (size_t i = 0; i < tasks_.size(); ++i) {
    auto& history = tasks_[i].history;
    if (!history.empty() && step <= history.back().step)
      throw Error("task recovery", fmt::format("evaluation at step {} after one at step {}", step,
                                               history.back().step));
    history.push_back({step, tokens, scores[i]});
  }
}

void TaskRecovery::add_seconds(double seconds) {
  seconds_total_ += seconds;
  ++evaluations_;
}

std::optional<double> TaskRecovery::mean_seconds() const {
  if (evaluations_ == 0) return std::nullopt;
  return seconds_total_ / static_cast<double>(evaluations_);
}

json::Value TaskRecovery::to_json() const {
  json::Array tasks;
  for (const Task& t : tasks_) {
    json::Array history;
    for (const Eval& e : t.history)
      history.emplace_back(json::Object{{"step", json::Value(e.step)},
                                        {"tokens", json::Value(e.tokens)},
                                        {"metrics", metrics_json(e.metrics)}});
    tasks.emplace_back(json::Object{{"name", json::Value(t.name)},
                                    {"file", json::Value(t.file)},
                                    {"items", json::Value(t.items)},
                                    {"base", optional_metrics_json(t.base)},
                                    {"scaled_0", optional_metrics_json(t.scaled_0)},
                                    {"history", json::Value(std::move(history))}});
  }
  return json::Value(json::Object{{"tasks", json::Value(std::move(tasks))},
                                  {"seconds_total", json::Value(seconds_total_)},
                                  {"evaluations", json::Value(evaluations_)}});
}

TaskRecovery TaskRecovery::from_json(const json::Value& value, const std::string& source) {
  TaskRecovery out;
  const std::string tasks_where = source + ".tasks";
  for (const json::Value& t : require(value, "tasks", source).as_array(tasks_where)) {
    const std::string name = require(t, "name", tasks_where).as_string(tasks_where + "[].name");
    const std::string where = tasks_where + "." + name;
    // One key after the other: an error names the first missing one.
    std::string file = require(t, "file", where).as_string(where + ".file");
    const int64_t items = require(t, "items", where).as_int(where + ".items");
    auto base = read_optional_metrics(require(t, "base", where), where + ".base");
    auto scaled_0 = read_optional_metrics(require(t, "scaled_0", where), where + ".scaled_0");
    out.add_task(name, std::move(file), items, base, scaled_0);
    for (const json::Value& e : require(t, "history", where).as_array(where + ".history")) {
      const std::string at = where + ".history[]";
      out.tasks_.back().history.push_back(
          {require(e, "step", at).as_int(at + ".step"),
           require(e, "tokens", at).as_int(at + ".tokens"),
           read_metrics(require(e, "metrics", at), at + ".metrics")});
    }
  }
  out.seconds_total_ = require(value, "seconds_total", source).as_double(source + ".seconds_total");
  out.evaluations_ = require(value, "evaluations", source).as_int(source + ".evaluations");
  return out;
}

json::Value TaskRecovery::summary_json() const {
  json::Array out;
  for (const Task& t : tasks_) {
    json::Array history;
    for (const Eval& e : t.history)
      history.emplace_back(
          json::Object{{"step", json::Value(e.step)},
                       {"tokens", json::Value(e.tokens)},
                       {"acc", json::number_or_null(e.metrics.acc)},
                       {"acc_stderr", json::number_or_null(e.metrics.acc_stderr)},
                       {"acc_norm", json::number_or_null(e.metrics.acc_norm)},
                       {"acc_norm_stderr", json::number_or_null(e.metrics.acc_norm_stderr)},
                       {"recovery", json::number_or_null(recovery(t, e.metrics.acc))}});
    const Eval* last = t.history.empty() ? nullptr : &t.history.back();
    auto field = [](const std::optional<TaskMetrics>& m, double TaskMetrics::*f) {
      return m ? json::number_or_null((*m).*f) : json::Value();
    };
    out.emplace_back(json::Object{
        {"name", json::Value(t.name)},
        {"file", json::Value(t.file)},
        {"items", json::Value(t.items)},
        {"base_acc", field(t.base, &TaskMetrics::acc)},
        {"base_acc_norm", field(t.base, &TaskMetrics::acc_norm)},
        {"scaled_acc_0", field(t.scaled_0, &TaskMetrics::acc)},
        {"scaled_acc_norm_0", field(t.scaled_0, &TaskMetrics::acc_norm)},
        {"final_acc", last ? json::number_or_null(last->metrics.acc) : json::Value()},
        {"final_acc_norm", last ? json::number_or_null(last->metrics.acc_norm) : json::Value()},
        {"final_recovery",
         last ? json::number_or_null(recovery(t, last->metrics.acc)) : json::Value()},
        {"history", json::Value(std::move(history))}});
  }
  return json::Value(std::move(out));
}

std::string TaskRecovery::summary_text(const json::Value& tasks) {
  std::string out;
  for (const json::Value& t : tasks.as_array("tasks")) {
    const int64_t items = require(t, "items", "tasks[]").as_int();
    out += "task " + require(t, "name", "tasks[]").as_string() + " (" + fmt::format("{}", items) +
           " items): acc base " + format_acc(t.find("base_acc")) + "  scaled_0 " +
           format_acc(t.find("scaled_acc_0")) + "  final " + format_acc(t.find("final_acc")) +
           "  (acc_norm final " + format_acc(t.find("final_acc_norm")) + ")";
    if (const json::Value* r = t.find("final_recovery"); r && !r->is_null()) {
      fmt::format_to(std::back_inserter(out), "  recovery {:.2f}", r->as_double());
    }
    out += "\n";
  }
  return out;
}

}  // namespace dus
