// dus inspect DIR: what a Hugging Face model directory holds, without running it.
#include <sys/stat.h>

#include <cstdio>
#include <map>

#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/plan_flags.h"
#include "core/text_format.h"
#include "model/model_config.h"
#include "model/safetensors.h"
#include "scaling/parameter_count.h"
#include "scaling/provenance.h"

namespace dus {

namespace {

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

int run_inspect(const ParsedArgs& args) {
  const std::string dir = args.positionals()[0];
  ModelConfig c = ModelConfig::load(dir);
  fmt::print("model          {} ({})\n", dir, c.architecture);
  fmt::print("layers         {}\n", c.num_hidden_layers);
  fmt::print("hidden         {} (intermediate {})\n", c.hidden_size, c.intermediate_size);
  fmt::print("heads          {} query, {} key/value, head_dim {}\n", c.num_attention_heads,
             c.num_key_value_heads, c.head_dim);
  fmt::print("vocab          {} ({} embeddings)\n", c.vocab_size,
             c.tie_word_embeddings ? "tied" : "untied");
  fmt::print("rope_theta     {:g}, rms_norm_eps {:g}, sliding_window {}\n", c.rope_theta,
             c.rms_norm_eps, c.sliding_window ? std::to_string(*c.sliding_window) : "none");
  fmt::print("parameters     {} (non-embedding {}), from config\n",
             with_commas(c.parameter_count()), with_commas(c.non_embedding_parameter_count()));
  if (auto provenance =
          Provenance::from_config(c, dir.size() > 5 && dir.compare(dir.size() - 5, 5, ".json") == 0
                                         ? dir
                                         : dir + "/config.json")) {
    fmt::print("up-scaled      {}\n", provenance->plan.describe());
    for (const Seam& s : provenance->seams()) fmt::print("  seam {}\n", s.name());
  }
  if (auto request = plan_request_from_args(args, "dus inspect")) {
    // Parameters after a depth up-scaling plan, from the config alone.
    LayerPlan plan = make_plan(*request, c.num_hidden_layers, "dus inspect");
    fmt::print("after plan     {}\n", plan.describe());
    fmt::print("parameters     {} -> {} after scaling, from config\n",
               with_commas(c.parameter_count()), with_commas(scaled_parameter_count(c, plan)));
  }
  // A config alone (a config.json path, or a directory without weights) is enough for the
  // counts above.
  const bool config_only =
      (dir.size() > 5 && dir.compare(dir.size() - 5, 5, ".json") == 0) ||
      (!exists(dir + "/model.safetensors") && !exists(dir + "/model.safetensors.index.json"));
  if (config_only) {
    fmt::print("weights        none (config only)\n");
    return 0;
  }

  SafetensorsCheckpoint ckpt = SafetensorsCheckpoint::open_dir(dir);
  std::map<std::string, std::pair<int64_t, int64_t>> by_dtype;  // dtype -> (tensors, elements)
  int64_t total = 0;
  for (const auto& name : ckpt.names()) {
    const StTensorEntry& e = ckpt.entry(name);
    int64_t n = 1;
    for (int64_t d : e.shape) n *= d;
    auto& slot = by_dtype[st_dtype_name(e.dtype)];
    slot.first += 1;
    slot.second += n;
    total += n;
  }
  fmt::print(
      "tensors        {} holding {} values{}\n", ckpt.names().size(), with_commas(total),
      total == c.parameter_count() ? " (matches the config)" : " (differs from the config!)");
  for (const auto& [dtype, counts] : by_dtype)
    fmt::print("  dtype {:<7} {} tensors, {} values\n", dtype, counts.first,
               with_commas(counts.second));
  fmt::print("shards         {}\n", ckpt.files().size());
  for (const auto& f : ckpt.files()) {
    struct stat st {};
    ::stat(f.path().c_str(), &st);
    fmt::print("  {:<40} {:4} tensors  {}\n", f.path().substr(f.path().find_last_of('/') + 1),
               f.entries().size(), human_bytes(static_cast<double>(st.st_size)));
  }
  return 0;
}

}  // namespace

Command inspect_command() {
  return {"inspect",
          [] {
            ArgParser p("inspect", "Print a model directory's config, parameter count, dtypes and shards.");
            p.positional("DIR", "a Hugging Face model directory (config.json + safetensors), or a config.json");
            return add_plan_flags(p);
          },
          run_inspect};
}

}  // namespace dus
