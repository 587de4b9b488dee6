// `dus eval` pieces: task files (every malformed shape names file:line), lm-eval's scoring rules
// (argmax ties, acc_norm by characters, mean_stderr), the harness's token split on the real
// Mistral sentencepiece model, and the batched log-likelihoods against a full-logits reference
// (batch 1 vs batch B with right padding, left truncation). Parity with lm-eval itself is
// tests/python/test_eval_parity.py.
#include "torch_test.h"

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <random>

#include "core/error.h"
#include "data/hf_tokenizer_json.h"
#include "data/task_file.h"
#include "data/tokenizer.h"
#include "model/transformer.h"
#include "test_util.h"
#include "train/loglikelihood.h"
#include "train/recovery_tracker.h"
#include "train/task_recovery.h"
#include "train/task_scoring.h"

using dus::ChoiceTokens;
using dus::TaskItem;

namespace {

std::string error_of(const std::string& text) {
  try {
    dus::parse_task_text(text, "t.jsonl");
  } catch (const dus::Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("task files: items, optional id, blank lines and CRLF", "[unit]") {
  auto items = dus::parse_task_text(
      "{\"context\": \"The sky is\", \"choices\": [\" blue\", \" green\"], \"gold\": 0}\r\n\n"
      "{\"id\": \"q7\", \"context\": \"\", \"choices\": [\"yes\"], \"gold\": 0}\n",
      "t.jsonl");
  REQUIRE(items.size() == 2);
  CHECK(items[0].id == "1");
  CHECK(items[0].context == "The sky is");
  CHECK(items[0].choices == std::vector<std::string>{" blue", " green"});
  CHECK(items[1].id == "q7");
  CHECK(items[1].context.empty());
}

TEST_CASE("task files: each malformed line is an error naming file:line and what was expected",
          "[unit]") {
  const std::string ok = "{\"context\": \"a\", \"choices\": [\"b\"], \"gold\": 0}\n";
  CHECK_THAT(error_of(ok + "[1, 2]\n"),
             Catch::Contains("t.jsonl:2") && Catch::Contains("JSON object"));
  CHECK_THAT(error_of(ok + "{\"context\": \"a\"\n"),
             Catch::Contains("t.jsonl:2") && Catch::Contains("not valid JSON"));
  CHECK_THAT(error_of("{\"choices\": [\"b\"], \"gold\": 0}"),
             Catch::Contains("t.jsonl:1") && Catch::Contains("missing key 'context'"));
  CHECK_THAT(error_of("{\"context\": \"a\", \"choices\": [\"b\"], \"gold\": 0, \"label\": 1}"),
             Catch::Contains("unknown key 'label'"));
  CHECK_THAT(error_of("{\"context\": \"a\", \"choices\": [], \"gold\": 0}"),
             Catch::Contains("non-empty list of strings"));
  CHECK_THAT(error_of("{\"context\": \"a\", \"choices\": \"b\", \"gold\": 0}"),
             Catch::Contains("non-empty list of strings"));
  CHECK_THAT(error_of("{\"context\": \"a\", \"choices\": [\"b\", 3], \"gold\": 0}"),
             Catch::Contains("non-empty list of strings"));
  CHECK_THAT(error_of("{\"context\": \"a\", \"choices\": [\"b\", \"c\"], \"gold\": 2}"),
             Catch::Contains("'gold' 2 is outside [0, 2)"));
  CHECK_THAT(error_of("{\"context\": \"a\", \"choices\": [\"b\"], \"gold\": \"0\"}"),
             Catch::Contains("'gold' must be an integer"));
  CHECK_THAT(error_of("{\"context\": 5, \"choices\": [\"b\"], \"gold\": 0}"),
             Catch::Contains("'context' must be a string"));
  CHECK_THAT(error_of(ok + ok + "{\"context\": \"\xff\", \"choices\": [\"b\"], \"gold\": 0}\n"),
             Catch::Contains("t.jsonl:3") && Catch::Contains("invalid UTF-8"));
  CHECK_THAT(error_of("\n  \n"), Catch::Contains("t.jsonl") && Catch::Contains("no items"));
  dus::testing::TempDir dir;
  CHECK_THROWS_WITH(dus::load_task_file(dir.file("absent.jsonl")), Catch::Contains("absent.jsonl"));
}

TEST_CASE("Python's len and rstrip on UTF-8 text", "[unit]") {
  CHECK(dus::python_length("caf\xc3\xa9") == 4);         // é is one character, two bytes
  CHECK(dus::python_length("\xf0\x9f\x99\x82 a") == 3);  // an emoji, a space, a letter
  CHECK(dus::python_rstrip("end \t\n") == "end");
  CHECK(dus::python_rstrip("nbsp\xc2\xa0") == "nbsp");  // U+00A0 is whitespace to Python
  CHECK(dus::python_rstrip("sep\x1f") == "sep");        // so is U+001F
  CHECK(dus::python_rstrip("   ").empty());
  CHECK(dus::python_rstrip("a b") == "a b");
}

TEST_CASE("scoring: argmax takes the first maximum; acc_norm divides by characters", "[unit]") {
  TaskItem item;
  item.choices = {" a", " bbbbbbbb", " cc"};
  item.gold = 1;
  // Raw: choice 0 wins (-2 > -4). Per character: -1, -0.444, -1.667: choice 1 wins.
  auto r = dus::score_item(item, {-2.0, -4.0, -5.0});
  CHECK(r.pred == 0);
  CHECK(r.pred_norm == 1);
  CHECK_FALSE(r.acc);
  CHECK(r.acc_norm);
  // Ties go to the first index, as numpy.argmax.
  auto tie = dus::score_item(item, {-3.0, -3.0, -1.0 * 3});
  CHECK(tie.pred == 0);
  CHECK_THROWS_WITH(dus::score_item(item, {-1.0}),
                    Catch::Contains("1 log-likelihoods for 3 choices"));
  // Characters, not bytes: "é" is one character, so -1 / 1 beats -1.5 / 2 ("ab").
  TaskItem utf;
  utf.choices = {"\xc3\xa9", "ab"};
  CHECK(dus::score_item(utf, {-1.0, -1.5}).pred_norm == 1);
  CHECK(dus::score_item(utf, {-0.7, -1.5}).pred_norm == 0);
}

TEST_CASE("summary: means and lm-eval's mean_stderr (sample stddev / sqrt n)", "[unit]") {
  std::vector<dus::ItemResult> results(4);
  results[0].acc = results[1].acc = results[3].acc = true;  // acc 0.75
  results[2].acc_norm = true;                               // acc_norm 0.25
  auto m = dus::summarize(results);
  CHECK(m.items == 4);
  CHECK(m.acc == Approx(0.75));
  // sample variance of {1,1,0,1}: (3 * 0.0625 + 0.5625) / 3 = 0.25; stddev 0.5; / sqrt(4)
  CHECK(m.acc_stderr == Approx(0.25));
  CHECK(m.acc_norm == Approx(0.25));
  CHECK(m.acc_norm_stderr == Approx(0.25));
  auto one = dus::summarize(std::vector<dus::ItemResult>(1));
  CHECK(std::isnan(one.acc_stderr));
}

TEST_CASE("the harness's token split on the Mistral sentencepiece model", "[unit]") {
  const char* home = std::getenv("HOME");
  const std::string path = std::string(home ? home : "") +
                           "/.cache/dus-trainer/venv/lib/python3.11/site-packages/mistral_common/"
                           "data/tokenizer.model.v1";
  if (!std::filesystem::exists(path)) {
    WARN("skipped: no Mistral tokenizer at " << path);
    return;
  }
  const auto tok = dus::Tokenizer::load(path);
  REQUIRE(tok.bos_id() == 1);
  // context + continuation is encoded whole, with BOS; the context's ids are its prefix.
  auto a = dus::encode_choice(tok, "In the beginning God", " created the heaven", true, "t");
  auto whole = tok.encode("In the beginning God created the heaven");
  whole.insert(whole.begin(), 1);
  std::vector<int32_t> joined = a.context;
  joined.insert(joined.end(), a.continuation.begin(), a.continuation.end());
  CHECK(joined == whole);
  CHECK(a.context.front() == 1);
  auto ctx = tok.encode("In the beginning God");
  ctx.insert(ctx.begin(), 1);
  CHECK(a.context == ctx);
  // A trailing space of the context moves to the continuation: the same split.
  auto b = dus::encode_choice(tok, "In the beginning God ", "created the heaven", true, "t");
  CHECK(b.context == a.context);
  CHECK(b.continuation == a.continuation);
  // An empty context conditions on BOS alone; the continuation is encoded without BOS.
  auto c = dus::encode_choice(tok, "", "Amen", true, "t");
  CHECK(c.context == std::vector<int32_t>{1});
  CHECK(c.continuation == tok.encode("Amen"));
  // A tokenizer that adds no BOS: the same split without it.
  auto d = dus::encode_choice(tok, "In the beginning God", " created the heaven", false, "t");
  CHECK(d.context == tok.encode("In the beginning God"));
  CHECK(d.continuation == a.continuation);
}

namespace {

dus::ModelConfig tiny_config() {
  dus::ModelConfig c;
  c.vocab_size = 53;
  c.hidden_size = 24;
  c.intermediate_size = 40;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 8;
  c.max_position_embeddings = 64;
  c.initializer_range = 0.2;
  c.sliding_window = 5;  // shorter than the rows: the window must not see the padding either
  return c;
}

// Summed log p(continuation | context) from the full logits of the unpadded sequence.
double reference_loglik(dus::TransformerImpl& model, const ChoiceTokens& r, int64_t max_length) {
  std::vector<int64_t> all(r.context.begin(), r.context.end());
  all.insert(all.end(), r.continuation.begin(), r.continuation.end());
  if (static_cast<int64_t>(all.size()) > max_length + 1)
    all.erase(all.begin(), all.end() - (max_length + 1));
  auto input = torch::tensor(std::vector<int64_t>(all.begin(), all.end() - 1)).unsqueeze(0);
  auto logp = torch::log_softmax(model.forward(input).squeeze(0).to(torch::kDouble), -1);  // (T, V)
  const int64_t T = input.size(1), n = static_cast<int64_t>(r.continuation.size());
  double sum = 0;
  for (int64_t j = 0; j < n; ++j)
    sum += logp[T - n + j][r.continuation[static_cast<size_t>(j)]].item<double>();
  return sum;
}

}  // namespace

TEST_CASE(
    "log-likelihoods: batched with right padding equal one row at a time and the full-logits "
    "reference",
    "[unit]") {
  torch::manual_seed(3);
  dus::Transformer model(tiny_config());
  model->eval();
  torch::NoGradGuard no_grad;
  std::vector<ChoiceTokens> requests;
  std::mt19937 rng(11);
  for (int i = 0; i < 9; ++i) {
    ChoiceTokens r;
    const int ctx = 1 + static_cast<int>(rng() % 12), cont = 1 + static_cast<int>(rng() % 6);
    for (int k = 0; k < ctx; ++k) r.context.push_back(static_cast<int32_t>(rng() % 53));
    for (int k = 0; k < cont; ++k) r.continuation.push_back(static_cast<int32_t>(rng() % 53));
    requests.push_back(r);
  }
  dus::LoglikelihoodOptions one;
  one.batch = 1;
  one.max_length = 64;
  dus::LoglikelihoodOptions many = one;
  many.batch = 4;
  many.chunk_rows = 5;  // several lm_head chunks per batch
  dus::LoglikelihoodStats stats;
  auto a = dus::continuation_logliks(*model, requests, one);
  auto b = dus::continuation_logliks(*model, requests, many, &stats);
  CHECK(stats.forwards == 3);
  REQUIRE(a.size() == requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    CHECK(a[i] < 0);
    CHECK(b[i] == Approx(a[i]).epsilon(0).margin(1e-5));
    CHECK(a[i] == Approx(reference_loglik(*model, requests[i], 64)).epsilon(0).margin(1e-4));
  }
  // Left truncation to max_length + 1 tokens, as the harness feeds a long request.
  dus::LoglikelihoodOptions short_window = many;
  short_window.max_length = 6;
  auto c = dus::continuation_logliks(*model, requests, short_window);
  for (size_t i = 0; i < requests.size(); ++i)
    CHECK(c[i] == Approx(reference_loglik(*model, requests[i], 6)).epsilon(0).margin(1e-4));
  // Ids outside the vocabulary are an error, not undefined behaviour.
  requests[0].continuation[0] = 53;
  CHECK_THROWS_WITH(dus::continuation_logliks(*model, requests, one),
                    Catch::Contains("outside the model's vocabulary"));
}

TEST_CASE("BOS as Hugging Face's tokenizer adds it: per the tokenizer.json's post_processor",
          "[unit]") {
  auto adds = [](const std::string& post) {
    return dus::post_processor_adds_bos(dus::json::parse(post, "post_processor"));
  };
  const std::string bos_template =
      "{\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<s>\", "
      "\"type_id\": 0}}, "
      "{\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}], \"pair\": [], \"special_tokens\": {}}";
  CHECK(adds(bos_template));
  CHECK(adds("{\"type\": \"Sequence\", \"processors\": [{\"type\": \"ByteLevel\"}, " +
             bos_template + "]}"));
  CHECK_FALSE(adds(
      "{\"type\": \"TemplateProcessing\", \"single\": [{\"Sequence\": {\"id\": \"A\", "
      "\"type_id\": 0}}]}"));
  CHECK_FALSE(adds("{\"type\": \"ByteLevel\"}"));
  CHECK_FALSE(adds("null"));
  CHECK_FALSE(adds("{\"type\": \"TemplateProcessing\", \"single\": [3]}"));
}

TEST_CASE("task recovery: the loss's formula on accuracy; absent when scaling did not lower it",
          "[unit]") {
  auto m = [](double acc) {
    dus::TaskMetrics t;
    t.items = 100;
    t.acc = acc;
    t.acc_norm = acc;
    return t;
  };
  dus::TaskRecovery tr;
  tr.add_task("arc", "tasks/arc.jsonl", 100, m(0.60), m(0.40));
  tr.add_task("same", "tasks/same.jsonl", 100, m(0.50), m(0.50));
  tr.add_task("scratch", "tasks/scratch.jsonl", 100, std::nullopt, std::nullopt);
  const auto& t = tr.tasks();
  // (scaled_acc_0 - acc) / (scaled_acc_0 - base_acc): 0 at scaled_acc_0, 1 back at base_acc.
  CHECK(*dus::TaskRecovery::recovery(t[0], 0.40) == Approx(0.0));
  CHECK(*dus::TaskRecovery::recovery(t[0], 0.55) == Approx(0.75));
  CHECK(*dus::TaskRecovery::recovery(t[0], 0.60) == Approx(1.0));
  CHECK(*dus::TaskRecovery::recovery(t[0], 0.30) == Approx(-0.5));
  CHECK(!dus::TaskRecovery::recovery(t[1], 0.55));  // scaling cost nothing: nothing to recover
  CHECK(!dus::TaskRecovery::recovery(t[2], 0.55));  // no base, no scaled model
  CHECK_THROWS_WITH(tr.add_task("arc", "other/arc.jsonl", 5, std::nullopt, std::nullopt),
                    Catch::Contains("two tasks are named \"arc\""));
  CHECK_THROWS_WITH(tr.observe(10, 640, {m(0.5)}), Catch::Contains("1 scores for 3 tasks"));
  tr.observe(10, 640, {m(0.45), m(0.5), m(0.3)});
  CHECK_THROWS_WITH(tr.observe(10, 640, {m(0.45), m(0.5), m(0.3)}),
                    Catch::Contains("after one at step 10"));
  CHECK(!tr.mean_seconds());
  tr.add_seconds(1.0);
  tr.add_seconds(2.0);
  CHECK(*tr.mean_seconds() == Approx(1.5));
}

TEST_CASE("task recovery: state round-trips exactly inside the tracker; summary fields", "[unit]") {
  dus::TaskMetrics base, scaled, now, one;
  base = {200, 0.605, 0.0346, 0.585, 0.0349};
  scaled = {200, 0.41, 0.0349, 0.43, 0.0351};
  now = {200, 0.1 + 0.2, 0.03, 0.7, 0.03};  // not exactly representable: a real round-trip test
  one = {1, 1.0, std::nan(""), 0.0, std::nan("")};  // stderr undefined for one item
  dus::RecoveryTracker plain(3.9, 4.3, dus::LayerLabels::plain(2));
  CHECK(plain.to_json().find("tasks") == nullptr);  // a run without tasks keeps its state shape
  CHECK(plain.summary_json().find("tasks") == nullptr);

  dus::RecoveryTracker tracker(3.9, 4.3, dus::LayerLabels::plain(2));
  tracker.tasks().add_task("arc", "t/arc.jsonl", 200, base, scaled);
  tracker.tasks().add_task("tiny", "t/tiny.jsonl", 1, std::nullopt, one);
  tracker.tasks().observe(5, 320, {now, one});
  tracker.tasks().add_seconds(0.25);
  const std::string state = dus::json::dump(tracker.to_json());
  const auto back =
      dus::RecoveryTracker::from_json(dus::json::parse(state, "state.json"), "state.json");
  CHECK(dus::json::dump(back.to_json()) == state);
  const auto& arc = back.tasks().tasks()[0];
  CHECK(arc.history[0].metrics.acc == now.acc);  // bit for bit
  CHECK(std::isnan(back.tasks().tasks()[1].history[0].metrics.acc_stderr));

  const dus::json::Value summary = tracker.summary_json();
  const dus::json::Value& s = summary.find("tasks")->as_array()[0];
  CHECK(s.find("base_acc")->as_double() == 0.605);
  CHECK(s.find("scaled_acc_0")->as_double() == 0.41);
  CHECK(s.find("final_acc")->as_double() == now.acc);
  CHECK(s.find("final_recovery")->as_double() == Approx((now.acc - 0.41) / (0.605 - 0.41)));
  CHECK(summary.find("task_eval_seconds")->as_double() == 0.25);
  const dus::json::Value& tiny = summary.find("tasks")->as_array()[1];
  CHECK(tiny.find("base_acc")->is_null());
  CHECK(tiny.find("final_recovery")->is_null());
  CHECK(tiny.find("history")->as_array()[0].find("acc_stderr")->is_null());
  const std::string text = dus::RecoveryTracker::summary_text(summary);
  CHECK_THAT(text, Catch::Contains("task arc (200 items): acc base 0.605  scaled_0 0.410  final "
                                   "0.300"));
  CHECK_THAT(text, Catch::Contains("0.2 s per task evaluation"));
  CHECK_THROWS_WITH(
      dus::RecoveryTracker::from_json(dus::json::parse(R"({"base_loss": 1, "scaled_loss_0": 2,
        "milestones": {"recovery_0.5": null, "recovery_0.9": null, "recovery_1.0": null,
                       "beat_base": null},
        "seam": {"layers": [], "seams": [], "latest": {"step": -1, "grad_norm": [],
                 "update_ratio": [], "hidden_cosine": []}},
        "history": [], "tasks": {"tasks": [{"name": "x"}]}})",
                                                       "state.json"),
                                      "state.json"),
      Catch::Contains("state.json.tasks.tasks.x") && Catch::Contains("missing key \"file\""));
}
