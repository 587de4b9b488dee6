#include "train/checkpoint.h"

#include <fmt/format.h>

#include "data/packed_loader.h"
#include "train/fault_injection.h"
#include "train/recovery_tracker.h"

#include <ATen/ops/cat.h>
#include <ATen/ops/zeros.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <set>

#include "core/error.h"
#include "core/file_util.h"
#include "model/model_config.h"

namespace dus {

namespace fs = std::filesystem;

namespace {

std::string step_name(int64_t step) {
  return fmt::format("step_{:08}", step);
}

bool is_step_dir_name(const std::string& name) {
  return name.size() == 13 && name.compare(0, 5, "step_") == 0 &&
         name.find_first_not_of("0123456789", 5) == std::string::npos;
}

}  // namespace

std::vector<std::string> list_checkpoints(const std::string& run_dir) {
  std::vector<std::string> out;
  const std::string root = run_dir + "/checkpoints";
  if (!fs::is_directory(root)) return out;
  for (const auto& entry : fs::directory_iterator(root)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_directory() && is_step_dir_name(name)) out.push_back(root + "/" + name);
  }
  std::sort(out.begin(), out.end());  // zero-padded: lexical order is step order
  return out;
}

std::string begin_checkpoint(const std::string& run_dir, int64_t step) {
  const std::string root = run_dir + "/checkpoints";
  fs::create_directories(root);
  const std::string tmp_dir = root + "/" + step_name(step) + ".tmp";
  // Leftovers of killed saves and prunes: one process saves into a run directory at a time.
  std::vector<std::string> leftovers;
  for (const auto& entry : fs::directory_iterator(root)) {
    const std::string name = entry.path().filename().string();
    if (name.size() == 17 && is_step_dir_name(name.substr(0, 13)) && name.substr(13) == ".tmp")
      leftovers.push_back(entry.path().string());
  }
  for (const auto& dir : leftovers) remove_tree(dir);
  fs::create_directories(tmp_dir);
  return tmp_dir;
}

std::string commit_checkpoint(const std::string& run_dir, const CheckpointContents& c,
                              int64_t keep) {
  const std::string root = run_dir + "/checkpoints";
  const std::string final_dir = root + "/" + step_name(c.step);
  const std::string tmp_dir = final_dir + ".tmp";
  if (!c.model.empty())
    write_safetensors(tmp_dir + "/model.safetensors", c.model, {{"step", std::to_string(c.step)}});
  if (!c.optimizer.empty())
    write_safetensors(tmp_dir + "/optimizer.safetensors", c.optimizer,
                      {{"step", std::to_string(c.step)}});
  write_file_atomic(tmp_dir + "/config.json", json::dump(c.config, 2) + "\n");
  write_file_atomic(tmp_dir + "/recipe.yaml", c.recipe_yaml);
  // state.json last: its presence marks the directory complete even before the rename.
  write_file_atomic(tmp_dir + "/state.json", json::dump(c.state, 2) + "\n");
  fsync_path(tmp_dir);
  fault_point("save");
  remove_tree(final_dir);  // re-saving the same step (resume at a checkpoint boundary)
  fs::rename(tmp_dir, final_dir);
  fault_point("rename");
  fsync_path(root);
  // From here the checkpoint is complete: what follows is bookkeeping whose failure (a full
  // disk) costs nothing a resume needs, so it warns instead of failing the save.
  try {
    write_file_atomic(root + "/latest", step_name(c.step) + "\n");
    auto all = list_checkpoints(run_dir);
    // Renamed to the tmp name first: a kill in the middle of the removal leaves a leftover that
    // the next save removes, never a half-deleted step_N.
    for (size_t i = 0; i + static_cast<size_t>(keep) < all.size(); ++i) {
      fs::rename(all[i], all[i] + ".tmp");
      remove_tree(all[i] + ".tmp");
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "warning: checkpoint {} is complete, but: {}\n", final_dir, e.what());
  }
  return final_dir;
}

void abandon_checkpoint(const std::string& run_dir, int64_t step) {
  const std::string tmp_dir = run_dir + "/checkpoints/" + step_name(step) + ".tmp";
  try {
    remove_tree(tmp_dir);  // its space, on a full disk, is what the next save needs
  } catch (const std::exception& e) {
    fmt::print(stderr, "warning: {}\n", e.what());
  }
}

std::string save_checkpoint(const std::string& run_dir, const CheckpointContents& c, int64_t keep) {
  begin_checkpoint(run_dir, c.step);
  return commit_checkpoint(run_dir, c, keep);
}

