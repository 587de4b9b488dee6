// state.json as one checked struct: a round trip keeps every field, and every missing or
// mistyped key is an error naming that key and the file.
#include <catch2/catch.hpp>

#include "core/error.h"
#include "core/json.h"
#include "train/train_state.h"

namespace {

dus::TrainState sample() {
  dus::TrainState s;
  s.step = 12;
  s.optimizer_steps = 11;
  s.tokens = 12 * 512;
  s.loader = dus::json::parse(R"({"cursor": 3})", "loader");
  s.nonfinite_total = 1;
  s.nonfinite_in_row = 0;
  s.last_eval_step = 8;
  s.recovery = dus::json::parse(R"({"history": []})", "recovery");
  s.lr = 2.5e-4;
  s.world_size = 2;
  s.strategy = "zero2";
  s.recipe_sha256 = "ab12";
  s.precision = "bf16";
  return s;
}

}  // namespace

TEST_CASE("train state: round trip through state.json", "[unit]") {
  const dus::TrainState s = sample();
  const dus::TrainState t =
      dus::TrainState::from_json(dus::json::parse(dus::json::dump(s.to_json()), "s"), "s");
  CHECK(dus::json::dump(t.to_json()) == dus::json::dump(s.to_json()));
  CHECK(t.step == 12);
  CHECK(t.optimizer_steps == 11);
  CHECK(t.strategy == "zero2");
  CHECK(t.zero1.is_null());
}

TEST_CASE("train state: each missing or mistyped key is an error naming it", "[unit]") {
  const dus::json::Value good = sample().to_json();
  for (const char* key : {"step", "optimizer_steps", "tokens", "loader", "nonfinite_total",
                          "nonfinite_in_row", "last_eval_step", "recovery", "lr", "world_size",
                          "strategy", "recipe_sha256", "precision"}) {
    INFO(key);
    dus::json::Value missing = good;
    missing.erase(key);
    try {
      dus::TrainState::from_json(missing, "ck/state.json");
      FAIL("accepted a state.json without " << key);
    } catch (const dus::Error& e) {
      CHECK_THAT(e.what(), Catch::Contains(key));
      CHECK_THAT(e.what(), Catch::Contains("ck/state.json"));
    }
    dus::json::Value wrong = good;
    wrong.set(key, dus::json::Value(dus::json::Array{}));  // an array is no key's type
    try {
      dus::TrainState::from_json(wrong, "ck/state.json");
      FAIL("accepted an array for " << key);
    } catch (const dus::Error& e) {
      CHECK_THAT(e.what(), Catch::Contains(key));
    }
  }
  dus::json::Value negative = good;
  negative.set("tokens", dus::json::Value(int64_t{-5}));
  CHECK_THROWS_WITH(dus::TrainState::from_json(negative, "s"), Catch::Contains("tokens"));
  dus::json::Value ahead = good;
  ahead.set("optimizer_steps", dus::json::Value(int64_t{13}));
  CHECK_THROWS_WITH(dus::TrainState::from_json(ahead, "s"), Catch::Contains("optimizer_steps"));
  dus::json::Value strategy = good;
  strategy.set("strategy", dus::json::Value("fsdp"));
  CHECK_THROWS_WITH(dus::TrainState::from_json(strategy, "s"), Catch::Contains("fsdp"));
  CHECK_THROWS_AS(dus::TrainState::from_json(dus::json::Value(int64_t{3}), "s"), dus::Error);
}
