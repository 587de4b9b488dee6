// dus convert: load a Hugging Face model and save it again, optionally in another dtype or
// shard size. The round-trip tests use it; users use it to re-shard or cast a checkpoint.
#include <torch/types.h>

#include <cstdio>
#include <filesystem>

#include <fmt/format.h>

#include "cli/commands.h"
#include "core/error.h"
#include "core/text_format.h"
#include "model/hf_checkpoint.h"

namespace dus {

namespace {

int run_convert(const ParsedArgs& args) {
  const std::string in = args.get("model"), out = args.get("out");
  if (std::filesystem::exists(out) && std::filesystem::equivalent(in, out))
    throw Error("dus convert", "--out must differ from --model (the source is memory-mapped)");
  LoadOptions load;  // keep the file's dtype unless asked otherwise
  ModelConfig config = ModelConfig::load(in);
  load.dtype = args.has("dtype") ? parse_dtype(args.get("dtype"), "dus convert --dtype")
                                 : parse_dtype(config.torch_dtype, in + "/config.json: dtype");
  Transformer model = load_hf_model(in, load);
  SaveOptions save;
  save.max_shard_bytes = parse_byte_size(args.get("shard-size"), "dus convert --shard-size");
  save_hf_model(model, out, save);
  fmt::print("wrote {}: {} parameters, {}\n", out, with_commas(model->config().parameter_count()),
             dtype_config_name(load.dtype));
  return 0;
}

}  // namespace

Command convert_command() {
  return {"convert",
          [] {
            return ArgParser("convert", "Load a Hugging Face model and save it again (cast dtype, re-shard).")
                .positional("", "", 0)
                .required("model", "DIR", "input Hugging Face model directory")
                .required("out", "DIR", "output directory")
                .option("dtype", "f32|bf16|f16", "save dtype [default: the input's]")
                .option("shard-size", "SIZE", "largest shard, e.g. 5GB, 200MB", std::string("5GB"));
          },
          run_convert};
}

}  // namespace dus
