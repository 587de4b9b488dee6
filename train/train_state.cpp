#include "train/train_state.h"

#include <cmath>

#include <fmt/format.h>

#include "core/error.h"

namespace dus {

namespace {

const json::Value& require(const json::Value& v, const char* key, const std::string& where) {
  const json::Value* x = v.find(key);
  if (!x) throw Error(where, std::string("missing key \"") + key + "\"");
  return *x;
}

int64_t require_int(const json::Value& v, const char* key, int64_t lo, const std::string& where) {
  const json::Value& x = require(v, key, where);
  const std::string at = where + ": " + key;
  if (!x.is_int()) throw Error(at, std::string("expected an integer, found ") + x.type_name());
  const int64_t i = x.as_int(at);
  if (i < lo) throw Error(at, fmt::format("{} is below {}", i, lo));
  return i;
}

std::string require_string(const json::Value& v, const char* key, const std::string& where) {
  const json::Value& x = require(v, key, where);
  const std::string at = where + ": " + key;
  if (!x.is_string()) throw Error(at, std::string("expected a string, found ") + x.type_name());
  return x.as_string(at);
}

const json::Value& require_object(const json::Value& v, const char* key, const std::string& where) {
  const json::Value& x = require(v, key, where);
  if (!x.is_object())
    throw Error(where + ": " + key, std::string("expected an object, found ") + x.type_name());
  return x;
}

}  // namespace

json::Value TrainState::to_json() const {
  json::Value s(json::Object{});
  s.set("step", json::Value(step));
  s.set("optimizer_steps", json::Value(optimizer_steps));
  s.set("tokens", json::Value(tokens));
  s.set("loader", loader);
  s.set("nonfinite_total", json::Value(nonfinite_total));
  s.set("nonfinite_in_row", json::Value(nonfinite_in_row));
  s.set("last_eval_step", json::Value(last_eval_step));
  s.set("recovery", recovery);
  s.set("lr", json::Value(lr));
  s.set("world_size", json::Value(world_size));
  s.set("strategy", json::Value(strategy));
  s.set("recipe_sha256", json::Value(recipe_sha256));
  s.set("precision", json::Value(precision));
  if (!zero1.is_null()) s.set("zero1", zero1);
  s.set("loss_spikes_total", json::Value(loss_spikes_total));
  json::Array window;
  for (double l : recent_losses) window.push_back(json::Value(l));
  s.set("recent_losses", json::Value(std::move(window)));
  return s;
}

TrainState TrainState::from_json(const json::Value& v, const std::string& where) {
  if (!v.is_object()) throw Error(where, std::string("expected an object, found ") + v.type_name());
  TrainState s;
  s.step = require_int(v, "step", 0, where);
  s.optimizer_steps = require_int(v, "optimizer_steps", 0, where);
  s.tokens = require_int(v, "tokens", 0, where);
  s.loader = require_object(v, "loader", where);
  s.nonfinite_total = require_int(v, "nonfinite_total", 0, where);
  s.nonfinite_in_row = require_int(v, "nonfinite_in_row", 0, where);
  s.last_eval_step = require_int(v, "last_eval_step", -1, where);
  s.recovery = require_object(v, "recovery", where);
  const json::Value& lr = require(v, "lr", where);
  if (!lr.is_number() && !lr.is_null())
    throw Error(where + ": lr", std::string("expected a number, found ") + lr.type_name());
  s.lr = lr.is_null() ? 0.0 : lr.as_double(where + ": lr");
  s.world_size = require_int(v, "world_size", 1, where);
  s.strategy = require_string(v, "strategy", where);
  if (s.strategy != "ddp" && s.strategy != "zero1" && s.strategy != "zero2")
    throw Error(where + ": strategy", "\"" + s.strategy + "\" is not one of ddp|zero1|zero2");
  s.recipe_sha256 = require_string(v, "recipe_sha256", where);
  s.precision = require_string(v, "precision", where);
  if (const json::Value* z = v.find("zero1")) {
    if (!z->is_object())
      throw Error(where + ": zero1", std::string("expected an object, found ") + z->type_name());
    s.zero1 = *z;
  }
  // The spike guard's state: absent in checkpoints of builds without the guard.
  if (v.find("loss_spikes_total"))
    s.loss_spikes_total = require_int(v, "loss_spikes_total", 0, where);
  if (const json::Value* w = v.find("recent_losses")) {
    const std::string at = where + ": recent_losses";
    if (!w->is_array()) throw Error(at, std::string("expected a list, found ") + w->type_name());
    for (const auto& x : w->as_array()) {
      if (!x.is_number() || !std::isfinite(x.as_double(at)))
        throw Error(at, "expected finite numbers, found " + json::dump(x));
      s.recent_losses.push_back(x.as_double(at));
    }
  }
  if (s.optimizer_steps > s.step)
    throw Error(where + ": optimizer_steps",
                fmt::format("{} exceeds step {}", s.optimizer_steps, s.step));
  if (s.last_eval_step > s.step)
    throw Error(where + ": last_eval_step",
                fmt::format("{} exceeds step {}", s.last_eval_step, s.step));
  return s;
}

}  // namespace dus
