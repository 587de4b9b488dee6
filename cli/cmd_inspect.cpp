// dus inspect DIR: what a Hugging Face model directory holds, without running it.
#include <sys/stat.h>

#include <cstdio>
#include <map>

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
  std::printf("model          %s (%s)\n", dir.c_str(), c.architecture.c_str());
  std::printf("layers         %lld\n", static_cast<long long>(c.num_hidden_layers));
  std::printf("hidden         %lld (intermediate %lld)\n", static_cast<long long>(c.hidden_size),
              static_cast<long long>(c.intermediate_size));
  std::printf("heads          %lld query, %lld key/value, head_dim %lld\n",
              static_cast<long long>(c.num_attention_heads),
              static_cast<long long>(c.num_key_value_heads), static_cast<long long>(c.head_dim));
  std::printf("vocab          %lld (%s embeddings)\n", static_cast<long long>(c.vocab_size),
              c.tie_word_embeddings ? "tied" : "untied");
  std::printf("rope_theta     %g, rms_norm_eps %g, sliding_window %s\n", c.rope_theta,
              c.rms_norm_eps, c.sliding_window ? std::to_string(*c.sliding_window).c_str() : "none");
  std::printf("parameters     %s (non-embedding %s), from config\n",
              with_commas(c.parameter_count()).c_str(),
              with_commas(c.non_embedding_parameter_count()).c_str());
  if (auto provenance =
          Provenance::from_config(c, dir.size() > 5 && dir.compare(dir.size() - 5, 5, ".json") == 0
                                         ? dir
                                         : dir + "/config.json")) {
    std::printf("up-scaled      %s\n", provenance->plan.describe().c_str());
    for (const Seam& s : provenance->seams()) std::printf("  seam %s\n", s.name().c_str());
  }
  if (auto request = plan_request_from_args(args, "dus inspect")) {
    // Parameters after a depth up-scaling plan, from the config alone.
    LayerPlan plan = make_plan(*request, c.num_hidden_layers, "dus inspect");
    std::printf("after plan     %s\n", plan.describe().c_str());
    std::printf("parameters     %s -> %s after scaling, from config\n",
                with_commas(c.parameter_count()).c_str(),
                with_commas(scaled_parameter_count(c, plan)).c_str());
  }
  // A config alone (a config.json path, or a directory without weights) is enough for the
  // counts above.
  const bool config_only =
      (dir.size() > 5 && dir.compare(dir.size() - 5, 5, ".json") == 0) ||
      (!exists(dir + "/model.safetensors") && !exists(dir + "/model.safetensors.index.json"));
  if (config_only) {
    std::printf("weights        none (config only)\n");
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
  std::printf("tensors        %zu holding %s values%s\n", ckpt.names().size(),
              with_commas(total).c_str(),
              total == c.parameter_count() ? " (matches the config)" : " (differs from the config!)");
  for (const auto& [dtype, counts] : by_dtype)
    std::printf("  dtype %-7s %lld tensors, %s values\n", dtype.c_str(),
                static_cast<long long>(counts.first), with_commas(counts.second).c_str());
  std::printf("shards         %zu\n", ckpt.files().size());
  for (const auto& f : ckpt.files()) {
    struct stat st {};
    ::stat(f.path().c_str(), &st);
    std::printf("  %-40s %4zu tensors  %s\n", f.path().substr(f.path().find_last_of('/') + 1).c_str(),
                f.entries().size(), human_bytes(static_cast<double>(st.st_size)).c_str());
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
