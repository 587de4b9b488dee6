// dus eval: multiple-choice task accuracy with lm-evaluation-harness's semantics
// (train/task_scoring.h) on a Hugging Face model directory, a checkpoint or a run's newest
// checkpoint, in fp32 on the CPU.
#include <torch/types.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>

#include <fmt/format.h>

#include "cli/commands.h"
#include "core/error.h"
#include "core/file_util.h"
#include "core/json.h"
#include "data/task_file.h"
#include "data/tokenizer.h"
#include "model/hf_checkpoint.h"
#include "train/checkpoint.h"
#include "train/recipe.h"
#include "train/task_evaluator.h"

namespace dus {

namespace {

struct LoadedModel {
  Transformer model{nullptr};
  std::string dir;        // the directory the weights came from
  std::string tokenizer;  // what Tokenizer::load reads
};

// A run directory (its newest checkpoint), a checkpoint (its fp32 masters, tokenizer from the
// recipe it was trained with) or a Hugging Face model directory (tokenizer beside the weights).
LoadedModel load_model(const std::string& path, const std::string& tokenizer_flag) {
  namespace fs = std::filesystem;
  LoadedModel out;
  std::optional<LoadedCheckpoint> ck;
  if (fs::exists(path + "/checkpoints")) {
    ck = open_latest_checkpoint(path);
    if (!ck) throw Error(path, "the run has no checkpoint yet");
  } else if (fs::exists(path + "/state.json")) {
    ck = open_checkpoint(path);
  }
  if (!ck) {
    out.model = load_hf_model(path);
    out.dir = path;
    out.tokenizer = tokenizer_flag.empty() ? path : tokenizer_flag;
    return out;
  }
  out.dir = ck->dir;
  if (!ck->sharded) {
    out.model = load_hf_model(ck->dir);
  } else {
    ModelInit init;
    init.random = false;
    out.model = Transformer(ModelConfig::from_json(ck->config, ck->dir + "/config.json"), init);
    torch::NoGradGuard no_grad;
    for (auto& [name, t] : hf_tensors(out.model)) t.copy_(checkpoint_tensor(*ck, "master", name));
  }
  if (!tokenizer_flag.empty()) {
    out.tokenizer = tokenizer_flag;
  } else {
    const std::string recipe_path = ck->dir + "/recipe.yaml";
    Recipe recipe = recipe_from_tree(parse_yaml(read_file(recipe_path), recipe_path), recipe_path);
    if (recipe.data.tokenizer.empty())
      throw Error(recipe_path, "the run's recipe names no data.tokenizer", "pass --tokenizer PATH");
    out.tokenizer = recipe.data.tokenizer;
  }
  return out;
}

json::Value number_or_null(double v) {
  return std::isnan(v) ? json::Value() : json::Value(v);
}

int run_eval(const ParsedArgs& args) {
  // --tasks repeats, and each value may list several files separated by commas.
  std::vector<TaskSource> sources;
  const int64_t limit = args.get_int("limit");
  for (const std::string& value : args.all("tasks")) {
    size_t pos = 0;
    while (pos <= value.size()) {
      const size_t comma = std::min(value.find(',', pos), value.size());
      if (comma > pos) sources.push_back({value.substr(pos, comma - pos), limit});
      pos = comma + 1;
    }
  }
  if (sources.empty()) throw Error("dus eval", "--tasks names no file");
  LoglikelihoodOptions ll;
  ll.batch = args.get_int("batch");
  if (ll.batch < 1) throw Error("dus eval --batch", "must be at least 1");
  // Read every task first: a malformed file fails before the model is loaded.
  TaskSet tasks = TaskSet::read(sources);
  LoadedModel loaded = load_model(args.positionals()[0], args.get_or("tokenizer", ""));
  ll.max_length = loaded.model->config().max_position_embeddings;
  const Tokenizer tokenizer = Tokenizer::load(loaded.tokenizer);
  tasks.tokenize(tokenizer, loaded.model->config().vocab_size);
  fmt::print("model {}  tokenizer {} ({})  batch {}  fp32 cpu\n", loaded.dir, tokenizer.path(),
             tasks.add_bos() ? "BOS first" : "no BOS", ll.batch);

  json::Array task_reports;
  fmt::print("{:<24} {:>7} {:>17} {:>17} {:>10}\n", "task", "items", "acc", "acc_norm", "tokens/s");
  const std::vector<TaskResult> results = score_tasks(*loaded.model, tasks, ll);
  for (size_t t = 0; t < results.size(); ++t) {
    const TaskSet::Task& task = tasks.tasks()[t];
    const TaskResult& result = results[t];
    json::Array samples;
    for (size_t i = 0; i < task.items.size(); ++i) {
      const TaskItem& item = task.items[i];
      const ItemResult& r = result.items[i];
      json::Array lls;
      for (double v : r.loglik) lls.emplace_back(v);
      samples.emplace_back(json::Object{{"id", item.id},
                                        {"gold", item.gold},
                                        {"loglik", lls},
                                        {"pred", r.pred},
                                        {"pred_norm", r.pred_norm},
                                        {"acc", r.acc},
                                        {"acc_norm", r.acc_norm}});
    }
    const TaskMetrics& m = result.metrics;
    const double tokens_per_s =
        result.seconds > 0 ? static_cast<double>(result.stats.input_tokens) / result.seconds : 0;
    fmt::print("{:<24} {:7} {:8.4f} ± {:6.4f} {:8.4f} ± {:6.4f} {:10.0f}\n", task.name, m.items,
               m.acc, m.acc_stderr, m.acc_norm, m.acc_norm_stderr, tokens_per_s);
    task_reports.emplace_back(json::Object{{"task", task.name},
                                           {"file", task.file},
                                           {"items", m.items},
                                           {"acc", m.acc},
                                           {"acc_stderr", number_or_null(m.acc_stderr)},
                                           {"acc_norm", m.acc_norm},
                                           {"acc_norm_stderr", number_or_null(m.acc_norm_stderr)},
                                           {"seconds", result.seconds},
                                           {"tokens_per_second", tokens_per_s},
                                           {"samples", samples}});
  }
  const std::string out = args.get_or("out", "");
  if (!out.empty()) {
    json::Value report(json::Object{{"model", loaded.dir},
                                    {"tokenizer", tokenizer.path()},
                                    {"batch", ll.batch},
                                    {"add_bos", tasks.add_bos()},
                                    {"tasks", task_reports}});
    std::ofstream f(out, std::ios::binary);
    if (!f) throw Error(out, "cannot write the report");
    f << json::dump(report, 2) << "\n";
    if (!f) throw Error(out, "writing the report failed");
    fmt::print("wrote {}\n", out);
  }
  return 0;
}

}  // namespace

Command eval_command() {
  return {
      "eval",
      [] {
        return ArgParser("eval",
                         "Multiple-choice task accuracy (acc, acc_norm) as lm-evaluation-harness "
                         "scores it.")
            .positional("MODEL",
                        "a Hugging Face model directory, a checkpoint or a run directory (its "
                        "newest checkpoint)")
            .option(
                "tasks", "FILE",
                "JSONL task files, comma-separated: {\"context\", \"choices\", \"gold\"} per line",
                std::nullopt, true)
            .option("limit", "N", "score only the first N items of each task (0: all)",
                    std::string("0"))
            .option("batch", "B", "sequences per forward", std::string("8"))
            .option("tokenizer", "PATH",
                    "tokenizer file or directory (default: the model directory's, or the run "
                    "recipe's data.tokenizer)")
            .option("out", "FILE",
                    "write a JSON report: per task metrics and per item log-likelihoods");
      },
      run_eval};
}

}  // namespace dus
