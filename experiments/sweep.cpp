#include "experiments/sweep.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include <fmt/format.h>

#include "core/clock.h"
#include "core/error.h"
#include "core/file_util.h"
#include "core/sha256.h"
#include "core/subprocess.h"
#include "core/text_format.h"
#include "scaling/block_expansion.h"
#include "scaling/layer_plan.h"
#include "scaling/parameter_count.h"
#include "train/checkpoint.h"
#include "train/metrics_log.h"
#include "train/recipe.h"
#include "train/recovery_tracker.h"
#include "train/train_loop.h"

namespace dus {

namespace fs = std::filesystem;

namespace {

constexpr const char* kPlanFile = "sweep_plan.json";  // what makes a rerun the same sweep
constexpr const char* kTimeFile = "sweep_time.json";  // per run: wall seconds and tokens trained

using Clock = std::chrono::steady_clock;

std::string tag_of(const SweepVariant& v) {
  return v.m ? "m" + std::to_string(*v.m) : "every" + std::to_string(*v.every);
}

std::string scratch_config_path(const std::string& dir, const std::string& tag) {
  return dir + "/configs/scratch-" + tag + ".json";
}

json::Value opt_num(const std::optional<double>& x) {
  return x ? json::Value(*x) : json::Value();
}

std::optional<double> find_num(const json::Value& v, const char* key) {
  const json::Value* x = v.find(key);
  if (!x || !x->is_number()) return std::nullopt;
  const double d = x->as_double();
  if (!std::isfinite(d)) return std::nullopt;
  return d;
}

enum class RunState { kFresh, kPartial, kFinished };

// recovery.json is written first at the end of a run and final/config.json last (after the
// tensors), so both present means the run finished.
RunState run_state(const std::string& run_dir) {
  if (fs::exists(run_dir + "/" + kRecoveryFile) && fs::exists(run_dir + "/final/config.json"))
    return RunState::kFinished;
  if (!list_checkpoints(run_dir).empty()) return RunState::kPartial;
  return RunState::kFresh;
}

int64_t checkpoint_step(const std::string& checkpoint_dir) {
  const std::string name = fs::path(checkpoint_dir).filename().string();  // step_00000012
  return std::atoll(name.substr(name.find('_') + 1).c_str());
}

// Points of a run's eval curve: step 0 (the loss the run started from, when measured) and
// every evaluation, with training FLOPs = tokens x FLOPs per token of the run's model.
json::Value read_curve(const std::vector<json::Value>& records, double flops_per_token,
                       int64_t* last_tokens) {
  json::Array curve;
  *last_tokens = 0;
  auto point = [&](int64_t step, int64_t tokens, double loss, const json::Value* recovery) {
    json::Value p(json::Object{});
    p.set("step", json::Value(step));
    p.set("tokens", json::Value(tokens));
    p.set("flops", json::Value(static_cast<double>(tokens) * flops_per_token));
    p.set("eval_loss", json::Value(loss));
    p.set("recovery", recovery ? *recovery : json::Value());
    curve.push_back(p);
  };
  for (const auto& r : records) {
    const json::Value* kind = r.find("kind");
    if (!kind || !kind->is_string()) continue;
    if (kind->as_string() == "start") {
      auto start = find_num(r, "scaled_loss_0");
      if (!start) start = find_num(r, "base_loss");
      json::Value zero(0.0);
      if (start) point(0, 0, *start, find_num(r, "scaled_loss_0") ? &zero : nullptr);
    } else if (kind->as_string() == "eval") {
      auto loss = find_num(r, "eval_loss");
      if (loss)
        point(r.find("step")->as_int(), r.find("tokens")->as_int(), *loss, r.find("recovery"));
    } else if (kind->as_string() == "train") {
      *last_tokens = r.find("tokens")->as_int();
    }
  }
  return json::Value(std::move(curve));
}

// Eval loss at `flops` on a curve, linear between evaluations; absent outside the curve.
std::optional<double> loss_at_flops(const json::Value& curve, double flops) {
  const auto& pts = curve.as_array();
  for (size_t i = 0; i < pts.size(); ++i) {
    const double f1 = pts[i].find("flops")->as_double(), l1 = pts[i].find("eval_loss")->as_double();
    if (std::fabs(f1 - flops) <= 1e-9 * std::max(1.0, flops)) return l1;
    if (i == 0 || f1 < flops) continue;
    const double f0 = pts[i - 1].find("flops")->as_double(),
                 l0 = pts[i - 1].find("eval_loss")->as_double();
    if (f0 > flops) return std::nullopt;
    return l0 + (l1 - l0) * (flops - f0) / (f1 - f0);
  }
  return std::nullopt;
}

json::Value milestone_point(int64_t step, int64_t tokens, double flops_per_token) {
  json::Value p(json::Object{});
  p.set("step", json::Value(step));
  p.set("tokens", json::Value(tokens));
  p.set("flops", json::Value(static_cast<double>(tokens) * flops_per_token));
  return p;
}

json::Value variant_record(const SweepVariant& v, int64_t seq_len,
                           std::optional<double> sweep_base_loss) {
  const json::Value summary = json::parse_file(v.run_dir + "/" + kRecoveryFile);
  const auto records = MetricsLog::read(v.run_dir + "/" + kMetricsFile);
  const double fpt = v.config.training_flops_per_token(seq_len);
  int64_t tokens = 0;
  json::Value curve = read_curve(records, fpt, &tokens);

  json::Value rec(json::Object{});
  rec.set("name", json::Value(v.name));
  rec.set("kind", json::Value(v.kind));
  rec.set("method", json::Value(v.method));
  rec.set("m", v.m ? json::Value(*v.m) : json::Value());
  rec.set("every", v.every ? json::Value(*v.every) : json::Value());
  rec.set("layers", json::Value(v.config.num_hidden_layers));
  rec.set("parameters", json::Value(v.config.parameter_count()));
  rec.set("flops_per_token", json::Value(fpt));
  rec.set("base_loss", opt_num(find_num(summary, "base_loss")));
  rec.set("scaled_loss_0", opt_num(find_num(summary, "scaled_loss_0")));
  rec.set("final_eval_loss", opt_num(find_num(summary, "final_eval_loss")));
  rec.set("tokens", json::Value(tokens));
  rec.set("flops", json::Value(static_cast<double>(tokens) * fpt));
  std::optional<double> seconds, tokens_per_s;
  if (fs::exists(v.run_dir + "/" + kTimeFile)) {
    const json::Value t = json::parse_file(v.run_dir + "/" + kTimeFile);
    seconds = find_num(t, "seconds");
    if (seconds && *seconds > 0) tokens_per_s = t.find("tokens")->as_double() / *seconds;
  }
  rec.set("seconds", opt_num(seconds));
  rec.set("tokens_per_s", opt_num(tokens_per_s));

  // Milestones as the run's recovery tracker recorded them, with FLOPs added. A scratch
  // baseline has no base_loss of its own: its beat_base is read off its curve against the
  // sweep's base_loss, so every row answers "when did it get below the base model?".
  json::Value milestones(json::Object{});
  const json::Value* tracked = summary.find("milestones");
  for (const char* name : kMilestoneNames) {
    const json::Value* m = tracked ? tracked->find(name) : nullptr;
    milestones.set(name, m && m->is_object() ? milestone_point(m->find("step")->as_int(),
                                                               m->find("tokens")->as_int(), fpt)
                                             : json::Value());
  }
  if (v.kind == "scratch" && sweep_base_loss) {
    for (const auto& p : curve.as_array()) {
      if (p.find("eval_loss")->as_double() < *sweep_base_loss) {
        milestones.set("beat_base",
                       milestone_point(p.find("step")->as_int(), p.find("tokens")->as_int(), fpt));
        break;
      }
    }
  }
  rec.set("milestones", milestones);
  rec.set("run_dir", json::Value(v.run_dir));
  rec.set("curve", curve);
  return rec;
}

}  // namespace

SweepPlan plan_sweep(const SweepOptions& o) {
  if (o.method != "dus" && o.method != "block_expansion")
    throw Error("--method", "\"" + o.method + "\" is not one of dus|block_expansion");
  if (o.values.empty())
    throw Error(o.method == "dus" ? "--m" : "--every", "no variants",
                o.method == "dus" ? "pass the m values, e.g. --m 0,1,2"
                                  : "pass the every values, e.g. --every 1,2");
  if (o.jobs < 1) throw Error("--jobs", "must be at least 1");
  const Recipe recipe = load_recipe(o.recipe, o.sets);
  if (recipe.model.init_from.empty())
    throw Error(o.recipe + ": model.init_from",
                "a sweep needs the base model every variant starts from",
                "set model.init_from to a Hugging Face directory (e.g. a dus train run's final/)");

  SweepPlan plan;
  plan.dir = o.dir.empty() ? "runs/sweep-" + recipe.run.name : o.dir;
  plan.base = recipe.model.init_from;
  plan.seq_len = recipe.data.seq_len;
  plan.tokens_per_step = recipe.train.global_batch * recipe.data.seq_len;
  plan.budget_tokens =
      o.budget_tokens > 0 ? o.budget_tokens : recipe.train.steps * plan.tokens_per_step;
  if (plan.budget_tokens % plan.tokens_per_step != 0) {
    const int64_t lo = plan.budget_tokens / plan.tokens_per_step * plan.tokens_per_step;
    throw Error("--budget-tokens",
                with_commas(plan.budget_tokens) + " is not a whole number of steps of " +
                    with_commas(plan.tokens_per_step) + " tokens (train.global_batch_tokens)",
                "every run trains whole steps on the same tokens; use " +
                    with_commas(lo > 0 ? lo : plan.tokens_per_step) + " or " +
                    with_commas(lo + plan.tokens_per_step));
  }
  plan.steps = plan.budget_tokens / plan.tokens_per_step;
  {
    json::Value id(json::Object{});
    id.set("recipe_sha256", json::Value(recipe.sha256));
    id.set("budget_tokens", json::Value(plan.budget_tokens));
    json::Array scratch;
    for (const auto& s : o.scratch_sets) scratch.push_back(json::Value(s));
    id.set("scratch_sets", json::Value(std::move(scratch)));
    plan.identity = sha256_hex(json::dump(id));
  }

  const ModelConfig base = ModelConfig::load(plan.base);
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  auto make = [&](std::string name, std::string kind, std::string method) {
    SweepVariant v;
    v.name = std::move(name);
    v.kind = std::move(kind);
    v.method = std::move(method);
    v.run_dir = plan.dir + "/" + v.name;
    v.overrides = o.sets;
    v.overrides.push_back("train.steps=" + std::to_string(plan.steps));
    v.overrides.push_back("run.name=" + v.name);
    v.overrides.push_back("run.dir=" + v.run_dir);
    if (o.jobs > 1)
      v.overrides.push_back("run.threads=" + std::to_string(std::max(1, cores / o.jobs)));
    return v;
  };

  std::vector<SweepVariant> scaled, scratch;
  for (int64_t value : o.values) {
    PlanRequest request;
    request.method = o.method;
    request.allow_shallower = recipe.model.scaling && recipe.model.scaling->allow_shallower;
    if (o.method == "dus")
      request.m = value;
    else
      request.every = value;
    const std::string where =
        o.method == "dus" ? fmt::format("--m {}", value) : fmt::format("--every {}", value);
    const LayerPlan layer_plan = make_plan(request, base.num_hidden_layers, where);

    SweepVariant v = make(o.method == "dus" ? "dus-m" + std::to_string(value)
                                            : "blockexp-every" + std::to_string(value),
                          "scaled", o.method);
    if (o.method == "dus")
      v.m = value;
    else
      v.every = value;
    v.overrides.push_back("scaling.method=" + o.method);
    v.overrides.push_back(o.method == "dus" ? "scaling.m=" + std::to_string(value)
                                            : "scaling.m=null");
    v.overrides.push_back("scaling.every=" + std::to_string(o.method == "dus" ? 0 : value));
    v.config = scaled_config(base, layer_plan);
    scaled.push_back(v);

    if (o.baseline_scratch) {
      SweepVariant s = make("baseline-scratch-" + tag_of(v), "scratch", "none");
      s.m = v.m;
      s.every = v.every;
      s.config = v.config;
      s.overrides.push_back("model.init_from=null");
      s.overrides.push_back("model.config=" + scratch_config_path(plan.dir, tag_of(v)));
      s.overrides.push_back("scaling.method=none");
      for (const auto& x : o.scratch_sets) s.overrides.push_back(x);
      scratch.push_back(s);
    }
  }
  if (o.baseline_base) {
    SweepVariant b = make("baseline-base", "base", "none");
    b.config = base;
    b.overrides.push_back("scaling.method=none");
    plan.variants.push_back(b);
  }
  plan.variants.insert(plan.variants.end(), scaled.begin(), scaled.end());
  plan.variants.insert(plan.variants.end(), scratch.begin(), scratch.end());

  // Every run's recipe must load before any work. A scratch baseline's config.json is written
  // by run_sweep; here it is checked with the base's (same keys, another depth).
  for (const auto& v : plan.variants) {
    std::vector<std::string> sets = v.overrides;
    if (v.kind == "scratch")
      std::replace(sets.begin(), sets.end(),
                   std::string("model.config=" + scratch_config_path(plan.dir, tag_of(v))),
                   std::string("model.config=" + plan.base + "/config.json"));
    load_recipe(o.recipe, sets);
  }
  return plan;
}

json::Value collect_sweep(const SweepPlan& plan) {
  // base_loss: every run from the base measured it on the same held-out sequences.
  std::optional<double> base_loss;
  for (const auto& v : plan.variants) {
    if (v.kind == "scratch" || run_state(v.run_dir) != RunState::kFinished) continue;
    base_loss = find_num(json::parse_file(v.run_dir + "/" + kRecoveryFile), "base_loss");
    if (base_loss) break;
  }
  json::Array rows;
  bool complete = true;
  std::optional<double> base_flops;
  for (const auto& v : plan.variants) {
    if (run_state(v.run_dir) != RunState::kFinished) {
      complete = false;
      continue;
    }
    rows.push_back(variant_record(v, plan.seq_len, base_loss));
    if (v.kind == "base") base_flops = rows.back().find("flops")->as_double();
  }
  // Equal FLOPs: the base baseline spends the fewest FLOPs on the budget; every other run's
  // eval loss at that spend (read off its curve) is the comparison at equal compute.
  for (auto& row : rows) {
    std::optional<double> at;
    if (base_flops) at = loss_at_flops(*row.find("curve"), *base_flops);
    row.set("eval_loss_at_base_flops", opt_num(at));
  }
  json::Value out(json::Object{});
  out.set("base", json::Value(plan.base));
  out.set("base_loss", opt_num(base_loss));
  out.set("budget_tokens", json::Value(plan.budget_tokens));
  out.set("tokens_per_step", json::Value(plan.tokens_per_step));
  out.set("steps", json::Value(plan.steps));
  out.set("seq_len", json::Value(plan.seq_len));
  out.set("base_flops", opt_num(base_flops));
  out.set("flops_note",
          json::Value(
              "training FLOPs of each run on the budget (tokens x training_flops_per_token of its "
              "model); the base model's own pretraining, which the scaled runs and baseline-base "
              "build on, is not counted"));
  out.set("complete", json::Value(complete));
  out.set("variants", json::Value(std::move(rows)));
  return out;
}

std::string sweep_table(const json::Value& sweep) {
  // `digits` decimals, or "-" where the value is absent.
  auto num_or_dash = [](const json::Value* v, int digits) {
    return v && v->is_number() ? fmt::format("{:.{}f}", v->as_double(), digits) : std::string("-");
  };
  const json::Value* base_loss_v = sweep.find("base_loss");
  const double base_loss = base_loss_v && base_loss_v->is_number() ? base_loss_v->as_double() : NAN;
  std::string out;
  auto line = std::back_inserter(out);
  fmt::format_to(line, "sweep            base {}, base_loss {}\n", sweep.find("base")->as_string(),
                 num_or_dash(base_loss_v, 4));
  fmt::format_to(line, "budget           {} tokens per run ({} steps x {} tokens)\n",
                 with_commas(sweep.find("budget_tokens")->as_int()), sweep.find("steps")->as_int(),
                 with_commas(sweep.find("tokens_per_step")->as_int()));
  fmt::format_to(line, "{:<24} {:>6} {:>12} {:>9} {:>9} {:>8} {:>10} {:>22} {:>10} {:>9}\n",
                 "variant", "layers", "parameters", "loss_0", "final", "vs base", "@base FLOP",
                 "below base (tok/FLOP)", "FLOPs", "tok/s");
  for (const auto& row : sweep.find("variants")->as_array()) {
    const json::Value* final_loss = row.find("final_eval_loss");
    std::string delta = "-";
    if (std::isfinite(base_loss) && final_loss && final_loss->is_number())
      delta = fmt::format("{:+.4f}", final_loss->as_double() - base_loss);
    std::string below = "-";
    if (const json::Value* m = row.find("milestones")->find("beat_base"); m && m->is_object())
      below = with_commas(m->find("tokens")->as_int()) + " / " +
              fmt::format("{:.2e}", m->find("flops")->as_double());
    fmt::format_to(line, "{:<24} {:6} {:>12} {:>9} {:>9} {:>8} {:>10} {:>22} {:>10} {:>9}\n",
                   row.find("name")->as_string(), row.find("layers")->as_int(),
                   with_commas(row.find("parameters")->as_int()),
                   num_or_dash(row.find("scaled_loss_0"), 4), num_or_dash(final_loss, 4), delta,
                   num_or_dash(row.find("eval_loss_at_base_flops"), 4), below,
                   fmt::format("{:.3e}", row.find("flops")->as_double()),
                   num_or_dash(row.find("tokens_per_s"), 0));
  }
  out +=
      "columns          loss_0: eval loss right after scaling; final: at the end of the budget; vs "
      "base: final -\n"
      "                 base_loss; @base FLOP: eval loss when the run had spent baseline-base's "
      "total training\n"
      "                 FLOPs (equal compute); below base: first evaluation with eval_loss < "
      "base_loss;\n"
      "                 FLOPs: training FLOPs of the run (the base's pretraining not counted); "
      "tok/s: wall clock\n";
  // The question a sweep answers, as numbers: each variant against the base continued for the
  // same tokens (both at the end of their schedules) and for the same FLOPs (the variant's
  // curve read where it had spent what the base continued spent in all).
  const json::Value* continued = nullptr;
  for (const auto& row : sweep.find("variants")->as_array())
    if (row.find("kind")->as_string() == "base") continued = row.find("final_eval_loss");
  if (continued && continued->is_number()) {
    const double c = continued->as_double();
    fmt::format_to(line,
                   "vs continued     variant - baseline-base (the base continued: final {:.4f}); "
                   "negative: the variant is better\n",
                   c);
    for (const auto& row : sweep.find("variants")->as_array()) {
      if (row.find("kind")->as_string() == "base") continue;
      auto minus_c = [&](const json::Value* v) {
        return v && v->is_number() ? fmt::format("{:+.4f}", v->as_double() - c) : std::string("-");
      };
      fmt::format_to(line, "                 {:<24} equal tokens {:>8}   equal FLOPs {:>8}\n",
                     row.find("name")->as_string(), minus_c(row.find("final_eval_loss")),
                     minus_c(row.find("eval_loss_at_base_flops")));
    }
  }
  if (const json::Value* c = sweep.find("complete"); c && c->is_bool() && !c->as_bool())
    out += "note             the sweep is not complete: runs not yet finished are not shown\n";
  return out;
}

namespace {

void write_scratch_configs(const SweepPlan& plan) {
  for (const auto& v : plan.variants) {
    if (v.kind != "scratch") continue;
    json::Value c = v.config.to_json();
    c.set("dtype", json::Value("float32"));
    c.erase("torch_dtype");
    const std::string path = scratch_config_path(plan.dir, tag_of(v));
    const std::string text = json::dump(c, 2) + "\n";
    if (fs::exists(path) && read_file(path) == text) continue;
    fs::create_directories(fs::path(path).parent_path());
    write_file_atomic(path, text);
  }
}

// A rerun must be the same sweep: same recipe (after --set), budget and scratch overrides.
void check_or_write_identity(const SweepOptions& o, const SweepPlan& plan) {
  const std::string path = plan.dir + "/" + kPlanFile;
  if (fs::exists(path)) {
    const json::Value saved = json::parse_file(path);
    const json::Value* id = saved.find("identity");
    if (!id || !id->is_string() || id->as_string() != plan.identity)
      throw Error(path, "this sweep directory holds a sweep with another recipe, --set or budget",
                  "continue it with the same RECIPE, --set, --scratch-set and --budget-tokens, or "
                  "pass another --sweep-dir");
    return;
  }
  json::Value p(json::Object{});
  p.set("identity", json::Value(plan.identity));
  p.set("recipe", json::Value(o.recipe));
  json::Array sets;
  for (const auto& s : o.sets) sets.push_back(json::Value(s));
  p.set("sets", json::Value(std::move(sets)));
  p.set("base", json::Value(plan.base));
  p.set("budget_tokens", json::Value(plan.budget_tokens));
  p.set("tokens_per_step", json::Value(plan.tokens_per_step));
  fs::create_directories(plan.dir);
  write_file_atomic(path, json::dump(p, 2) + "\n");
}

void write_time(const SweepVariant& v, double seconds, int64_t tokens) {
  json::Value t(json::Object{});
  t.set("seconds", json::Value(seconds));
  t.set("tokens",
        json::Value(tokens));  // trained in the timed session (a resumed run: since its checkpoint)
  write_file_atomic(v.run_dir + "/" + kTimeFile, json::dump(t, 2) + "\n");
}

void write_sweep_json(const SweepPlan& plan) {
  write_file_atomic(plan.dir + "/" + kSweepFile, json::dump(collect_sweep(plan), 2) + "\n");
}

// Tokens a run has already trained (its newest checkpoint), so tokens/s counts this session only.
int64_t tokens_done(const SweepPlan& plan, const std::string& run_dir) {
  auto cks = list_checkpoints(run_dir);
  return cks.empty() ? 0 : checkpoint_step(cks.back()) * plan.tokens_per_step;
}

std::string label(const SweepPlan& plan, size_t i) {
  return fmt::format("sweep [{}/{}] {:<24}", i + 1, plan.variants.size(), plan.variants[i].name);
}

void print_done(const SweepPlan& plan, size_t i, double seconds, int64_t tokens) {
  const SweepVariant& v = plan.variants[i];
  const json::Value summary = json::parse_file(v.run_dir + "/" + kRecoveryFile);
  auto final_loss = find_num(summary, "final_eval_loss");
  auto base_loss = find_num(summary, "base_loss");
  const std::string base_text = base_loss ? fmt::format(" (base_loss {:.4f})", *base_loss) : "";
  fmt::print("{} done in {:.1f} s ({:.0f} tok/s): eval_loss {:.4f}{}\n", label(plan, i), seconds,
             seconds > 0 ? static_cast<double>(tokens) / seconds : 0.0,
             final_loss ? *final_loss : NAN, base_text);
  std::fflush(stdout);
}

// Prepares a run directory to be (re)started: a run killed before its first checkpoint
// starts over, so its metrics hold one start record.
bool prepare_run(const SweepPlan& plan, size_t i) {
  const SweepVariant& v = plan.variants[i];
  const RunState state = run_state(v.run_dir);
  if (state == RunState::kPartial) {
    fmt::print("{} resume from {}\n", label(plan, i),
               fs::path(list_checkpoints(v.run_dir).back()).filename().string());
    std::fflush(stdout);
    return true;
  }
  if (fs::exists(v.run_dir)) remove_tree(v.run_dir);
  fmt::print("{} start: {} layers, {} parameters, {} steps x {} tokens\n", label(plan, i),
             v.config.num_hidden_layers, with_commas(v.config.parameter_count()), plan.steps,
             with_commas(plan.tokens_per_step));
  std::fflush(stdout);
  return false;
}

int run_sequential(const SweepOptions& o, const SweepPlan& plan, const std::vector<size_t>& todo) {
  const char* stop_after_env =
      std::getenv("DUS_TEST_SWEEP_STOP_AFTER");  // test hook: die as kill -9 would
  const int64_t stop_after = stop_after_env ? std::atoll(stop_after_env) : 0;
  int64_t trained = 0;
  for (size_t i : todo) {
    const SweepVariant& v = plan.variants[i];
    const bool resume = prepare_run(plan, i);
    const int64_t before = tokens_done(plan, v.run_dir);
    const auto t0 = Clock::now();
    TrainJob job{resume ? load_recipe(v.run_dir + "/recipe.yaml", {"run.dir=" + v.run_dir})
                        : load_recipe(o.recipe, v.overrides),
                 resume};
    const int rc = run_training(job);
    const double seconds = seconds_since(t0);
    if (rc != 0) throw Error(v.run_dir, fmt::format("the run failed (exit code {})", rc));
    if (run_state(v.run_dir) != RunState::kFinished) {
      // SIGTERM / SIGINT: the run checkpointed and returned; the sweep stops with it.
      fmt::print("sweep stopped during {}; run the same dus sweep command again to continue\n",
                 v.name);
      return 0;
    }
    write_time(v, seconds, plan.budget_tokens - before);
    write_sweep_json(plan);
    print_done(plan, i, seconds, plan.budget_tokens - before);
    if (stop_after > 0 && ++trained == stop_after) {
      fmt::print("test hook: DUS_TEST_SWEEP_STOP_AFTER={}, killing the sweep\n", stop_after);
      std::fflush(stdout);
      ::kill(::getpid(), SIGKILL);
    }
  }
  return 0;
}

ChildSpec run_child(const SweepOptions& o, const SweepVariant& v, bool resume) {
  ChildSpec spec;
  spec.program = fs::read_symlink("/proc/self/exe").string();
  spec.argv = {spec.program};
  if (resume) {
    spec.argv.insert(spec.argv.end(), {"resume", v.run_dir});
  } else {
    spec.argv.insert(spec.argv.end(), {"train", o.recipe});
    for (const auto& s : v.overrides) spec.argv.insert(spec.argv.end(), {"--set", s});
  }
  fs::create_directories(v.run_dir);
  spec.output = ChildOutput::kLogFile;
  spec.log_file = v.run_dir + "/train.log";
  return spec;
}

int run_parallel(const SweepOptions& o, const SweepPlan& plan, const std::vector<size_t>& todo) {
  struct Run {
    size_t index;
    Clock::time_point start;
    int64_t tokens_before;
  };
  std::vector<Run> runs;  // by supervisor child id
  size_t next = 0;
  bool stopping = false;
  std::string failure;
  // SIGTERM / SIGINT while child processes train: forwarded to them, so each checkpoints and
  // stops; the sweep then says how to continue.
  Supervisor sup;
  while ((next < todo.size() && !stopping && failure.empty()) || sup.busy()) {
    while (!stopping && failure.empty() && sup.running() < static_cast<size_t>(o.jobs) &&
           next < todo.size()) {
      const size_t i = todo[next++];
      const bool resume = prepare_run(plan, i);
      const int64_t before = tokens_done(plan, plan.variants[i].run_dir);
      const size_t id = sup.spawn(run_child(o, plan.variants[i], resume));
      runs.push_back({i, Clock::now(), before});
      const int threads =
          std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / o.jobs);
      fmt::print("{}   (child process {}, {} thread{}, log {}/train.log)\n", label(plan, i),
                 sup.pid(id), threads, threads == 1 ? "" : "s", plan.variants[i].run_dir);
      std::fflush(stdout);
    }
    const SupervisorEvents ev = sup.wait(100);
    if (ev.signal != 0 && !stopping) {
      stopping = true;
      sup.signal_all(SIGTERM);  // each run checkpoints and stops
    }
    for (const ChildExit& e : ev.exited) {
      const Run& c = runs[e.id];
      const SweepVariant& v = plan.variants[c.index];
      const double seconds = seconds_since(c.start);
      const bool ok = !e.lost && e.status == 0;
      if (ok && run_state(v.run_dir) == RunState::kFinished) {
        write_time(v, seconds, plan.budget_tokens - c.tokens_before);
        write_sweep_json(plan);
        print_done(plan, c.index, seconds, plan.budget_tokens - c.tokens_before);
      } else if (ok) {
        fmt::print("{} stopped (checkpointed)\n", label(plan, c.index));
      } else {
        const std::string how = describe_exit(e);
        fmt::print("{} FAILED ({}); log {}/train.log\n", label(plan, c.index), how, v.run_dir);
        if (failure.empty()) failure = v.name + " (" + how + "), log " + v.run_dir + "/train.log";
      }
      std::fflush(stdout);
    }
  }
  if (!failure.empty())
    throw Error(plan.dir, "a run of the sweep failed: " + failure,
                "fix what its log says, then run the same dus sweep command again (finished runs "
                "are kept)");
  if (stopping) {
    fmt::print("sweep stopped by a signal; run the same dus sweep command again to continue\n");
    return 0;
  }
  return 0;
}

}  // namespace

