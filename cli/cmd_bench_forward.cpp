// dus bench forward: forward + backward throughput of a model on this machine, next to the
// fp32 and bf16 matmul rates measured in the same process (the MFU denominators on a CPU).
#include <ATen/Parallel.h>

#include <torch/types.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include <fmt/format.h>

#include "cli/commands.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/text_format.h"
#include "model/hf_checkpoint.h"
#include "model/loss.h"
#include "train/matmul_rate.h"
#include "train/process_stats.h"

namespace dus {

namespace {

int run_bench_forward(const ParsedArgs& args) {
  if (args.has("model") == args.has("config"))
    throw Error("dus bench forward", "give exactly one of --model DIR or --config FILE");
  if (args.has("threads")) at::set_num_threads(static_cast<int>(args.get_int("threads")));
  const auto dtype = parse_dtype(args.get("dtype"), "dus bench forward --dtype");
  const int64_t batch = args.get_int("batch"), seq = args.get_int("seq");
  const int64_t steps = args.get_int("steps"), warmup = args.get_int("warmup");
  if (batch <= 0 || seq <= 1 || steps <= 0 || warmup < 0)
    throw Error("dus bench forward", "--batch, --steps must be positive, --seq > 1, --warmup >= 0");

  torch::manual_seed(0);
  Transformer model{nullptr};
  if (args.has("model")) {
    LoadOptions load;
    load.dtype = dtype;
    model = load_hf_model(args.get("model"), load);
  } else {
    ModelInit init;
    init.dtype = dtype;
    model = Transformer(ModelConfig::load(args.get("config")), init);
  }
  const ModelConfig& c = model->config();
  model->train();

  fmt::print(
      "bench forward+backward: {} layers, hidden {}, {} parameters, batch {} x {}, dtype {}, {} "
      "threads\n",
      c.num_hidden_layers, c.hidden_size, with_commas(c.parameter_count()), batch, seq,
      args.get("dtype"), at::get_num_threads());
  const auto cpu = c10::Device(c10::DeviceType::CPU);
  MatmulRate fp32 = measure_matmul_rate(torch::kFloat32, cpu, 1.0);
  MatmulRate bf16 = measure_matmul_rate(torch::kBFloat16, cpu, 1.0);

  auto tokens = torch::randint(0, c.vocab_size, {batch, seq + 1}, torch::kLong);
  auto input = tokens.narrow(1, 0, seq), target = tokens.narrow(1, 1, seq);
  std::vector<double> times;
  for (int64_t i = 0; i < warmup + steps; ++i) {
    auto start = std::chrono::steady_clock::now();
    auto logits = model->forward(input);
    auto loss = dus::cross_entropy_loss(logits.reshape({-1, c.vocab_size}), target.reshape({-1}));
    loss.backward();
    double t = seconds_since(start);
    for (auto& p : model->parameters()) p.mutable_grad() = torch::Tensor();
    if (i >= warmup) times.push_back(t);
  }
  std::sort(times.begin(), times.end());
  const double median = times[times.size() / 2];
  const double tokens_per_s = static_cast<double>(batch * seq) / median;
  const double achieved_gflops = tokens_per_s * c.training_flops_per_token(seq) / 1e9;

  fmt::print("\n| measure                 | value |\n|---|---|\n");
  fmt::print("| matmul fp32             | {:.1f} GFLOP/s (n={}, {} repeats) |\n", fp32.gflops,
             fp32.size, fp32.repeats);
  fmt::print("| matmul bf16             | {:.1f} GFLOP/s (n={}, {} repeats) |\n", bf16.gflops,
             bf16.size, bf16.repeats);
  fmt::print("| fwd+bwd tokens/s        | {:.0f} (median of {} steps, {:.1f} ms/step) |\n",
             tokens_per_s, steps, median * 1e3);
  fmt::print("| achieved                | {:.1f} GFLOP/s |\n", achieved_gflops);
  fmt::print("| MFU vs fp32 matmul      | {:.1f}% |\n", 100.0 * achieved_gflops / fp32.gflops);
  fmt::print("| MFU vs bf16 matmul      | {:.1f}% |\n", 100.0 * achieved_gflops / bf16.gflops);
  fmt::print("| peak resident memory    | {} |\n",
             human_bytes(static_cast<double>(peak_rss_bytes())));
  return 0;
}

}  // namespace

Command bench_forward_command() {
  return {"bench forward",
          [] {
            return ArgParser("bench forward",
                             "Measure forward+backward tokens/s and the fp32/bf16 matmul rates on "
                             "this machine.")
                .positional("", "", 0)
                .option("model", "DIR", "Hugging Face model directory")
                .option("config", "FILE", "a config.json (random weights)")
                .option("batch", "B", "sequences per step", std::string("8"))
                .option("seq", "T", "tokens per sequence", std::string("256"))
                .option("steps", "N", "timed steps", std::string("10"))
                .option("warmup", "N", "untimed steps first", std::string("2"))
                .option("dtype", "f32|bf16", "compute dtype", std::string("f32"))
                .option("threads", "N", "intra-op threads (default: torch's choice)");
          },
          run_bench_forward};
}

}  // namespace dus
