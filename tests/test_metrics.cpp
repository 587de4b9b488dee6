// Metrics sinks and recovery tracking: metrics.jsonl (exact floats, resume truncation), the
// TensorBoard record framing (the tensorboard package reads the files in
// python/test_tensorboard_events.py), the recovery tracker (arithmetic, first-crossing
// milestones, exact JSON round trip) and the per-layer seam diagnostics of a Transformer.
#include "torch_test.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <random>

#include "core/error.h"
#include "core/file_util.h"
#include "model/hf_checkpoint.h"
#include "model/loss.h"
#include "model/transformer.h"
#include "scaling/layer_plan.h"
#include "scaling/provenance.h"
#include "test_util.h"
#include "train/layer_stats.h"
#include "train/metrics_log.h"
#include "train/recovery_tracker.h"
#include "train/tensorboard_writer.h"

namespace {

using dus::json::Object;
using dus::json::Value;

Value train_record(int64_t step, double loss) {
  return Value(Object{{"kind", Value("train")},
                      {"step", Value(step)},
                      {"tokens", Value(step * 1024)},
                      {"loss", Value(loss)}});
}

std::vector<int64_t> steps_of(const std::vector<Value>& records) {
  std::vector<int64_t> steps;
  for (const auto& r : records) steps.push_back(r.find("step")->as_int());
  return steps;
}

bool same_bits(double a, double b) {
  return std::memcmp(&a, &b, sizeof a) == 0;
}

dus::ModelConfig tiny_config(int64_t layers) {
  dus::ModelConfig c;
  c.vocab_size = 61;
  c.hidden_size = 24;
  c.intermediate_size = 40;
  c.num_hidden_layers = layers;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 8;
  c.rope_theta = 10000.0;
  c.rms_norm_eps = 1e-6;
  c.max_position_embeddings = 128;
  c.initializer_range = 0.1;
  return c;
}

uint32_t read_u32(const std::string& bytes, size_t at) {
  uint32_t v;
  std::memcpy(&v, bytes.data() + at, 4);
  return v;
}

}  // namespace

// --- metrics.jsonl ---------------------------------------------------------------------------

TEST_CASE("metrics log: floats and doubles round-trip bit for bit, one line per record", "[unit]") {
  dus::testing::TempDir dir;
  const std::string path = dir.file("run/metrics.jsonl");  // the directory is created
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> uniform(0.0f, 12.0f);
  std::vector<float> losses;
  for (int i = 0; i < 200; ++i) losses.push_back(uniform(rng));
  losses.push_back(std::numeric_limits<float>::min());
  losses.push_back(std::numeric_limits<float>::max());
  losses.push_back(std::nextafter(1.0f, 2.0f));
  const std::vector<double> doubles = {0.1, 1.0 / 3.0, 1e-300, 6.02214076e23,
                                       std::nextafter(2.0, 3.0)};
  {
    dus::MetricsLog log(path);
    for (size_t i = 0; i < losses.size(); ++i)
      log.append(train_record(static_cast<int64_t>(i), losses[i]));
    for (double d : doubles) {
      Value r = train_record(1000, d);
      log.append(r);
    }
    // Flushed per line: a reader sees every record while the log is still open.
    CHECK(dus::MetricsLog::read(path).size() == losses.size() + doubles.size());
    log.sync();
  }
  const auto records = dus::MetricsLog::read(path);
  REQUIRE(records.size() == losses.size() + doubles.size());
  for (size_t i = 0; i < losses.size(); ++i) {
    INFO("record " << i);
    CHECK(static_cast<float>(records[i].find("loss")->as_double()) == losses[i]);
    CHECK(records[i].find("kind")->as_string() == "train");
  }
  for (size_t i = 0; i < doubles.size(); ++i)
    CHECK(same_bits(records[losses.size() + i].find("loss")->as_double(), doubles[i]));
  // Every line is one compact JSON object.
  const std::string text = dus::read_file(path);
  CHECK(std::count(text.begin(), text.end(), '\n') ==
        static_cast<long>(losses.size() + doubles.size()));
  CHECK_THROWS_AS(dus::MetricsLog(path).append(Value(1.5)), dus::Error);
}