std::string checkpoint_dir_name(int64_t step) {
  return step_name(step);
}

std::optional<at::Tensor> LoadedCheckpoint::rng_state() const {
  if (sharded) {
    if (!shards.empty() && shards[0].contains("rng.cpu")) return shards[0].tensor("rng.cpu");
    return std::nullopt;
  }
  if (optimizer.contains("rng.cpu")) return optimizer.tensor("rng.cpu");
  return std::nullopt;
}

at::Tensor checkpoint_flat_range(const LoadedCheckpoint& ck, const std::string& kind,
                                 const FlatLayout& layout, int64_t lo, int64_t hi) {
  std::vector<at::Tensor> parts;
  const int64_t total = layout.empty() ? 0 : layout.back().offset + layout.back().numel;
  if (ck.sharded) {
    const int64_t ck_total =
        ck.layout.empty() ? 0 : ck.layout.back().offset + ck.layout.back().numel;
    if (ck_total != total || ck.layout.size() != layout.size())
      throw Error(ck.dir + "/state.json: zero1",
                  "the checkpoint's parameter layout differs from the model's");
    for (size_t i = 0; i < ck.shards.size(); ++i) {
      const auto [b, e] = ck.ranges[i];
      const int64_t s = std::max(lo, b), t = std::min(std::min(hi, e), total);
      if (s < t) parts.push_back(ck.shards[i].tensor(kind).narrow(0, s - b, t - s));
    }
  } else {
    for (const auto& p : layout) {
      const int64_t s = std::max(lo, p.offset), t = std::min(hi, p.offset + p.numel);
      if (s < t)
        parts.push_back(
            checkpoint_tensor(ck, kind, p.name).reshape({-1}).narrow(0, s - p.offset, t - s));
    }
  }
  if (hi > total) parts.push_back(at::zeros({hi - std::max(lo, total)}, at::kFloat));
  return parts.empty() ? at::zeros({0}, at::kFloat) : at::cat(parts).to(at::kFloat);
}

at::Tensor checkpoint_tensor(const LoadedCheckpoint& ck, const std::string& kind,
                             const std::string& name) {
  if (ck.sharded) {
    for (const auto& p : ck.layout)
      if (p.name == name) {
        FlatLayout one = ck.layout;  // ranges are absolute in the checkpoint's own layout
        return checkpoint_flat_range(ck, kind, one, p.offset, p.offset + p.numel).reshape(p.shape);
      }
    throw Error(ck.dir, "no parameter '" + name + "' in the checkpoint");
  }
  if (kind == "master") return ck.model.tensor(name);
  return ck.optimizer.tensor(kind + "." + name);
}

namespace {

LoadedCheckpoint open_sharded_checkpoint(LoadedCheckpoint ck, const json::Value& manifest) {
  const std::string where = ck.dir + "/state.json: zero1";
  ck.sharded = true;
  const Zero1Manifest m = zero1_manifest_from_json(manifest, where);
  ck.layout = m.params;
  for (const Zero1Shard& sh : m.shards) {
    const std::string file = ck.dir + "/" + sh.file;
    if (!fs::exists(file)) throw Error(ck.dir, "incomplete checkpoint: no " + sh.file);
    SafetensorsFile f = SafetensorsFile::open(file);
    for (const char* kind : {"master", "exp_avg", "exp_avg_sq"})
      if (!f.contains(kind) || f.entry(kind).shape != std::vector<int64_t>{sh.end - sh.begin})
        throw Error(file, std::string("missing or mis-sized tensor '") + kind + "'");
    ck.shards.push_back(std::move(f));
    ck.ranges.emplace_back(sh.begin, sh.end);
  }
  return ck;
}

}  // namespace

namespace {

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i)
    fmt::format_to(std::back_inserter(out), "{}{}", i ? ", " : "", shape[i]);
  return out + "]";
}

