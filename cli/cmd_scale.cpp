// dus scale: depth up-scale a Hugging Face model and save the result as a Hugging Face model
// (config.json with the "dus" provenance block, sharded safetensors + index, tokenizer files).
// The scaling itself is scaling/depth_upscale.h, in memory; this file is flags, I/O, report.
#include <torch/types.h>

#include <chrono>
#include <cstdio>
#include <filesystem>

#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/plan_flags.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/text_format.h"
#include "model/hf_checkpoint.h"
#include "scaling/depth_upscale.h"
#include "scaling/parameter_count.h"
#include "train/process_stats.h"

namespace dus {

namespace {

namespace fs = std::filesystem;

// Files a tokenizer needs, copied unchanged when the base has them (plus the generation
// defaults, which transformers reads beside the config).
const char* const kTokenizerFiles[] = {"tokenizer.model", "tokenizer.json", "tokenizer_config.json",
                                       "special_tokens_map.json", "generation_config.json"};

int run_scale(const ParsedArgs& args) {
  const std::string base_dir = args.get("base"), out_dir = args.get("out");
  if (fs::exists(out_dir) && fs::equivalent(base_dir, out_dir))
    throw Error("dus scale", "--out must differ from --base (the base is memory-mapped)");
  const ModelConfig config = ModelConfig::load(base_dir);
  const std::optional<PlanRequest> request = plan_request_from_args(args, "dus scale");
  if (!request)
    throw Error("dus scale", "no plan given",
                "pass --m M, --slices LIST or --method block_expansion --every K");
  const LayerPlan plan = make_plan(*request, config.num_hidden_layers, "dus scale");
  const Provenance provenance{plan};
  fmt::print("plan           {}\n", plan.describe());
  for (const Seam& s : provenance.seams())
    if (plan.method != PlanMethod::kBlockExpansion) fmt::print("seam           {}\n", s.name());
  fmt::print("parameters     {} -> {} (from config)\n", with_commas(config.parameter_count()),
             with_commas(scaled_parameter_count(config, plan)));

  // Peak resident memory is measured from here: the process's own start-up (the CUDA
  // libraries alone are ~0.5 GB) is not part of what scaling costs.
  const int64_t rss_start = current_rss_bytes();
  const bool peak_reset = reset_peak_rss();
  auto t0 = std::chrono::steady_clock::now();
  LoadOptions load;  // the file's dtype: no conversion copy
  load.dtype = parse_dtype(config.torch_dtype, base_dir + "/config.json: dtype");
  Transformer base = load_hf_model(base_dir, load);
  fmt::print("loaded         {}, {} layers, {} in {:.1f} s\n", base_dir, base->num_layers(),
             dtype_config_name(load.dtype), seconds_since(t0));
  t0 = std::chrono::steady_clock::now();
  ScaledModel scaled = apply_plan(base, plan);
  const int64_t base_bytes = parameter_bytes(base), scaled_bytes = parameter_bytes(scaled.model);
  const int64_t peak_scale = peak_rss_bytes() - rss_start;
  fmt::print("scaled         {} layers in {:.1f} s\n", scaled.model->num_layers(),
             seconds_since(t0));
  base = nullptr;  // the save needs only the scaled model

  t0 = std::chrono::steady_clock::now();
  SaveOptions save;
  if (args.has("dtype")) save.dtype = parse_dtype(args.get("dtype"), "dus scale --dtype");
  save.max_shard_bytes = parse_byte_size(args.get("shard-size"), "dus scale --shard-size");
  save.metadata = provenance.safetensors_metadata();
  save.extra_config = json::Value(json::Object{{kProvenanceKey, provenance.to_json()}});
  save_hf_model(scaled.model, out_dir, save);
  std::vector<std::string> copied;
  for (const char* name : kTokenizerFiles) {
    const fs::path from = fs::path(base_dir) / name;
    if (!fs::exists(from)) continue;
    fs::copy_file(from, fs::path(out_dir) / name, fs::copy_options::overwrite_existing);
    copied.push_back(name);
  }
  fmt::print("wrote          {} in {:.1f} s (copied:", out_dir, seconds_since(t0));
  for (const auto& c : copied) fmt::print(" {}", c);
  fmt::print("{})\n", copied.empty() ? " none found" : "");

  const int64_t params = scaled.model->config().parameter_count();
  fmt::print("summary        layers {} -> {}, parameters {} -> {}\n", plan.base_layers,
             plan.scaled_layers(), with_commas(config.parameter_count()), with_commas(params));
  fmt::print(
      "memory         peak RSS while loading + scaling: {} above start (base {} + scaled {} = {}; "
      "ratio {:.3f}){}\n",
      human_bytes(static_cast<double>(peak_scale)), human_bytes(static_cast<double>(base_bytes)),
      human_bytes(static_cast<double>(scaled_bytes)),
      human_bytes(static_cast<double>(base_bytes + scaled_bytes)),
      static_cast<double>(peak_scale) / static_cast<double>(base_bytes + scaled_bytes),
      peak_reset ? "" : " [peak not resettable here: includes start-up]");
  // The save writes tensor by tensor from the scaled model (no copy unless --dtype casts).
  const int64_t peak_total = peak_rss_bytes() - rss_start;
  fmt::print("memory         peak RSS over the whole command: {} above start, {} absolute\n",
             human_bytes(static_cast<double>(peak_total)),
             human_bytes(static_cast<double>(peak_rss_bytes())));
  fmt::print("memory_bytes   peak_above_start={} peak_total_above_start={} base={} scaled={}\n",
             peak_scale, peak_total, base_bytes, scaled_bytes);
  return 0;
}

}  // namespace

Command scale_command() {
  return {"scale",
          [] {
            ArgParser p("scale",
                        "Depth up-scale a model (DUS, slices or block expansion) and save it.");
            p.positional("", "", 0)
                .required("base", "DIR", "base Hugging Face model directory")
                .required("out", "DIR", "output directory (config, safetensors, tokenizer files)");
            return add_plan_flags(p)
                .option("dtype", "f32|bf16|f16", "save dtype [default: the base's]")
                .option("shard-size", "SIZE", "largest shard, e.g. 5GB, 200MB", std::string("5GB"));
          },
          run_scale};
}

}  // namespace dus