TEST_CASE("metrics log: resume cuts the killed run's records past the checkpoint", "[unit]") {
  dus::testing::TempDir dir;
  const std::string path = dir.file("metrics.jsonl");
  {
    dus::MetricsLog log(path);
    log.append(Value(Object{{"kind", Value("start")}, {"recipe", Value("tiny.yaml")}}));
    for (int64_t step = 1; step <= 9; ++step) {
      log.append(train_record(step, 3.0 - 0.1 * step));
      if (step % 4 == 0)
        log.append(Value(Object{{"kind", Value("eval")},
                                {"step", Value(step)},
                                {"eval_loss", Value(2.5)},
                                {"recovery", Value(0.25)}}));
    }
    log.append(Value(Object{{"kind", Value("note")}}));  // no step, after the cut: dropped
  }
  // kill -9 in the middle of writing a line: a torn tail without a newline.
  {
    std::ofstream out(path, std::ios::app | std::ios::binary);
    out << R"({"kind":"train","step":10,"lo)";
  }
  {
    auto log = dus::MetricsLog::open_for_resume(path, 6);
    const auto kept = dus::MetricsLog::read(path);
    REQUIRE(kept.size() == 8);  // start, steps 1..6, eval at 4
    CHECK(kept[0].find("kind")->as_string() == "start");
    CHECK(steps_of({kept.begin() + 1, kept.end()}) == std::vector<int64_t>{1, 2, 3, 4, 4, 5, 6});
    for (int64_t step = 7; step <= 8; ++step) log.append(train_record(step, 1.0));
  }
  const auto records = dus::MetricsLog::read(path);
  CHECK(steps_of({records.begin() + 1, records.end()}) ==
        std::vector<int64_t>{1, 2, 3, 4, 4, 5, 6, 7, 8});
  CHECK(records.back().find("loss")->as_double() == 1.0);
  CHECK(!std::filesystem::exists(path + ".tmp"));

  // Resuming at the last step keeps everything; a missing file is created.
  const std::string before = dus::read_file(path);
  dus::MetricsLog::open_for_resume(path, 8);
  CHECK(dus::read_file(path) == before);
  dus::MetricsLog::open_for_resume(dir.file("new/metrics.jsonl"), 3);
  CHECK(dus::read_file(dir.file("new/metrics.jsonl")).empty());
}

TEST_CASE("metrics log: a corrupt line in the middle is an error naming path and line", "[unit]") {
  dus::testing::TempDir dir;
  const std::string path = dir.file("metrics.jsonl");
  dus::testing::write_text(path, "{\"step\":1}\nnot json\n{\"step\":2}\n");
  try {
    dus::MetricsLog::open_for_resume(path, 5);
    FAIL("expected a dus::Error");
  } catch (const dus::Error& e) {
    CHECK_THAT(e.where(), Catch::Contains("metrics.jsonl:2"));
  }
  CHECK(dus::read_file(path) == "{\"step\":1}\nnot json\n{\"step\":2}\n");  // left untouched
}

// --- TensorBoard framing ---------------------------------------------------------------------

TEST_CASE("tensorboard: CRC32C test vector and TFRecord framing", "[unit]") {
  CHECK(dus::crc32c("123456789") == 0xE3069283u);
  CHECK(dus::crc32c("") == 0u);

  dus::testing::TempDir dir;
  std::string path;
  {
    dus::TensorBoardWriter writer(dir.file("tb"));
    path = writer.path();
    writer.add_scalar("train/loss", 2.5, 3, 1700000000.25);
    writer.flush();
    dus::TensorBoardWriter second(dir.file("tb"));  // same second: a new file, never shared
    CHECK(second.path() != path);
  }
  const std::string name = path.substr(path.find_last_of('/') + 1);
  CHECK(name.rfind("events.out.tfevents.", 0) == 0);
  CHECK(name.substr(20, 10).find_first_not_of("0123456789") == std::string::npos);

  // Walk the records: length, masked CRC of the length, data, masked CRC of the data.
  const std::string bytes = dus::read_file(path);
  std::vector<std::string> records;
  for (size_t at = 0; at < bytes.size();) {
    REQUIRE(at + 12 <= bytes.size());
    uint64_t len;
    std::memcpy(&len, bytes.data() + at, 8);
    CHECK(read_u32(bytes, at + 8) == dus::masked_crc32c(bytes.substr(at, 8)));
    REQUIRE(at + 12 + len + 4 <= bytes.size());
    const std::string data = bytes.substr(at + 12, len);
    CHECK(read_u32(bytes, at + 12 + len) == dus::masked_crc32c(data));
    records.push_back(data);
    at += 12 + len + 4;
  }
  REQUIRE(records.size() == 2);
  CHECK(records[0].find("brain.Event:2") != std::string::npos);
  // Event{wall_time=1700000000.25 (field 1, fixed64), step=3 (field 2, varint), summary...}.
  const double wall = 1700000000.25;
  std::string expected_head = "\x09";
  expected_head.append(reinterpret_cast<const char*>(&wall), 8);
  expected_head += "\x10\x03";
  CHECK(records[1].substr(0, 11) == expected_head);
  const float value = 2.5f;
  CHECK(records[1].find("train/loss") != std::string::npos);
  CHECK(records[1].find(std::string("\x15", 1) + std::string(reinterpret_cast<const char*>(&value),
                                                             4)) != std::string::npos);
}

