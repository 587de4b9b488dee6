#include "train/recovery_tracker.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include <fmt/format.h>

#include "core/error.h"
#include "core/file_util.h"

namespace dus {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kThresholds[] = {0.5, 0.9, 1.0};  // the recovery milestones, in order

double read_number(const json::Value& v, const std::string& where) {
  return v.is_null() ? kNaN : v.as_double(where);
}
std::optional<double> read_optional(const json::Value& obj, const char* key,
                                    const std::string& where) {
  const json::Value* v = obj.find(key);
  if (!v || v->is_null()) return std::nullopt;
  return v->as_double(where + "." + key);
}
const json::Value& require(const json::Value& obj, const char* key, const std::string& where) {
  const json::Value* v = obj.find(key);
  if (!v) throw Error(where, std::string("missing key \"") + key + "\"");
  return *v;
}

json::Value numbers(const std::vector<double>& values) {
  json::Array out;
  out.reserve(values.size());
  for (double d : values) out.push_back(json::number_or_null(d));
  return json::Value(std::move(out));
}
std::vector<double> read_numbers(const json::Value& v, const std::string& where) {
  std::vector<double> out;
  for (const auto& item : v.as_array(where)) out.push_back(read_number(item, where + "[]"));
  return out;
}

template <typename Field>
std::vector<double> column(const std::vector<LayerStats>& layers, Field field) {
  std::vector<double> out;
  out.reserve(layers.size());
  for (const auto& l : layers) out.push_back(l.*field);
  return out;
}

json::Value point_json(const std::optional<RecoveryTracker::Point>& p) {
  if (!p) return json::Value();
  return json::Value(
      json::Object{{"step", json::Value(p->step)}, {"tokens", json::Value(p->tokens)}});
}

std::string format_tokens(int64_t tokens) {
  if (tokens >= 1000000000) return fmt::format("{:.2f}B", tokens / 1e9);
  if (tokens >= 1000000) return fmt::format("{:.2f}M", tokens / 1e6);
  if (tokens >= 1000) return fmt::format("{:.1f}k", tokens / 1e3);
  return fmt::format("{}", tokens);
}

std::string format_loss(const json::Value* v) {
  if (!v || v->is_null()) return "n/a";
  return fmt::format("{:.4f}", v->as_double());
}

}  // namespace

RecoveryTracker::RecoveryTracker(std::optional<double> base_loss,
                                 std::optional<double> scaled_loss_0, LayerLabels labels)
    : base_loss_(base_loss), scaled_loss_0_(scaled_loss_0), labels_(std::move(labels)) {}

std::optional<double> RecoveryTracker::recovery(double eval_loss) const {
  if (!base_loss_ || !scaled_loss_0_) return std::nullopt;
  const double jump = *scaled_loss_0_ - *base_loss_;
  // A jump at rounding level (block expansion) would turn noise into huge recoveries.
  if (!(jump > 1e-6 * std::max(1.0, std::abs(*base_loss_)))) return std::nullopt;
  return (*scaled_loss_0_ - eval_loss) / jump;
}

std::vector<std::string> RecoveryTracker::observe(int64_t step, int64_t tokens, double eval_loss,
                                                  const std::vector<LayerStats>& layers) {
  if (!history_.empty() && step <= history_.back().step)
    throw Error(
        "recovery tracker",
        fmt::format("evaluation at step {} after one at step {}", step, history_.back().step),
        "steps of evaluations must increase (a resumed run restores the tracker from "
        "its checkpoint)");
  if (!layers.empty() && !labels_.layers.empty() && layers.size() != labels_.layers.size())
    throw Error("recovery tracker", fmt::format("{} layer stats for a model of {} labelled layers",
                                                layers.size(), labels_.layers.size()));

  Eval eval{step, tokens, eval_loss, column(layers, &LayerStats::grad_norm)};
  history_.push_back(std::move(eval));
  if (!layers.empty()) {
    latest_layers_ = layers;
    latest_layers_step_ = step;
  }

  std::vector<std::string> reached;
  auto reach = [&](int i) {
    if (milestones_[i]) return;  // first crossing only
    milestones_[i] = Point{step, tokens};
    reached.push_back(kMilestoneNames[i]);
  };
  if (const auto r = recovery(eval_loss))
    for (int i = 0; i < 3; ++i)
      if (*r >= kThresholds[i]) reach(i);
  if (base_loss_ && eval_loss < *base_loss_) reach(3);
  return reached;
}

