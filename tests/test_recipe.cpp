// Recipes: every shipped recipe loads; extends and --set; every kind of bad input is an error
// naming the key; hostile YAML is rejected, not crashed on.
#include <catch2/catch.hpp>

#include <filesystem>

#include "core/error.h"
#include "test_util.h"
#include "train/lr_schedule.h"
#include "train/recipe.h"

using dus::testing::TempDir;
using dus::testing::write_text;

namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const dus::Error& e) {
    return e.what();
  }
  return "";
}

const char* kMinimal = R"(
run: {name: t}
model: {config: model.json}
data: {train: [d1, {path: d2, weight: 3}], seq_len: 16}
train: {steps: 10, global_batch_tokens: 128, micro_batch: 4, lr: 1.0e-3}
)";

}  // namespace

TEST_CASE("every recipe in recipes/ loads and validates", "[unit]") {
  int count = 0;
  for (const auto& e :
       std::filesystem::recursive_directory_iterator(std::string(DUS_SOURCE_DIR) + "/recipes")) {
    if (e.path().extension() != ".yaml") continue;
    INFO(e.path().string());
    dus::Recipe r = dus::load_recipe(e.path().string());
    CHECK(r.train.steps > 0);
    CHECK(!r.sha256.empty());
    // The resolved recipe written into runs reads back to the same tree.
    CHECK(dus::json::dump(dus::parse_yaml(r.to_yaml(), "resolved")) == dus::json::dump(r.resolved));
    ++count;
  }
  CHECK(count >= 3);
}

TEST_CASE("a recipe without lr_min decays to zero", "[unit]") {
  TempDir dir;
  write_text(dir.file("r.yaml"), kMinimal);
  auto r = dus::load_recipe(dir.file("r.yaml"));
  CHECK(r.train.schedule.lr_min == 0.0);
  CHECK(r.train.schedule.kind == "cosine");
  CHECK(dus::lr_at(r.train.schedule, r.train.steps) == Approx(0.0).margin(1e-15));
  // Schedule options built in code (benchmarks, tests) agree with the recipe.
  CHECK(dus::ScheduleOptions().lr_min == r.train.schedule.lr_min);
  CHECK(dus::ScheduleOptions().decay_fraction == r.train.schedule.decay_fraction);
  CHECK(dus::ScheduleOptions().warmup_steps == r.train.schedule.warmup_steps);
}

TEST_CASE("a minimal recipe fills the typed options", "[unit]") {
  TempDir dir;
  write_text(dir.file("r.yaml"), kMinimal);
  auto r = dus::load_recipe(dir.file("r.yaml"));
  CHECK(r.run.dir == "runs/t");
  CHECK(r.train.global_batch == 8);  // 128 tokens / 16
  CHECK(r.data.train.size() == 2);
  CHECK(r.data.train[1].weight == 3.0);
  CHECK(r.train.schedule.lr == 1e-3);
  CHECK(r.train.schedule.total_steps == 10);
  CHECK(!r.model.scaling);
}

TEST_CASE("extends merges deeply and --set overrides", "[unit]") {
  TempDir dir;
  write_text(dir.file("base.yaml"), kMinimal);
  write_text(dir.file("child.yaml"),
             "extends: base.yaml\ntrain: {lr: 5.0e-4}\nrun: {name: child}\n");
  auto r =
      dus::load_recipe(dir.file("child.yaml"), {"train.steps=20", "data.seq_len=32", "run.seed=9"});
  CHECK(r.train.schedule.lr == 5e-4);  // child wins
  CHECK(r.train.micro_batch == 4);     // inherited
  CHECK(r.train.steps == 20);          // --set wins
  CHECK(r.train.global_batch == 4);    // 128 / 32
  CHECK(r.run.seed == 9);
  CHECK(r.run.name == "child");
  // The hash ignores where the run lives, not what it does.
  auto moved = dus::load_recipe(dir.file("child.yaml"),
                                {"train.steps=20", "data.seq_len=32", "run.seed=9", "run.dir=x"});
  CHECK(moved.sha256 == r.sha256);
  auto other =
      dus::load_recipe(dir.file("child.yaml"), {"train.steps=21", "data.seq_len=32", "run.seed=9"});
  CHECK(other.sha256 != r.sha256);
}

