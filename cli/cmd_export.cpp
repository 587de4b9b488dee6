// dus export: a Hugging Face model directory from any training checkpoint (or a run's newest).
#include <cstdio>

#include <filesystem>
#include <optional>

#include <torch/types.h>

#include <fmt/format.h>

#include "cli/commands.h"
#include "core/error.h"
#include "core/text_format.h"
#include "data/tokenizer.h"
#include "model/hf_checkpoint.h"
#include "scaling/provenance.h"
#include "train/checkpoint.h"

namespace dus {

namespace {

int run_export(const ParsedArgs& args) {
  namespace fs = std::filesystem;
  std::string dir = args.positionals()[0];
  std::optional<LoadedCheckpoint> ck;
  if (fs::exists(dir + "/checkpoints")) {  // a run directory: its newest valid checkpoint
    ck = open_latest_checkpoint(dir);
    if (!ck) throw Error(dir, "the run has no checkpoint yet");
  } else {
    ck = open_checkpoint(dir);  // validates (names the file at fault)
  }
  dir = ck->dir;
  const std::string out = args.get("out");
  if (fs::exists(out) && fs::equivalent(out, dir))
    throw Error("dus export", "--out must differ from the checkpoint");
  // An unsharded checkpoint is a Hugging Face directory of fp32 masters; a ZeRO-1 one holds
  // them in per-rank shards, assembled here. config.json keeps the "dus" block either way.
  Transformer model{nullptr};
  if (!ck->sharded) {
    model = load_hf_model(dir);
  } else {
    ModelInit init;
    init.random = false;
    model = Transformer(ModelConfig::from_json(ck->config, dir + "/config.json"), init);
    torch::NoGradGuard no_grad;
    for (auto& [name, t] : hf_tensors(model)) t.copy_(checkpoint_tensor(*ck, "master", name));
  }
  SaveOptions save;
  save.dtype = parse_dtype(args.get("dtype"), "dus export --dtype");
  if (const json::Value* d = model->config().raw.find(kProvenanceKey))
    save.metadata[kProvenanceKey] = json::dump(*d);
  save_hf_model(model, out, save);
  // The tokenizer travels with the model when one is given.
  const std::string tokenizer = args.get_or("tokenizer", "");
  if (!tokenizer.empty()) copy_tokenizer_files(tokenizer, out);
  fmt::print("exported {} -> {} ({} parameters, {})\n", dir, out,
             with_commas(model->config().parameter_count()), args.get("dtype"));
  return 0;
}

}  // namespace

Command export_command() {
  return {"export",
          [] {
            return ArgParser(
                       "export",
                       "Write a Hugging Face model from a training checkpoint (or a run's newest).")
                .positional("CHECKPOINT",
                            "a checkpoint directory (RUN/checkpoints/step_N) or a run directory")
                .required("out", "DIR", "output Hugging Face model directory")
                .option("dtype", "f32|bf16", "saved dtype", std::string("bf16"))
                .option("tokenizer", "PATH",
                        "a tokenizer file or model directory to copy beside the weights");
          },
          run_export};
}

}  // namespace dus