std::optional<double> RecoveryTracker::bpb(const std::optional<double>& loss) const {
  if (!bpb_per_loss_ || !loss) return std::nullopt;
  return *loss * *bpb_per_loss_;
}

json::Value RecoveryTracker::to_json() const {
  json::Object milestones;
  for (int i = 0; i < kNumMilestones; ++i)
    milestones.emplace_back(kMilestoneNames[i], point_json(milestones_[i]));

  json::Array layer_names, seams;
  for (const auto& l : labels_.layers) layer_names.emplace_back(l);
  for (const auto& s : labels_.seams)
    seams.emplace_back(
        json::Object{{"layer", json::Value(s.layer)}, {"name", json::Value(s.name)}});

  json::Object latest{
      {"step", json::Value(latest_layers_step_)},
      {"grad_norm", numbers(column(latest_layers_, &LayerStats::grad_norm))},
      {"update_ratio", numbers(column(latest_layers_, &LayerStats::update_ratio))},
      {"hidden_cosine", numbers(column(latest_layers_, &LayerStats::hidden_cosine))}};

  json::Array history;
  for (const Eval& e : history_) {
    json::Object entry{{"step", json::Value(e.step)},
                       {"tokens", json::Value(e.tokens)},
                       {"eval_loss", json::number_or_null(e.eval_loss)}};
    if (const auto r = recovery(e.eval_loss))
      entry.emplace_back("recovery", json::number_or_null(*r));
    entry.emplace_back("grad_norm", numbers(e.grad_norm));
    history.emplace_back(std::move(entry));
  }

  json::Value out(json::Object{
      {"base_loss", json::number_or_null(base_loss_)},
      {"scaled_loss_0", json::number_or_null(scaled_loss_0_)},
      {"milestones", json::Value(std::move(milestones))},
      {"seam", json::Value(json::Object{{"layers", json::Value(std::move(layer_names))},
                                        {"seams", json::Value(std::move(seams))},
                                        {"latest", json::Value(std::move(latest))}})},
      {"history", json::Value(std::move(history))},
  });
  // Only with tasks: the state of a run without them is unchanged.
  if (!tasks_.empty()) out.set("tasks", tasks_.to_json());
  return out;
}