// --- recovery tracker ------------------------------------------------------------------------

TEST_CASE("recovery: (scaled_loss_0 - eval_loss) / (scaled_loss_0 - base_loss)", "[unit]") {
  dus::RecoveryTracker t(2.0, 3.0, dus::LayerLabels::plain(2));
  CHECK(*t.recovery(3.0) == 0.0);
  CHECK(*t.recovery(2.5) == 0.5);
  CHECK(*t.recovery(2.0) == 1.0);
  CHECK(*t.recovery(1.5) == 1.5);
  CHECK(*t.recovery(3.5) == -0.5);
  // Not defined without both losses, or when scaling did not raise the loss (block expansion).
  CHECK(!dus::RecoveryTracker(2.0, std::nullopt, {}).recovery(2.5));
  CHECK(!dus::RecoveryTracker(std::nullopt, 3.0, {}).recovery(2.5));
  CHECK(!dus::RecoveryTracker(2.0, 2.0, {}).recovery(2.5));
  CHECK(!dus::RecoveryTracker(2.0, 2.0 + 1e-9, {}).recovery(2.5));
  CHECK(!dus::RecoveryTracker(2.0, 1.9, {}).recovery(2.5));
}

TEST_CASE("recovery: milestones are the first crossing, in order, with steps and tokens",
          "[unit]") {
  dus::RecoveryTracker t(2.0, 3.0, dus::LayerLabels::plain(2));
  using Names = std::vector<std::string>;
  CHECK(t.observe(10, 1000, 2.8).empty());                   // 0.2
  CHECK(t.observe(20, 2000, 2.4) == Names{"recovery_0.5"});  // 0.6
  CHECK(t.observe(30, 3000, 2.6).empty());                   // dips back to 0.4
  CHECK(t.observe(40, 4000, 2.45).empty());                  // 0.55 again: not a new first
  CHECK(t.observe(50, 5000, 2.0) == Names{"recovery_0.9", "recovery_1.0"});  // exactly base
  CHECK(t.observe(60, 6000, 2.0).empty());                                   // equal is not below
  CHECK(t.observe(70, 7000, 1.99) == Names{"beat_base"});
  CHECK(t.observe(80, 8000, 1.5).empty());

  auto at = [&](int i) { return std::make_pair(t.milestone(i)->step, t.milestone(i)->tokens); };
  CHECK(at(0) == std::make_pair<int64_t, int64_t>(20, 2000));
  CHECK(at(1) == std::make_pair<int64_t, int64_t>(50, 5000));
  CHECK(at(2) == std::make_pair<int64_t, int64_t>(50, 5000));
  CHECK(at(3) == std::make_pair<int64_t, int64_t>(70, 7000));
  CHECK(t.history().size() == 8);

  // Several thresholds at once, and a NaN evaluation that reaches nothing.
  dus::RecoveryTracker jump(2.0, 3.0, {});
  CHECK(jump.observe(1, 10, std::nan("")).empty());
  CHECK(jump.observe(2, 20, 1.0) ==
        Names{"recovery_0.5", "recovery_0.9", "recovery_1.0", "beat_base"});
  CHECK_THROWS_AS(jump.observe(2, 30, 1.0), dus::Error);  // steps must increase
}

