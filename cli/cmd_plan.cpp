// dus plan: the per-device memory budget of a recipe from its config alone (train/memory_plan.h).
#include <cstdio>

#include <filesystem>

#include <fmt/format.h>

#include "cli/commands.h"
#include "core/error.h"
#include "core/text_format.h"
#include "model/model_config.h"
#include "scaling/layer_plan.h"
#include "scaling/parameter_count.h"
#include "train/memory_plan.h"
#include "train/precision.h"
#include "train/process_stats.h"
#include "train/recipe.h"

namespace dus {

namespace {

int run_plan(const ParsedArgs& args) {
  Recipe r = load_recipe(args.positionals()[0], args.all("set"));
  std::string config_path;
  if (args.has("config"))
    config_path = args.get("config");
  else if (!r.model.init_from.empty())
    config_path = r.model.init_from + "/config.json";
  else
    config_path = r.model.config;
  if (!std::filesystem::exists(config_path))
    throw Error(r.source + ": model.init_from", "no config at " + config_path,
                "pass --config with the base model's config.json (e.g. "
                "recipes/configs/mistral-7b-v0.1.json)");
  const ModelConfig base = ModelConfig::load(config_path);
  ModelConfig cfg = base;
  fmt::print("model            {}: {} layers, {} parameters\n", config_path, base.num_hidden_layers,
             with_commas(base.parameter_count()));
  if (r.model.scaling) {
    LayerPlan plan = make_plan(*r.model.scaling, base.num_hidden_layers, r.source + ": scaling");
    cfg = scaled_config(base, plan);
    fmt::print("scaled           {}, {} parameters\n", plan.describe(),
               with_commas(scaled_parameter_count(base, plan)));
  }
  const bool cpu = args.get("device") == "cpu";
  MemoryPlanOptions o;
  o.world_size = args.get_int("world-size");
  if (o.world_size < 1) throw Error("plan --world-size", "must be at least 1");
  o.micro_batch = r.train.micro_batch;
  o.seq_len = r.data.seq_len;
  o.activation_checkpointing = r.train.activation_checkpointing;
  o.fused_ops = r.kernels != "off";  // auto: assumes the start-up self-test passes
  o.cpu_attention = cpu && o.fused_ops;
  o.chunked_loss = true;  // dus train's loss path on every device
  o.eval_batch = r.eval.batch;
  o.bucket_mb = r.distributed.bucket_mb;
  o.chunk_elements = r.train.optimizer.chunk_elements;
  o.on_host = cpu;
  if (r.model.scaling || !r.model.init_from.empty()) {
    o.base = &base;
    // A base on disk in bf16 (as Mistral-7B ships) is not mapped beside its fp32 copy.
    o.base_file_fp32 = base.torch_dtype.empty() || base.torch_dtype == "float32";
  }
  // auto decides as dus train will: bf16 on CUDA; on a CPU, the same short measurement.
  const std::string precision =
      cpu ? choose_precision(r.train.precision, c10::Device(c10::kCPU), cfg.hidden_size).name
          : (r.train.precision == "auto" ? "bf16" : r.train.precision);
  o.compute_bytes = precision == "bf16" ? 2 : 4;
  if (cpu) {
    // On CPU the fixed cost is this process's own: LibTorch's libraries, measured now.
    o.runtime_bytes = static_cast<double>(current_rss_bytes());
    o.host_allocator_retention = 0.4;  // dus train keeps freed memory for reuse on CPU
    o.device_bytes = args.has("device-gb") ? args.get_double("device-gb") * 1e9 : 1e15;
  } else {
    o.device_bytes = args.get_double("device-gb") * 1e9;
  }
  fmt::print(
      "batch            {} ranks x micro_batch {} x seq_len {} (activation checkpointing "
      "{})\nprecision        {} (train.precision: {})\n\n",
      o.world_size, o.micro_batch, o.seq_len, o.activation_checkpointing ? "on" : "off", precision,
      r.train.precision);
  std::vector<std::string> strategies;
  if (args.has("strategy"))
    strategies.push_back(args.get("strategy"));
  else
    strategies = {"ddp", "zero1", "zero2"};
  for (const auto& s : strategies) {
    if (s != "ddp" && s != "zero1" && s != "zero2")
      throw Error("plan --strategy", "\"" + s + "\" is not one of ddp|zero1|zero2");
    o.strategy = s;
    // The recipe's accumulation dtype where it applies; each strategy's own otherwise.
    o.grad_accumulation_fp32 =
        s == "zero2" || (s == "ddp" && r.train.grad_accumulation != "compute");
    o.micro_batches =
        r.train.global_batch / o.world_size / std::max<int64_t>(1, r.train.micro_batch);
    MemoryPlan m = make_memory_plan(cfg, o);
    fmt::print("{}{}\n", format_memory_plan(m, o),
               s == r.distributed.strategy ? "  (the recipe's strategy)\n" : "");
  }
  return 0;
}

}  // namespace

Command plan_command() {
  return {"plan",
          [] {
            return ArgParser("plan",
                             "Per-device memory of a recipe (parameters, gradients, masters, "
                             "moments, activations, logits) from the config alone.")
                .positional("RECIPE", "a recipe file")
                .option("world-size", "N", "data-parallel ranks", std::string("1"))
                .option("strategy", "S", "ddp | zero1 | zero2 (default: all three)")
                .option("config", "FILE", "the base config.json when model.init_from is not here")
                .option("device-gb", "GB", "memory of one device", std::string("80"))
                .option("device", "KIND",
                        "gpu | cpu (cpu: fp32 by default, this process's memory as the runtime)",
                        std::string("gpu"))
                .option("set", "SECTION.KEY=VALUE", "override a recipe key", std::nullopt,
                        /*repeatable=*/true);
          },
          run_plan};
}

}  // namespace dus
