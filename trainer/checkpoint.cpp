#include "trainer/checkpoint.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "model/error.h"
#include "model/file_util.h"

namespace dus {

namespace fs = std::filesystem;

namespace {

std::string step_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step_%08lld", static_cast<long long>(step));
  return buf;
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

std::string save_checkpoint(const std::string& run_dir, const CheckpointContents& c, int64_t keep) {
  const std::string root = run_dir + "/checkpoints";
  fs::create_directories(root);
  const std::string final_dir = root + "/" + step_name(c.step);
  const std::string tmp_dir = final_dir + ".tmp";
  remove_tree(tmp_dir);  // a leftover of a killed save
  fs::create_directories(tmp_dir);
  write_safetensors(tmp_dir + "/model.safetensors", c.model, {{"step", std::to_string(c.step)}});
  write_safetensors(tmp_dir + "/optimizer.safetensors", c.optimizer, {{"step", std::to_string(c.step)}});
  write_file_atomic(tmp_dir + "/config.json", json::dump(c.config, 2) + "\n");
  write_file_atomic(tmp_dir + "/recipe.yaml", c.recipe_yaml);
  // state.json last: its presence marks the directory complete even before the rename.
  write_file_atomic(tmp_dir + "/state.json", json::dump(c.state, 2) + "\n");
  fsync_path(tmp_dir);
  remove_tree(final_dir);  // re-saving the same step (resume at a checkpoint boundary)
  fs::rename(tmp_dir, final_dir);
  fsync_path(root);
  write_file_atomic(root + "/latest", step_name(c.step) + "\n");

  auto all = list_checkpoints(run_dir);
  for (size_t i = 0; i + static_cast<size_t>(keep) < all.size(); ++i) remove_tree(all[i]);
  return final_dir;
}

LoadedCheckpoint open_checkpoint(const std::string& dir) {
  for (const char* f : {"state.json", "config.json", "model.safetensors", "optimizer.safetensors"})
    if (!fs::exists(dir + "/" + f)) throw Error(dir, std::string("incomplete checkpoint: no ") + f);
  LoadedCheckpoint ck{dir, 0, json::parse_file(dir + "/state.json"),
                      json::parse_file(dir + "/config.json"),
                      SafetensorsFile::open(dir + "/model.safetensors"),
                      SafetensorsFile::open(dir + "/optimizer.safetensors")};
  const json::Value* step = ck.state.find("step");
  if (!step) throw Error(dir + "/state.json", "missing key \"step\"");
  ck.step = step->as_int(dir + "/state.json: step");
  // Every weight needs both moments: a checkpoint with some missing cannot resume exactly.
  for (const auto& e : ck.model.entries()) {
    for (const char* prefix : {"exp_avg.", "exp_avg_sq."}) {
      const std::string name = prefix + e.name;
      if (!ck.optimizer.contains(name))
        throw Error(dir + "/optimizer.safetensors", "missing tensor '" + name + "'");
      if (ck.optimizer.entry(name).shape != e.shape)
        throw Error(dir + "/optimizer.safetensors: tensor '" + name + "'", "shape differs from the weight's");
    }
  }
  return ck;
}

std::optional<LoadedCheckpoint> open_latest_checkpoint(const std::string& run_dir) {
  auto all = list_checkpoints(run_dir);
  if (all.empty()) return std::nullopt;
  // Try `latest` first, then every complete directory from the newest down.
  std::vector<std::string> order;
  const std::string latest_file = run_dir + "/checkpoints/latest";
  if (fs::exists(latest_file)) {
    std::string name = read_file(latest_file);
    while (!name.empty() && (name.back() == '\n' || name.back() == ' ')) name.pop_back();
    if (is_step_dir_name(name)) order.push_back(run_dir + "/checkpoints/" + name);
  }
  for (auto it = all.rbegin(); it != all.rend(); ++it)
    if (std::find(order.begin(), order.end(), *it) == order.end()) order.push_back(*it);
  for (size_t i = 0; i < order.size(); ++i) {
    try {
      LoadedCheckpoint ck = open_checkpoint(order[i]);
      return ck;
    } catch (const Error& e) {
      std::fprintf(stderr, "warning: skipping checkpoint %s: %s\n", order[i].c_str(), e.what());
      if (i + 1 < order.size())
        std::fprintf(stderr, "warning: falling back to the previous checkpoint\n");
    }
  }
  throw Error(run_dir + "/checkpoints", "no checkpoint is complete and valid",
              "the run cannot resume; start it again");
}

}  // namespace dus