TEST_CASE("recovery: without scaling only beat_base applies; from scratch nothing does", "[unit]") {
  dus::RecoveryTracker continued(2.0, std::nullopt, dus::LayerLabels::plain(3));
  CHECK(continued.observe(5, 50, 2.1).empty());
  CHECK(continued.observe(6, 60, 1.9) == std::vector<std::string>{"beat_base"});
  CHECK(!continued.milestone(0));

  dus::RecoveryTracker scratch(std::nullopt, std::nullopt, dus::LayerLabels::plain(3));
  CHECK(scratch.observe(5, 50, 0.1).empty());
  const Value summary = scratch.summary_json();
  CHECK(summary.find("base_loss")->is_null());
  CHECK(summary.find("scaled_loss_0")->is_null());
  CHECK(summary.find("final_eval_loss")->as_double() == 0.1);
  CHECK(summary.find("final_recovery")->is_null());
  for (const char* name : dus::kMilestoneNames)
    CHECK(summary.find("milestones")->find(name)->is_null());
  CHECK(!summary.find("history")->as_array()[0].contains("recovery"));
  CHECK_THAT(dus::RecoveryTracker::summary_text(summary), Catch::Contains("not reached"));
}

TEST_CASE("recovery: bits per byte beside each loss only with a bpb scale", "[unit]") {
  dus::RecoveryTracker t(2.0, 3.0, dus::LayerLabels::plain(2));
  t.observe(10, 100, 2.5);
  t.observe(20, 200, 1.5);
  const Value plain = t.summary_json();
  for (const char* key : {"base_bpb", "scaled_bpb_0", "final_eval_bpb"})
    CHECK(!plain.contains(key));
  CHECK(!plain.find("history")->as_array()[0].contains("bpb"));
  CHECK(!t.bpb(2.0));

  // 0.5 bit per byte per nat of loss (e.g. 1,000 targets over 2,885.39 bytes): bpb = loss / 2.
  t.set_bpb_per_loss(0.5);
  CHECK(*t.bpb(3.0) == 1.5);
  const Value s = t.summary_json();
  CHECK(s.find("base_bpb")->as_double() == 1.0);
  CHECK(s.find("scaled_bpb_0")->as_double() == 1.5);
  CHECK(s.find("final_eval_bpb")->as_double() == 0.75);
  const auto& history = s.find("history")->as_array();
  CHECK(history[0].find("bpb")->as_double() == 1.25);
  CHECK(history[1].find("bpb")->as_double() == 0.75);
  // Next to the losses they derive from, in the file's reading order.
  std::vector<std::string> keys;
  for (const auto& kv : s.as_object()) keys.push_back(kv.first);
  CHECK(std::vector<std::string>(keys.begin(), keys.begin() + 7) ==
        std::vector<std::string>{"base_loss", "base_bpb", "scaled_loss_0", "scaled_bpb_0",
                                 "final_eval_loss", "final_eval_bpb", "final_recovery"});
  CHECK_THAT(dus::RecoveryTracker::summary_text(s), Catch::Contains("(bpb 0.7500)"));
  // The state (state.json) carries no bpb: a resumed run measures its scale again.
  CHECK(!t.to_json().contains("base_bpb"));
  CHECK(!dus::RecoveryTracker::from_json(t.to_json(), "state").bpb(1.0));

  // From scratch: no base loss, so base_bpb is null while the evaluations have theirs.
  dus::RecoveryTracker scratch(std::nullopt, std::nullopt, dus::LayerLabels::plain(2));
  scratch.set_bpb_per_loss(2.0);
  scratch.observe(1, 10, 4.0);
  const Value s2 = scratch.summary_json();
  CHECK(s2.find("base_bpb")->is_null());
  CHECK(s2.find("final_eval_bpb")->as_double() == 8.0);
}