RecoveryTracker RecoveryTracker::from_json(const json::Value& value, const std::string& source) {
  if (!value.is_object()) throw Error(source, "the recovery tracker state must be an object");
  RecoveryTracker t;
  t.base_loss_ = read_optional(value, "base_loss", source);
  t.scaled_loss_0_ = read_optional(value, "scaled_loss_0", source);

  const json::Value& milestones = require(value, "milestones", source);
  for (int i = 0; i < kNumMilestones; ++i) {
    const std::string where = source + ".milestones." + kMilestoneNames[i];
    const json::Value& p = require(milestones, kMilestoneNames[i], source + ".milestones");
    if (!p.is_null())
      t.milestones_[i] = Point{require(p, "step", where).as_int(where + ".step"),
                               require(p, "tokens", where).as_int(where + ".tokens")};
  }

  const std::string seam_where = source + ".seam";
  const json::Value& seam = require(value, "seam", source);
  for (const auto& l : require(seam, "layers", seam_where).as_array(seam_where + ".layers"))
    t.labels_.layers.push_back(l.as_string(seam_where + ".layers[]"));
  for (const auto& s : require(seam, "seams", seam_where).as_array(seam_where + ".seams"))
    t.labels_.seams.push_back(
        {require(s, "layer", seam_where).as_int(seam_where + ".seams[].layer"),
         require(s, "name", seam_where).as_string(seam_where + ".seams[].name")});
  const std::string latest_where = seam_where + ".latest";
  const json::Value& latest = require(seam, "latest", seam_where);
  t.latest_layers_step_ = require(latest, "step", latest_where).as_int(latest_where + ".step");
  const auto grad =
      read_numbers(require(latest, "grad_norm", latest_where), latest_where + ".grad_norm");
  const auto update =
      read_numbers(require(latest, "update_ratio", latest_where), latest_where + ".update_ratio");
  const auto cosine =
      read_numbers(require(latest, "hidden_cosine", latest_where), latest_where + ".hidden_cosine");
  if (update.size() != grad.size() || cosine.size() != grad.size())
    throw Error(latest_where, "grad_norm, update_ratio and hidden_cosine differ in length");
  for (size_t i = 0; i < grad.size(); ++i)
    t.latest_layers_.push_back({grad[i], update[i], cosine[i]});

  const std::string history_where = source + ".history";
  for (const auto& e : require(value, "history", source).as_array(history_where)) {
    Eval eval;
    eval.step = require(e, "step", history_where).as_int(history_where + "[].step");
    eval.tokens = require(e, "tokens", history_where).as_int(history_where + "[].tokens");
    eval.eval_loss =
        read_number(require(e, "eval_loss", history_where), history_where + "[].eval_loss");
    eval.grad_norm =
        read_numbers(require(e, "grad_norm", history_where), history_where + "[].grad_norm");
    t.history_.push_back(std::move(eval));
  }
  if (const json::Value* tasks = value.find("tasks"))
    t.tasks_ = TaskRecovery::from_json(*tasks, source + ".tasks");
  return t;
}

json::Value RecoveryTracker::summary_json() const {
  json::Value summary = to_json();
  json::Value final_loss, final_recovery;
  if (!history_.empty()) {
    final_loss = json::number_or_null(history_.back().eval_loss);
    final_recovery = json::number_or_null(recovery(history_.back().eval_loss));
  }
  // Insert after scaled_loss_0 so the file reads top-down: losses, milestones, seam, history.
  json::Object ordered;
  for (auto& [key, v] : summary.mutable_object()) {
    ordered.emplace_back(key, v);
    if (key == "base_loss" && bpb_per_loss_)
      ordered.emplace_back("base_bpb", json::number_or_null(bpb(base_loss_)));
    if (key == "scaled_loss_0") {
      if (bpb_per_loss_)
        ordered.emplace_back("scaled_bpb_0", json::number_or_null(bpb(scaled_loss_0_)));
      ordered.emplace_back("final_eval_loss", final_loss);
      if (bpb_per_loss_)
        ordered.emplace_back("final_eval_bpb",
                             history_.empty()
                                 ? json::Value()
                                 : json::number_or_null(bpb(history_.back().eval_loss)));
      ordered.emplace_back("final_recovery", final_recovery);
    }
    if (key == "history" && bpb_per_loss_) {
      // Each entry gains its bpb right after eval_loss.
      json::Array entries;
      for (size_t i = 0; i < history_.size(); ++i) {
        json::Object entry;
        for (auto& [k, x] : v.mutable_array()[i].mutable_object()) {
          entry.emplace_back(k, x);
          if (k == "eval_loss")
            entry.emplace_back("bpb", json::number_or_null(bpb(history_[i].eval_loss)));
        }
        entries.emplace_back(std::move(entry));
      }
      ordered.back().second = json::Value(std::move(entries));
    }
  }
  summary = json::Value(std::move(ordered));

  // The layers either side of each seam, with their latest stats, named by origin.
  auto layer_entry = [&](int64_t layer) {
    json::Object o{{"layer", json::Value(layer)}};
    const auto i = static_cast<size_t>(layer);
    o.emplace_back("origin",
                   i < labels_.layers.size() ? json::Value(labels_.layers[i]) : json::Value());
    const bool have = i < latest_layers_.size();
    o.emplace_back("grad_norm",
                   have ? json::number_or_null(latest_layers_[i].grad_norm) : json::Value());
    o.emplace_back("update_ratio",
                   have ? json::number_or_null(latest_layers_[i].update_ratio) : json::Value());
    o.emplace_back("hidden_cosine",
                   have ? json::number_or_null(latest_layers_[i].hidden_cosine) : json::Value());
    return json::Value(std::move(o));
  };
  json::Value seam = *summary.find("seam");
  json::Array seams;
  for (const auto& s : labels_.seams)
    seams.emplace_back(json::Object{{"layer", json::Value(s.layer)},
                                    {"name", json::Value(s.name)},
                                    {"before", layer_entry(s.layer - 1)},
                                    {"after", layer_entry(s.layer)}});
  seam.set("seams", json::Value(std::move(seams)));
  summary.set("seam", std::move(seam));
  if (!tasks_.empty()) {
    summary.set("tasks", tasks_.summary_json());
    summary.set("task_eval_seconds", json::number_or_null(tasks_.mean_seconds()));
  }
  return summary;
}