TEST_CASE("bad recipes are errors that name the key", "[unit]") {
  TempDir dir;
  write_text(dir.file("r.yaml"), kMinimal);
  auto with = [&](std::vector<std::string> sets) {
    return error_of([&] { dus::load_recipe(dir.file("r.yaml"), sets); });
  };
  CHECK_THAT(with({"train.lrr=1"}), Catch::Contains("train.lrr: unknown key") &&
                                        Catch::Contains("did you mean train.lr?"));
  CHECK_THAT(with({"trian.lr=1"}),
             Catch::Contains("unknown section") && Catch::Contains("did you mean train?"));
  CHECK_THAT(with({"train.lr=abc"}), Catch::Contains("train.lr: expected a number, got string"));
  CHECK_THAT(with({"train.steps=1.5"}), Catch::Contains("train.steps: expected an integer"));
  CHECK_THAT(with({"train.steps=0"}), Catch::Contains("train.steps: 0 is out of range"));
  CHECK_THAT(with({"train.lr_schedule=cosin"}),
             Catch::Contains("not one of cosine|linear|constant|wsd") &&
                 Catch::Contains("did you mean \"cosine\"?"));
  CHECK_THAT(with({"train.micro_batch=3"}), Catch::Contains("not a multiple of micro_batch 3"));
  CHECK_THAT(with({"model.init_from=x"}), Catch::Contains("exclusive"));
  CHECK_THAT(with({"resume=runs/x", "model.config=null", "model.init_from=y"}),
             Catch::Contains("mutually exclusive"));
  CHECK_THAT(with({"scaling.method=dus"}), Catch::Contains("scaling applies to model.init_from"));
  CHECK_THAT(with({"data.train=[]"}), Catch::Contains("no training data"));
  CHECK_THAT(with({"train.lr_min=1"}), Catch::Contains("lr_min must be in [0, lr]"));
  CHECK_THAT(with({"noequals"}), Catch::Contains("expected section.key=value"));
}

TEST_CASE("recipe text: UTF-8 by data/unicode_text's rule, and YAML's printable set", "[unit]") {
  auto bad_at = [](const std::string& text) {
    return error_of([&] { dus::parse_yaml(text, "u.yaml"); });
  };
  const std::string at6 = "invalid UTF-8 or a control character at byte 6";
  CHECK_THAT(bad_at("a: 'xy\xc0\xaf'\n"), Catch::Contains(at6));          // overlong '/'
  CHECK_THAT(bad_at("a: 'xy\xe0\x80\xaf'\n"), Catch::Contains(at6));      // overlong, 3 bytes
  CHECK_THAT(bad_at("a: 'xy\xf4\x90\x80\x80'\n"), Catch::Contains(at6));  // above U+10FFFF
  CHECK_THAT(bad_at("a: 'xy\xf5\x80\x80\x80'\n"), Catch::Contains(at6));  // lead byte past F4
  CHECK_THAT(bad_at("a: 'xy\x80'\n"), Catch::Contains(at6));              // lone continuation
  CHECK_THAT(bad_at("a: 'xy\xe2\x82'\n"), Catch::Contains(at6));          // cut short by the quote
  CHECK_THAT(bad_at("a: 'xy\xe2\x82"), Catch::Contains(at6));             // cut short by the end
  CHECK_THAT(bad_at("a: 'xy\x7f'\n"), Catch::Contains(at6));              // DEL
  CHECK_THAT(bad_at("a: 'xy\x1b'\n"), Catch::Contains(at6));              // ESC
  // Accepted: every sequence length, the largest code point, tab / CR / LF.
  const std::string ok = "a: 'y\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf'\r\nb:\t1\n";
  CHECK(dus::parse_yaml(ok, "u.yaml").find("a")->as_string() ==
        "y\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf");
  // A control character written as an escape is a value, not a byte of the file: accepted.
  CHECK(dus::parse_yaml("a: \"\\x01\"\n", "u.yaml").find("a")->as_string() == "\x01");
}