TEST_CASE("recovery: JSON state round-trips exactly and the summary names the seam", "[unit]") {
  const dus::Provenance provenance{dus::dus_plan(4, 1)};  // [0, 3) + [1, 4): seam at 3
  const auto labels = dus::LayerLabels::from_provenance(provenance);
  REQUIRE(labels.layers.size() == 6);
  REQUIRE(labels.seams.size() == 1);
  CHECK(labels.seams[0].layer == 3);
  CHECK(labels.layers[3] == "copy 2, base layer 1");

  dus::RecoveryTracker t(1.0 / 3.0, 0.1 + 0.2 + 1.0, labels);
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  auto stats = [&] {
    std::vector<dus::LayerStats> layers(6);
    for (auto& l : layers) l = {u(rng) * 1e-3, u(rng) * 1e-5, 1.0 - u(rng) * 1e-7};
    layers[2].update_ratio = std::nan("");  // not measured this time
    return layers;
  };
  t.observe(100, 409600, 1.2, stats());
  t.observe(200, 819200, 0.8 + u(rng), stats());
  t.observe(300, 1228800, 1.0 / 7.0, stats());
  t.observe(400, 1638400, 0.4);  // no layer stats: the latest stay those of step 300

  const std::string text = dus::json::dump(t.to_json());
  const auto restored =
      dus::RecoveryTracker::from_json(dus::json::parse(text, "state.json"), "state.json");
  CHECK(dus::json::dump(restored.to_json()) == text);
  CHECK(same_bits(*restored.base_loss(), 1.0 / 3.0));
  CHECK(same_bits(*restored.scaled_loss_0(), 0.1 + 0.2 + 1.0));
  CHECK(restored.latest_layers_step() == 300);
  REQUIRE(restored.latest_layers().size() == 6);
  for (size_t i = 0; i < 6; ++i) {
    CHECK(same_bits(restored.latest_layers()[i].grad_norm, t.latest_layers()[i].grad_norm));
    CHECK(same_bits(restored.latest_layers()[i].hidden_cosine, t.latest_layers()[i].hidden_cosine));
  }
  CHECK(std::isnan(restored.latest_layers()[2].update_ratio));
  for (int i = 0; i < dus::kNumMilestones; ++i) {
    CHECK(bool(restored.milestone(i)) == bool(t.milestone(i)));
    if (t.milestone(i)) CHECK(restored.milestone(i)->step == t.milestone(i)->step);
  }
  // Continuing from the restored state equals continuing the original.
  auto original = t;
  auto resumed = restored;
  CHECK(original.observe(500, 2048000, 0.2) == resumed.observe(500, 2048000, 0.2));
  CHECK(dus::json::dump(original.to_json()) == dus::json::dump(resumed.to_json()));

  // recovery.json: losses, final values, milestones, the layers either side of the seam.
  dus::testing::TempDir dir;
  t.write_summary(dir.file("recovery.json"));
  const Value summary = dus::json::parse_file(dir.file("recovery.json"));
  CHECK(summary.find("final_eval_loss")->as_double() == 0.4);
  CHECK(same_bits(summary.find("final_recovery")->as_double(), *t.recovery(0.4)));
  const auto& seam = summary.find("seam")->find("seams")->as_array()[0];
  CHECK(seam.find("name")->as_string() == "2|3: copy 1 layer 2 -> copy 2 layer 1");
  CHECK(seam.find("before")->find("origin")->as_string() == "copy 1, base layer 2");
  CHECK(seam.find("after")->find("origin")->as_string() == "copy 2, base layer 1");
  CHECK(same_bits(seam.find("after")->find("grad_norm")->as_double(),
                  t.latest_layers()[3].grad_norm));
  CHECK(summary.find("history")->as_array().size() == 4);
  CHECK(summary.find("history")->as_array()[0].find("grad_norm")->as_array().size() == 6);
  CHECK(summary.find("history")->as_array()[3].find("grad_norm")->as_array().empty());
  // The summary is itself a readable state (the derived keys are ignored).
  CHECK(dus::json::dump(dus::RecoveryTracker::from_json(summary, "recovery.json").to_json()) ==
        dus::json::dump(t.to_json()));
  const std::string console = dus::RecoveryTracker::summary_text(summary);
  CHECK_THAT(console, Catch::Contains("recovery_0.5: step"));
  CHECK_THAT(console, Catch::Contains("seam 2|3"));

  CHECK_THROWS_AS(dus::RecoveryTracker::from_json(dus::json::parse("{}", "s"), "s"), dus::Error);
  CHECK_THROWS_AS(t.observe(600, 1, 1.0, std::vector<dus::LayerStats>(5)), dus::Error);
}

