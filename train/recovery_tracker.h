// Loss-recovery tracking of an up-scaled model:
//   recovery(t) = (scaled_loss_0 - eval_loss(t)) / (scaled_loss_0 - base_loss)
// 0 right after scaling, 1 when the eval loss is back at the base model's. The tracker keeps
// the evaluation history, the milestones (first evaluation at which recovery reached 0.5, 0.9,
// 1.0, and at which eval_loss went below base_loss), and the seam diagnostics: per-layer
// gradient norms, update ratios and hidden-state cosines, with every layer labelled by its
// origin (copy, base layer) so the seam layers can be found in the numbers. It saves to and
// restores from JSON exactly (checkpoint state.json), and writes the run's recovery.json.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "core/json.h"
#include "train/task_recovery.h"

namespace dus {

struct Provenance;

/// Per-layer diagnostics at one evaluation (one entry per decoder layer). NaN: not measured.
struct LayerStats {
  static constexpr double kNotMeasured = std::numeric_limits<double>::quiet_NaN();
  double grad_norm = kNotMeasured;      ///< L2 norm of all the layer's parameter gradients
  double update_ratio = kNotMeasured;   ///< ||W_after - W_before|| / ||W_before||, all params
  double hidden_cosine = kNotMeasured;  ///< mean over tokens of cosine(layer in, layer out)
};

/// The layers of the trained model, named by origin, and the seams between copies.
struct LayerLabels {
  struct SeamMark {
    int64_t layer = 0;  ///< first layer after the seam
    std::string name;   ///< "23|24: copy 1 layer 23 -> copy 2 layer 8"
  };
  std::vector<std::string> layers;  ///< "copy 2, base layer 8"; "layer 5" without scaling
  std::vector<SeamMark> seams;

  /// From the scaling module's provenance of an up-scaled model.
  static LayerLabels from_provenance(const Provenance& provenance);
  /// A model that was not up-scaled: "layer i", no seams.
  static LayerLabels plain(int64_t num_layers);
};

/// The milestones, in this order: recovery reached 0.5, 0.9, 1.0; eval_loss < base_loss.
inline constexpr const char* kMilestoneNames[] = {"recovery_0.5", "recovery_0.9", "recovery_1.0",
                                                  "beat_base"};
inline constexpr int kNumMilestones = 4;

class RecoveryTracker {
 public:
  struct Point {  ///< where a milestone was first reached
    int64_t step = 0;
    int64_t tokens = 0;
  };
  struct Eval {  ///< one evaluation
    int64_t step = 0;
    int64_t tokens = 0;  ///< training tokens seen when evaluated
    double eval_loss = 0;
    std::vector<double> grad_norm;  ///< per layer, for the heat map; empty when not measured
  };

  /// base_loss: the base model's held-out loss before scaling (absent when training from
  /// scratch); scaled_loss_0: the same right after scaling (absent without scaling).
  RecoveryTracker(std::optional<double> base_loss, std::optional<double> scaled_loss_0,
                  LayerLabels labels);
  RecoveryTracker() = default;

  /// (scaled_loss_0 - eval_loss) / (scaled_loss_0 - base_loss); absent when either loss is
  /// absent or scaling did not raise the loss (scaled_loss_0 - base_loss <= 1e-6 * max(1,
  /// |base_loss|): block expansion preserves the function, so there is nothing to recover).
  std::optional<double> recovery(double eval_loss) const;

  /// Records one evaluation; `layers` (one per decoder layer, or empty) becomes the latest
  /// seam diagnostics and its grad norms join the history. Returns the names of the
  /// milestones first reached at this evaluation (first crossing only: a later dip below the
  /// threshold changes nothing). Steps must increase.
  std::vector<std::string> observe(int64_t step, int64_t tokens, double eval_loss,
                                   const std::vector<LayerStats>& layers = {});

  /// Bits per byte of the held-out text per unit of eval loss (nats per token): eval tokens /
  /// (ln 2 x UTF-8 bytes of the text they encode); the eval set is fixed, so bpb is this times
  /// the loss. Absent without a tokenizer: then no bpb is reported anywhere. Not part of
  /// to_json (the trainer measures it at every start, resume included).
  void set_bpb_per_loss(std::optional<double> scale) { bpb_per_loss_ = scale; }
  /// loss x bpb_per_loss; absent without it or without the loss.
  std::optional<double> bpb(const std::optional<double>& loss) const;

  const std::optional<double>& base_loss() const { return base_loss_; }
  const std::optional<double>& scaled_loss_0() const { return scaled_loss_0_; }
  const LayerLabels& labels() const { return labels_; }
  const std::vector<Eval>& history() const { return history_; }
  /// Milestone i (kMilestoneNames order), absent until reached.
  const std::optional<Point>& milestone(int i) const { return milestones_.at(i); }
  /// The per-layer stats of the latest evaluation that had them, and its step.
  const std::vector<LayerStats>& latest_layers() const { return latest_layers_; }
  int64_t latest_layers_step() const { return latest_layers_step_; }
  /// Task accuracy across the seam (eval.tasks); empty without tasks.
  TaskRecovery& tasks() { return tasks_; }
  const TaskRecovery& tasks() const { return tasks_; }

  /// Everything, for the checkpoint's state.json; from_json restores it bit for bit
  /// (non-finite numbers are written as null and read back as NaN).
  json::Value to_json() const;
  static RecoveryTracker from_json(const json::Value& value, const std::string& source);

  /// to_json() plus what a reader wants: final_eval_loss, final_recovery, and the stats of
  /// the layers either side of each seam; with a bpb_per_loss also base_bpb, scaled_bpb_0,
  /// final_eval_bpb (null when their loss is) and a bpb in each history entry. Schema:
  ///   {base_loss, base_bpb?, scaled_loss_0, scaled_bpb_0?, final_eval_loss, final_eval_bpb?,
  ///    final_recovery,
  ///    milestones: {recovery_0.5: {step, tokens} | null, ..., beat_base: ...},
  ///    seam: {layers: [label], seams: [{layer, name, before: {layer, origin, grad_norm,
  ///           update_ratio, hidden_cosine}, after: {...}}], latest: {step, grad_norm: [..],
  ///           update_ratio: [..], hidden_cosine: [..]}},
  ///    history: [{step, tokens, eval_loss, bpb?, recovery?, grad_norm: [..]}],
  ///    tasks?: TaskRecovery::summary_json(), task_eval_seconds?}  (with eval.tasks only)
  json::Value summary_json() const;
  /// Writes summary_json() to `path` (recovery.json) atomically, pretty-printed.
  void write_summary(const std::string& path) const;
  /// A few lines for the console / `dus report`, from a summary_json() (recovery.json).
  static std::string summary_text(const json::Value& summary);

 private:
  std::optional<double> base_loss_, scaled_loss_0_;
  std::optional<double> bpb_per_loss_;
  LayerLabels labels_;
  std::vector<Eval> history_;
  std::vector<std::optional<Point>> milestones_ = std::vector<std::optional<Point>>(kNumMilestones);
  std::vector<LayerStats> latest_layers_;
  int64_t latest_layers_step_ = -1;
  TaskRecovery tasks_;
};

}  // namespace dus