// Checks `file` holds exactly the model's weights (names and shapes from its config.json) as
// fp32 tensors named prefix + name: a checkpoint that would fail, or load wrongly, at resume is
// rejected while the previous one can still be chosen.
void check_weights(const SafetensorsFile& file, const ModelConfig& config,
                   const std::string& prefix) {
  std::set<std::string> expected;
  for (const auto& [name, shape] : config.tensor_shapes()) {
    const std::string key = prefix + name;
    expected.insert(key);
    if (!file.contains(key)) throw Error(file.path(), "missing tensor '" + key + "'");
    const StTensorEntry& e = file.entry(key);
    if (e.shape != shape)
      throw Error(file.path() + ": tensor '" + key + "'",
                  "shape " + shape_text(e.shape) + ", config.json implies " + shape_text(shape));
    if (e.dtype != StDtype::F32)
      throw Error(file.path() + ": tensor '" + key + "'", "expected F32 (fp32 state)");
  }
  for (const auto& e : file.entries())
    if (e.name.compare(0, prefix.size(), prefix) == 0 && !expected.count(e.name))
      throw Error(file.path(), "unexpected tensor '" + e.name + "' (not a weight of config.json)");
}

}  // namespace

LoadedCheckpoint open_checkpoint(const std::string& dir) {
  for (const char* f : {"state.json", "config.json", "recipe.yaml"})
    if (!fs::exists(dir + "/" + f)) throw Error(dir, std::string("incomplete checkpoint: no ") + f);
  json::Value state = json::parse_file(dir + "/state.json");
  // Every key is checked here, the loader position and the recovery history included: a damaged
  // state.json makes this checkpoint invalid (and the previous one is used), never a crash
  // later in the resume.
  const TrainState train = TrainState::from_json(state, dir + "/state.json");
  LoaderState::from_json(train.loader, dir + "/state.json: loader");
  RecoveryTracker::from_json(train.recovery, dir + "/state.json: recovery");
  const json::Value* step = state.find("step");
  if (!train.zero1.is_null()) {
    const json::Value* manifest = &train.zero1;
    LoadedCheckpoint ck;
    ck.dir = dir;
    ck.train = train;
    ck.step = step->as_int(dir + "/state.json: step");
    ck.config = json::parse_file(dir + "/config.json");
    ck.state = state;
    const ModelConfig config = ModelConfig::from_json(ck.config, dir + "/config.json");
    LoadedCheckpoint opened = open_sharded_checkpoint(std::move(ck), *manifest);
    const auto shapes = config.tensor_shapes();
    bool same = shapes.size() == opened.layout.size();
    for (size_t i = 0; same && i < shapes.size(); ++i)
      same = shapes[i].first == opened.layout[i].name && shapes[i].second == opened.layout[i].shape;
    if (!same)
      throw Error(dir + "/state.json: zero1.params",
                  "the sharded parameters differ from the weights config.json implies");
    return opened;
  }
  for (const char* f : {"model.safetensors", "optimizer.safetensors"})
    if (!fs::exists(dir + "/" + f)) throw Error(dir, std::string("incomplete checkpoint: no ") + f);
  LoadedCheckpoint ck;
  ck.dir = dir;
  ck.state = state;
  ck.train = train;
  ck.config = json::parse_file(dir + "/config.json");
  const ModelConfig config = ModelConfig::from_json(ck.config, dir + "/config.json");
  ck.model = SafetensorsFile::open(dir + "/model.safetensors");
  ck.optimizer = SafetensorsFile::open(dir + "/optimizer.safetensors");
  ck.step = step->as_int(dir + "/state.json: step");
  // Every weight, and both of its moments: a checkpoint with some missing, or of another
  // shape, cannot resume exactly.
  check_weights(ck.model, config, "");
  check_weights(ck.optimizer, config, "exp_avg.");
  check_weights(ck.optimizer, config, "exp_avg_sq.");
  return ck;
}

std::optional<LoadedCheckpoint> open_latest_checkpoint(const std::string& run_dir) {
  auto all = list_checkpoints(run_dir);
  if (all.empty()) return std::nullopt;
  // Every step directory from the newest down. A directory under its final name is complete
  // (the rename is the save's last act), so the newest valid one is the latest state; the
  // `latest` file is for readers and may lag it when the disk refused that small write.
  const std::vector<std::string> order(all.rbegin(), all.rend());
  for (size_t i = 0; i < order.size(); ++i) {
    try {
      LoadedCheckpoint ck = open_checkpoint(order[i]);
      return ck;
    } catch (const Error& e) {
      fmt::print(stderr, "warning: skipping checkpoint {}: {}\n", order[i], e.what());
      if (i + 1 < order.size())
        fmt::print(stderr, "warning: falling back to the previous checkpoint\n");
    }
  }
  throw Error(run_dir + "/checkpoints", "no checkpoint is complete and valid",
              "the run cannot resume; start it again");
}

}  // namespace dus