SweepOutcome run_sweep(const SweepOptions& o) {
  const SweepPlan plan = plan_sweep(o);
  check_or_write_identity(o, plan);
  write_scratch_configs(plan);
  fmt::print("dus sweep        {} -> {}\n", o.recipe, plan.dir);
  fmt::print("base             {}\n", plan.base);
  fmt::print("budget           {} tokens per run = {} steps x {} tokens; {} runs, {} at a time\n",
             with_commas(plan.budget_tokens), plan.steps, with_commas(plan.tokens_per_step),
             plan.variants.size(), o.jobs);
  std::vector<size_t> todo;
  for (size_t i = 0; i < plan.variants.size(); ++i) {
    if (run_state(plan.variants[i].run_dir) == RunState::kFinished) {
      fmt::print("{} skip (finished)\n", label(plan, i));
      continue;
    }
    todo.push_back(i);
  }
  std::fflush(stdout);
  const int rc = o.jobs == 1 ? run_sequential(o, plan, todo) : run_parallel(o, plan, todo);
  write_sweep_json(plan);
  SweepOutcome outcome;
  outcome.exit_code = rc;
  outcome.complete = json::parse_file(plan.dir + "/" + kSweepFile).find("complete")->as_bool();
  outcome.dir = plan.dir;
  return outcome;
}

}  // namespace dus