TEST_CASE("hostile YAML is an error, not a crash", "[unit]") {
  TempDir dir;
  auto err = [&](const std::string& text) {
    write_text(dir.file("h.yaml"), text);
    return error_of([&] { dus::load_recipe(dir.file("h.yaml")); });
  };
  CHECK_THAT(err(std::string(5000, '[')), Catch::Contains("h.yaml"));
  CHECK_THAT(err("a: [1, 2\nb: }"), Catch::Contains("invalid YAML") && Catch::Contains("h.yaml:"));
  // Billion laughs: each level doubles the nodes an alias expands to.
  std::string bomb = "a0: &a0 [x, x]\n";
  for (int i = 1; i < 30; ++i)
    bomb += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [*a" + std::to_string(i - 1) +
            ", *a" + std::to_string(i - 1) + "]\n";
  CHECK_THAT(err(bomb), Catch::Contains("alias bomb"));
  CHECK_THAT(err("- just\n- a list\n"), Catch::Contains("must be a mapping"));
  CHECK_THAT(err("extends: h.yaml\n"), Catch::Contains("cycle"));
  CHECK_THAT(err("run: {name: a}\nrun: {name: b}\n"), Catch::Contains("duplicate key"));
  // Bytes that are not UTF-8 text: invalid sequences, and NULs, which made yaml-cpp decode the
  // file as UTF-32 (the written-back recipe then differed from the one read).
  CHECK_THAT(err("run:\n  name: a\xff\xfe\n"), Catch::Contains("h.yaml") &&
                                                   Catch::Contains("invalid UTF-8") &&
                                                   Catch::Contains("byte 14"));
  CHECK_THAT(err(std::string("\x06\0\0\0nu:\n", 8)), Catch::Contains("byte 0"));
  CHECK_THAT(err("run: {name: \xed\xa0\x80}\n"), Catch::Contains("invalid UTF-8"));  // a surrogate
  // yaml-cpp decodes the escape \N (U+0085) to the one raw byte 0x85: not UTF-8, and written
  // back as U+FFFD.
  CHECK_THAT(err("run: {name: \"a\\Nb\"}\n"),
             Catch::Contains("h.yaml:1") && Catch::Contains("not valid UTF-8"));
  CHECK_THAT(err("run: {\"\\N\": 1}\n"), Catch::Contains("key that is not valid UTF-8"));
  CHECK(dus::parse_yaml("a: \"\\xff\"\n", "t").find("a")->as_string() ==
        "\xc3\xbf");  // \x escapes are fine
  // A float literal beyond double read as infinity, written back as the string "null".
  CHECK_THAT(err("train:\n  lr_min: 5e505\n"),
             Catch::Contains("h.yaml:2") && Catch::Contains("5e505 is out of range"));
  // A huge scalar and a huge file are refused before they are converted.
  CHECK_THAT(err("run: {name: " + std::string(70000, 'x') + "}\n"),
             Catch::Contains("h.yaml:1") && Catch::Contains("scalar of 70000 bytes"));
  CHECK_THAT(err("# " + std::string(2 << 20, 'x') + "\n"),
             Catch::Contains("a recipe may have at most"));
  // A small bomb (9 x 9 x 9 x 9 x 9 = 59049 leaves) is refused at the node bound, not expanded.
  std::string laughs = "a: &a [x, x, x, x, x, x, x, x, x]\n";
  for (char c = 'b'; c <= 'e'; ++c) {
    const std::string prev(1, static_cast<char>(c - 1));
    laughs += std::string(1, c) + ": &" + c + " [";
    for (int i = 0; i < 9; ++i) laughs += (i ? ", *" : "*") + prev;
    laughs += "]\n";
  }
  CHECK_THAT(err(laughs), Catch::Contains("alias bomb"));
  // Few nodes, many bytes: 20 aliases of one 20,000-byte scalar (400 KB of values from a 20 KB
  // file; 10,000 of them would be 200 MB) are refused at the bound on the written-out size, which
  // keeps what to_yaml writes within what a recipe may be; two aliases are fine.
  std::string wide = "a: &a " + std::string(20000, 'x') + "\nb: [";
  for (int i = 0; i < 20; ++i) wide += (i ? ", *a" : "*a");
  CHECK_THAT(err(wide + "]\n"), Catch::Contains("bytes when written out"));
  CHECK_NOTHROW(dus::parse_yaml(wide.substr(0, wide.find("\nb:")) + "\nb: [*a, *a]\n", "t"));
}

TEST_CASE("strings that YAML would not read back as themselves are quoted", "[unit]") {
  // to_yaml tested each string by parsing it as YAML; "[" or "a: [" made that parse throw
  // YAML::ParserException out of to_yaml (a crash writing the run's recipe.yaml).
  for (const char* s :
       {"[",        "a: [",      "{x",    "- item", "a: b",   "*alias", "&anchor x", "'",    "\"",
        "#comment", "tab\there", " lead", "trail ", "1e5",    "true",   "~",         "null", "%TAG",
        "---",      "...",       "? key", "x\x06y", "\r\r\r", "a\r",    "\n",        "x\ty"}) {
    // As a value ("\r\r\r" as a plain map value read back as "\r\r") and as a key.
    dus::json::Value tree(dus::json::Object{{"k", dus::json::Value(s)}, {s, dus::json::Value(1)}});
    std::string yaml;
    REQUIRE_NOTHROW(yaml = dus::to_yaml(tree));
    INFO(s << " -> " << yaml);
    const dus::json::Value back = dus::parse_yaml(yaml, "back");
    REQUIRE(back.find("k") != nullptr);
    CHECK(back.find("k")->is_string());
    CHECK(back.find("k")->as_string() == s);
    CHECK(back.find(s) != nullptr);
  }
}

TEST_CASE("words and paths are written plain unless YAML reads them as null or bool", "[unit]") {
  // to_yaml decides these without asking yaml-cpp (a letter or '_' first, then [A-Za-z0-9_./-]):
  // the decision must be the one a YAML round trip gives.
  for (const char* s : {"cosine", "bf16", "data/kjv-1.bin", "_x", "a.b", "nan", "inf", "Yes", "e5",
                        "x-", "Infinity"}) {
    const dus::json::Value tree(dus::json::Object{{"k", dus::json::Value(s)}});
    CHECK(dus::to_yaml(tree) == std::string("k: ") + s + "\n");
    CHECK(dus::parse_yaml(dus::to_yaml(tree), "back").find("k")->as_string() == s);
  }
  for (const char* s :
       {"true", "True", "TRUE", "false", "False", "FALSE", "null", "Null", "NULL"}) {
    const dus::json::Value tree(dus::json::Object{{"k", dus::json::Value(s)}});
    CHECK(dus::to_yaml(tree) == std::string("k: \"") + s + "\"\n");
    CHECK(dus::parse_yaml(dus::to_yaml(tree), "back").find("k")->as_string() == s);
  }
}

TEST_CASE("YAML scalars are typed as YAML 1.2 core", "[unit]") {
  auto v = dus::parse_yaml("a: 1\nb: 1.5e-4\nc: true\nd: null\ne: '12'\nf: hello\ng: ~\n", "t");
  CHECK(v.find("a")->is_int());
  CHECK(v.find("b")->as_double() == 1.5e-4);
  CHECK(v.find("c")->as_bool());
  CHECK(v.find("d")->is_null());
  CHECK(v.find("e")->as_string() == "12");
  CHECK(v.find("f")->as_string() == "hello");
  CHECK(v.find("g")->is_null());
}

TEST_CASE("the recipe reference lists every key with type and default", "[unit]") {
  auto ref = dus::recipe_reference();
  auto has = [&](const std::string& prefix) {
    for (const auto& line : ref)
      if (line.rfind(prefix + "\t", 0) == 0) return true;
    return false;
  };
  CHECK(has("train.lr"));
  CHECK(has("scaling.m"));
  CHECK(has("data.seq_len"));
  CHECK(has("checkpoint.keep"));
  CHECK(ref.size() > 30);
}

TEST_CASE("megatron: a recipe with a Megatron source needs data.tokenizer and a val set",
          "[unit]") {
  TempDir dir;
  const std::string head = "run: {name: t}\nmodel: {config: model.json}\n";
  const std::string tail =
      "train: {steps: 10, global_batch_tokens: 64, micro_batch: 4, lr: 1.0e-3}\n";
  auto load = [&](const std::string& data) {
    write_text(dir.file("r.yaml"), head + data + tail);
    return dus::load_recipe(dir.file("r.yaml"));
  };
  const std::string mg = std::string(DUS_SOURCE_DIR) + "/tests/data/megatron/tiny_u16";
  CHECK_THAT(error_of([&] { load("data: {train: [d1, " + mg + ".bin], seq_len: 16}\n"); }),
             Catch::Contains("data.train") && Catch::Contains(mg + ".bin is a Megatron dataset") &&
                 Catch::Contains("set data.tokenizer"));
  CHECK_THAT(
      error_of([&] { load("data: {train: [" + mg + "], tokenizer: t.model, seq_len: 16}\n"); }),
      Catch::Contains("data.val") && Catch::Contains("no val split"));
  const dus::Recipe r =
      load("data: {train: [d1, {path: " + mg + ", weight: 2, eos: data}], val: [" + mg +
           "_eod.idx], tokenizer: t.model, seq_len: 16}\n");
  REQUIRE(r.data.train.size() == 2);
  CHECK(!r.data.train[0].is_megatron());
  CHECK(r.data.train[1].is_megatron());
  CHECK(r.data.train[1].eos == dus::EosPolicy::Data);
  CHECK(r.data.train[0].eos == dus::EosPolicy::Add);
  CHECK(r.data.train[1].weight == 2.0);
  REQUIRE(r.data.val.size() == 1);
  CHECK(r.data.val[0].is_megatron());
  CHECK_THAT(error_of([&] {
               load("data: {train: [{path: " + mg + ", eos: twice}], tokenizer: t, seq_len: 16}\n");
             }),
             Catch::Contains("data.train.eos") && Catch::Contains("unknown EOS policy 'twice'"));
}

TEST_CASE("eval.tasks: paths or {path, limit}; needs data.tokenizer; tasks_every spaces them",
          "[unit]") {
  TempDir dir;
  int files = 0;
  auto tree_of = [&](const std::string& extra) {
    const std::string path = dir.file("r" + std::to_string(++files) + ".yaml");
    write_text(path, std::string(kMinimal) + extra);
    return path;
  };
  const std::string good = tree_of(
      "eval: {every: 5, tasks: [a/arc.jsonl, {path: b/hella.jsonl, limit: 100}], "
      "tasks_every: 10}\n");
  auto r = dus::load_recipe(good, {"data.tokenizer=tok.model"});
  REQUIRE(r.eval.tasks.size() == 2);
  CHECK(r.eval.tasks[0].path == "a/arc.jsonl");
  CHECK(r.eval.tasks[0].limit == 0);
  CHECK(r.eval.tasks[1].path == "b/hella.jsonl");
  CHECK(r.eval.tasks[1].limit == 100);
  CHECK(r.eval.tasks_every == 10);
  // Due at multiples of tasks_every and at the last step only.
  CHECK(!r.eval.tasks_due(5, 12));
  CHECK(r.eval.tasks_due(10, 12));
  CHECK(r.eval.tasks_due(12, 12));
  // tasks_every changes no weight: a resume may change it, the run's identity is the same.
  auto spaced = dus::load_recipe(good, {"data.tokenizer=tok.model", "eval.tasks_every=20"});
  CHECK(spaced.sha256 == r.sha256);
  auto fewer = dus::load_recipe(good, {"data.tokenizer=tok.model", "eval.tasks=[a/arc.jsonl]"});
  CHECK(fewer.sha256 != r.sha256);
  // Without tasks nothing is due.
  auto none = dus::load_recipe(tree_of("eval: {every: 5}\n"), {"data.tokenizer=tok.model"});
  CHECK(none.eval.tasks.empty());
  CHECK(!none.eval.tasks_due(5, 5));

  CHECK_THAT(error_of([&] { dus::load_recipe(good); }),
             Catch::Contains("eval.tasks") && Catch::Contains("data.tokenizer"));
  CHECK_THAT(error_of([&] {
               dus::load_recipe(tree_of("eval: {every: 5, tasks: [t.jsonl], tasks_every: 7}\n"),
                                {"data.tokenizer=tok.model"});
             }),
             Catch::Contains("eval.tasks_every") && Catch::Contains("multiple of eval.every"));
  CHECK_THAT(error_of([&] {
               dus::load_recipe(tree_of("eval: {tasks: [x/arc.jsonl, y/arc.jsonl]}\n"),
                                {"data.tokenizer=tok.model"});
             }),
             Catch::Contains("same name \"arc\""));
  CHECK_THAT(error_of([&] {
               dus::load_recipe(tree_of("eval: {tasks: [{path: t.jsonl, limt: 3}]}\n"),
                                {"data.tokenizer=tok.model"});
             }),
             Catch::Contains("eval.tasks.limt") && Catch::Contains("unknown key"));
  CHECK_THAT(error_of([&] {
               dus::load_recipe(tree_of("eval: {tasks: [{path: t.jsonl, limit: -1}]}\n"),
                                {"data.tokenizer=tok.model"});
             }),
             Catch::Contains("eval.tasks.limit"));
  CHECK_THAT(error_of([&] {
               dus::load_recipe(tree_of("eval: {tasks: [{limit: 3}]}\n"),
                                {"data.tokenizer=tok.model"});
             }),
             Catch::Contains("needs a path"));
  CHECK_THAT(error_of([&] {
               dus::load_recipe(tree_of("eval: {tasks: [3]}\n"), {"data.tokenizer=tok.model"});
             }),
             Catch::Contains("eval.tasks") && Catch::Contains("expected a path"));
}