// --- per-layer stats -------------------------------------------------------------------------

TEST_CASE("layer stats: grad norms equal a float64 computation by hand", "[unit]") {
  torch::manual_seed(0);
  dus::Transformer model(tiny_config(3));
  auto ids = torch::randint(0, 61, {2, 12}, torch::kLong);
  dus::next_token_loss(model->forward(ids), ids).backward();
  const auto norms = dus::layer_grad_norms(*model);
  REQUIRE(norms.size() == 3);
  for (int64_t i = 0; i < 3; ++i) {
    double sum = 0;
    for (const auto& p : model->layer(i)->parameters())
      sum += p.grad().to(torch::kDouble).pow(2).sum().item<double>();
    INFO("layer " << i);
    CHECK(norms[static_cast<size_t>(i)] == Approx(std::sqrt(sum)).epsilon(1e-6));
    CHECK(norms[static_cast<size_t>(i)] > 0);
  }
  model->zero_grad(/*set_to_none=*/true);
  CHECK(dus::layer_grad_norms(*model) == std::vector<double>{0, 0, 0});
}

TEST_CASE("layer stats: update ratios from per-tensor sums, one layer at a time", "[unit]") {
  torch::manual_seed(1);
  dus::Transformer model(tiny_config(2));
  dus::LayerUpdateSums sums(2);
  double weight1 = 0, moved1 = 0;
  for (const auto& [name, p] : dus::hf_tensors(model)) {
    const int64_t layer = dus::layer_index_of(name);
    auto before = p.detach().clone();
    {
      torch::NoGradGuard no_grad;
      if (name == "model.layers.1.mlp.up_proj.weight") p.mul_(1.5);  // moves by half its norm
    }
    sums.add(layer, before, p.detach());
    if (layer == 1) {
      weight1 += before.to(torch::kDouble).pow(2).sum().item<double>();
      moved1 +=
          (p.detach().to(torch::kDouble) - before.to(torch::kDouble)).pow(2).sum().item<double>();
    }
  }
  const auto values = sums.values();
  REQUIRE(values.size() == 4);
  const auto ratios = dus::LayerUpdateSums::ratios(values);
  REQUIRE(ratios.size() == 2);
  CHECK(ratios[0] == 0.0);
  CHECK(moved1 > 0);
  CHECK(ratios[1] == Approx(std::sqrt(moved1 / weight1)).epsilon(1e-5));
  // Sums over ranks' shards add up: two halves give the whole.
  std::vector<double> doubled(values.size());
  for (size_t i = 0; i < values.size(); ++i) doubled[i] = 2 * values[i];
  CHECK(dus::LayerUpdateSums::ratios(doubled)[1] == Approx(ratios[1]));
  CHECK(dus::LayerUpdateSums::ratios({0, 0, 0, 1}) == std::vector<double>{0, INFINITY});
  CHECK_THROWS_AS(dus::LayerUpdateSums::ratios({1, 2, 3}), dus::Error);
  CHECK(dus::layer_index_of("model.layers.12.mlp.up_proj.weight") == 12);
  CHECK(dus::layer_index_of("model.embed_tokens.weight") == -1);
  CHECK(dus::layer_index_of("model.layers.x.mlp") == -1);
  CHECK(dus::layer_index_of("lm_head.weight") == -1);
}

TEST_CASE("layer stats: a layer with zeroed output projections has hidden cosine exactly 1",
          "[unit]") {
  torch::manual_seed(2);
  dus::Transformer model(tiny_config(3));
  {
    torch::NoGradGuard no_grad;
    model->layer(1)->self_attn->o_proj->weight.zero_();
    model->layer(1)->mlp->down_proj->weight.zero_();
  }
  auto ids = torch::randint(0, 61, {2, 9}, torch::kLong);
  const auto cosines = dus::layer_hidden_cosines(*model, ids);
  REQUIRE(cosines.size() == 3);
  CHECK(cosines[1] == 1.0);
  CHECK(cosines[0] < 1.0);
  CHECK(cosines[2] < 1.0);
  for (double c : cosines) CHECK(c > -1.0);
}
