// dus forward: run a model on one token sequence, write the logits, print the loss. The
// parity tests compare this output with transformers on the same weights.
#include <torch/types.h>

#include <cstdio>
#include <cstdlib>

#include <fmt/format.h>

#include "cli/commands.h"
#include "core/error.h"
#include "model/hf_checkpoint.h"
#include "model/loss.h"
#include "model/safetensors.h"

namespace dus {

namespace {

std::vector<int64_t> parse_token_list(const std::string& text, int64_t vocab) {
  std::vector<int64_t> ids;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t comma = text.find(',', pos);
    std::string item = text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    char* end = nullptr;
    long long v = std::strtoll(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0')
      throw Error("dus forward", "--tokens: '" + item + "' is not an integer token id");
    if (v < 0 || v >= vocab)
      throw Error("dus forward",
                  fmt::format("--tokens: id {} is outside the vocabulary [0, {})", item, vocab));
    ids.push_back(v);
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return ids;
}

int run_forward(const ParsedArgs& args) {
  LoadOptions load;
  load.dtype = parse_dtype(args.get("dtype"), "dus forward --dtype");
  Transformer model = load_hf_model(args.get("model"), load);
  model->eval();
  std::vector<int64_t> ids = parse_token_list(args.get("tokens"), model->config().vocab_size);
  if (ids.empty()) throw Error("dus forward", "--tokens is empty");

  torch::NoGradGuard no_grad;
  auto input = torch::tensor(ids, torch::kLong).unsqueeze(0);  // (1, T)
  auto logits = model->forward(input);                          // (1, T, V)
  auto loss = ids.size() > 1 ? next_token_loss(logits, input).item<double>() : 0.0;
  auto logits_TV = logits.squeeze(0).to(torch::kFloat32).contiguous();
  write_safetensors(args.get("out"), {{"logits", logits_TV}});
  fmt::print("tokens {}  dtype {}  loss {:.9g}\n", ids.size(), args.get("dtype"), loss);
  fmt::print("wrote {} (logits [{}, {}] float32)\n", args.get("out"), ids.size(),
             model->config().vocab_size);
  return 0;
}

}  // namespace

Command forward_command() {
  return {"forward",
          [] {
            return ArgParser("forward", "Run a model on one token sequence; write its logits and print the mean next-token loss.")
                .positional("", "", 0)
                .required("model", "DIR", "Hugging Face model directory")
                .required("tokens", "IDS", "comma-separated token ids, e.g. 1,2,3")
                .option("dtype", "f32|bf16", "compute dtype", std::string("f32"))
                .required("out", "FILE", "output .safetensors with a float32 tensor 'logits' [T, vocab]");
          },
          run_forward};
}

}  // namespace dus
