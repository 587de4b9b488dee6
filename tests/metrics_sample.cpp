// Writes sample metrics with the trainer's own writers, for the Python tests to read back with
// the reference readers (tensorboard's EventAccumulator) and scripts/plot_recovery.py:
//   metrics_sample tensorboard DIR   event files: a run killed after step 8, resumed from a
//                                    checkpoint at step 6 (see test_tensorboard_events.py)
//   metrics_sample run-dir DIR       metrics.jsonl + recovery.json of an up-scaled run
//   metrics_sample run-dir-plain DIR the same for a run without scaling (no base_loss)
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>

#include "core/error.h"
#include "scaling/layer_plan.h"
#include "scaling/provenance.h"
#include "train/metrics_log.h"
#include "train/recovery_tracker.h"
#include "train/tensorboard_writer.h"

namespace {

using dus::json::Object;
using dus::json::Value;

void write_tensorboard(const std::string& dir) {
  {
    dus::TensorBoardWriter run(dir);  // the first process, killed after logging step 8
    for (int64_t step = 0; step <= 8; ++step) {
      run.add_scalar("train/loss", 0.1 * step + 0.01, step, 1700000000.0 + step);
      if (step % 4 == 0) run.add_scalar("eval/loss", 5.0 - 0.5 * step, step, 1700000000.5 + step);
    }
    run.flush();
  }
  dus::TensorBoardWriter resumed(dir);  // resumed from the checkpoint at step 6
  resumed.mark_restart(7, 1700000100.0);
  for (int64_t step = 7; step <= 10; ++step) {
    resumed.add_scalar("train/loss", 100.0 + step, step, 1700000100.0 + step);
    if (step % 4 == 0) resumed.add_scalar("eval/loss", 50.0 - step, step, 1700000100.5 + step);
  }
  // Values that are not exact in float32, extremes, a step beyond 32 bits, a UTF-8 tag.
  const double values[] = {0.1, -3.5, 1e-30, 3.4e38};
  for (int i = 0; i < 4; ++i) resumed.add_scalar("misc/values", values[i], 11 + i);
  resumed.add_scalar("misc/big_step", 0.5, int64_t{1} << 40);
  resumed.add_scalar(
      "misc/gr\xc3\xb6\xc3\x9f"
      "e",
      7.0, 20);
  resumed.flush();
}

void write_run_dir(const std::string& dir, bool scaled) {
  const dus::Provenance provenance{dus::dus_plan(6, 2)};  // 8 layers, seam between 3 and 4
  const auto labels =
      scaled ? dus::LayerLabels::from_provenance(provenance) : dus::LayerLabels::plain(6);
  const int64_t n_layers = static_cast<int64_t>(labels.layers.size());
  const std::optional<double> base = scaled ? std::optional<double>(2.0) : std::nullopt;
  const std::optional<double> scaled_0 = scaled ? std::optional<double>(3.2) : std::nullopt;
  dus::RecoveryTracker tracker(base, scaled_0, labels);
  dus::MetricsLog log(dir + "/metrics.jsonl");
  const int64_t tokens_per_step = 4096;
  for (int64_t step = 1; step <= 120; ++step) {
    const int64_t tokens = step * tokens_per_step;
    const double loss = 1.8 + 1.5 * std::exp(-step / 30.0) + 0.05 * std::sin(step * 0.7);
    log.append(Value(Object{{"kind", Value("train")},
                            {"step", Value(step)},
                            {"tokens", Value(tokens)},
                            {"loss", Value(static_cast<double>(static_cast<float>(loss)))},
                            {"lr", Value(3e-4)},
                            {"grad_norm", Value(1.0 / std::sqrt(static_cast<double>(step)))}}));
    if (step % 10 != 0) continue;
    const double eval_loss = 1.85 + 1.4 * std::exp(-step / 30.0);
    std::vector<dus::LayerStats> layers;
    for (int64_t i = 0; i < n_layers; ++i) {
      const bool at_seam = scaled && (i == 3 || i == 4);
      layers.push_back({(at_seam ? 5.0 : 1.0) * std::exp(-step / 60.0) * (1 + 0.1 * i),
                        1e-4 * (1 + 0.05 * i), 0.9 - 0.01 * i});
    }
    tracker.observe(step, tokens, eval_loss, layers);
    Value record(Object{{"kind", Value("eval")},
                        {"step", Value(step)},
                        {"tokens", Value(tokens)},
                        {"eval_loss", Value(eval_loss)}});
    const auto r = tracker.recovery(eval_loss);
    record.set("recovery", r ? Value(*r) : Value());
    log.append(record);
  }
  tracker.write_summary(dir + "/recovery.json");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: metrics_sample tensorboard|run-dir|run-dir-plain DIR\n");
    return 2;
  }
  try {
    const std::string mode = argv[1], dir = argv[2];
    if (mode == "tensorboard") {
      write_tensorboard(dir);
    } else if (mode == "run-dir" || mode == "run-dir-plain") {
      write_run_dir(dir, mode == "run-dir");
    } else {
      std::fprintf(stderr, "unknown mode %s\n", mode.c_str());
      return 2;
    }
  } catch (const dus::Error& e) {
    std::fprintf(stderr, "error: %s: %s\n", e.where().c_str(), e.problem().c_str());
    return 1;
  }
  return 0;
}