void RecoveryTracker::write_summary(const std::string& path) const {
  write_file_atomic(path, json::dump(summary_json(), 2) + "\n");
}

std::string RecoveryTracker::summary_text(const json::Value& summary) {
  std::string out;
  const json::Value* base = summary.find("base_loss");
  const json::Value* scaled = summary.find("scaled_loss_0");
  const json::Value* final_loss = summary.find("final_eval_loss");
  const json::Value* final_recovery = summary.find("final_recovery");
  out += "base_loss " + format_loss(base) + "  scaled_loss_0 " + format_loss(scaled) +
         "  final eval_loss " + format_loss(final_loss);
  if (const json::Value* bpb = summary.find("final_eval_bpb"); bpb && !bpb->is_null())
    out += " (bpb " + format_loss(bpb) + ")";
  if (final_recovery && !final_recovery->is_null()) {
    fmt::format_to(std::back_inserter(out), "  recovery {:.3f}", final_recovery->as_double());
  }
  out += "\n";
  if (const json::Value* milestones = summary.find("milestones")) {
    for (const auto& [name, p] : milestones->as_object("milestones")) {
      out += "  " + name + ": ";
      if (p.is_null()) {
        out += "not reached\n";
        continue;
      }
      const int64_t tokens = require(p, "tokens", "milestones." + name).as_int();
      fmt::format_to(std::back_inserter(out), "step {} ({} tokens)\n",
                     require(p, "step", "milestones." + name).as_int(), format_tokens(tokens));
    }
  }
  if (const json::Value* seam = summary.find("seam")) {
    if (const json::Value* seams = seam->find("seams")) {
      for (const auto& s : seams->as_array("seam.seams")) {
        out += "  seam " + require(s, "name", "seam.seams[]").as_string();
        const json::Value* before = s.find("before");
        const json::Value* after = s.find("after");
        auto grad = [](const json::Value* side) {
          const json::Value* g = side ? side->find("grad_norm") : nullptr;
          if (!g || g->is_null()) return std::string("n/a");
          return fmt::format("{:.3g}", g->as_double());
        };
        out += ": grad norm " + grad(before) + " | " + grad(after) + "\n";
      }
    }
  }
  if (const json::Value* tasks = summary.find("tasks")) {
    out += TaskRecovery::summary_text(*tasks);
    if (const json::Value* s = summary.find("task_eval_seconds"); s && !s->is_null()) {
      fmt::format_to(std::back_inserter(out), "  {:.1f} s per task evaluation\n", s->as_double());
    }
  }
  return out;
}

}  // namespace dus
