// dus bench train: tokens/s of the whole training step (forward + loss + backward + gradient
// norm + clip + AdamW) on random tokens, with the time split, MFU against the fp32 and bf16
// matmul rates measured in the same process, and the peak resident memory, as a markdown table.
// The step is the trainer's own (train/train_step.h: the loss path, the single-process
// optimizer strategy with fp32 masters, the same precision choice); only the data loader is
// replaced by random tokens (no prepared data needed), so "data" is the cost of drawing them.
#include <ATen/Parallel.h>

#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/cuda.h>
#include <torch/types.h>

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <vector>

#include <fmt/format.h>

#include "cli/commands.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/json.h"
#include "core/text_format.h"
#include "model/hf_checkpoint.h"
#include "model/kernels/kernel_set.h"
#include "model/loss.h"
#include "model/transformer.h"
#include "train/cuda_events.h"
#include "train/device_timer.h"
#include "train/lr_schedule.h"
#include "train/matmul_rate.h"
#include "train/optimizer_strategy.h"
#include "train/precision.h"
#include "train/process_stats.h"
#include "train/recipe.h"
#include "train/throughput.h"
#include "train/train_step.h"

namespace dus {

namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Seconds of one step's parts.
struct StepTimes {
  double data = 0, forward = 0, backward = 0, optimizer = 0, logging = 0;
  double total() const { return data + forward + backward + optimizer + logging; }
};

int run_bench_train(const ParsedArgs& args) {
  if (args.has("recipe") == args.has("config"))
    throw Error("dus bench train", "give exactly one of --recipe FILE or --config FILE");
  // Defaults from the recipe (or the recipe defaults with --config); flags override.
  Recipe r;
  std::string config_path;
  if (args.has("recipe")) {
    r = load_recipe(args.get("recipe"));
    config_path = r.model.init_from.empty() ? r.model.config : r.model.init_from;
  } else {
    config_path = args.get("config");
  }
  const int64_t batch = args.has("batch") ? args.get_int("batch") : r.train.micro_batch;
  const int64_t seq = args.has("seq") ? args.get_int("seq") : r.data.seq_len;
  const int64_t steps = args.get_int("steps"), warmup = args.get_int("warmup");
  const double matmul_seconds = args.get_double("matmul-seconds");
  if (batch <= 0 || seq <= 1 || steps <= 0 || warmup < 0 || matmul_seconds <= 0)
    throw Error("dus bench train",
                "--batch, --steps, --matmul-seconds must be positive, --seq > 1, --warmup >= 0");
  const int threads =
      args.has("threads") ? static_cast<int>(args.get_int("threads")) : r.run.threads;
  if (threads > 0) at::set_num_threads(threads);
  if (!std::getenv("DUS_MALLOC_DEFAULT")) keep_freed_memory_for_reuse();  // as dus train does
  const std::string loss_mode = args.get("loss");
  if (loss_mode != "auto" && loss_mode != "full" && loss_mode != "chunked")
    throw Error("dus bench train --loss", "\"" + loss_mode + "\" is not one of auto|full|chunked");

  const std::string device_name = args.get("device");
  if (device_name != "cpu" && device_name != "cuda")
    throw Error("dus bench train --device", "\"" + device_name + "\" is not one of cpu|cuda");
  if (device_name == "cuda" && !torch::cuda::is_available())
    throw Error("dus bench train --device cuda", "no CUDA device is visible to this process");
  const auto device =
      c10::Device(device_name == "cuda" ? c10::DeviceType::CUDA : c10::DeviceType::CPU);
  ModelConfig config = ModelConfig::load(config_path);
  if (args.has("layers")) {
    // A stack of as many layers as fit: a 7B layer's speed without the whole 7B model.
    config.num_hidden_layers = args.get_int("layers");
    if (config.num_hidden_layers < 1) throw Error("dus bench train --layers", "must be at least 1");
  }
  const PrecisionChoice precision =
      choose_precision(args.has("precision") ? args.get("precision") : r.train.precision, device,
                       config.hidden_size);

  // Built as the trainer builds a fresh model: fp32 init on the host, then the optimizer
  // strategy places it on the device in the compute dtype with fp32 masters.
  torch::manual_seed(0);
  Transformer model(config, ModelInit{});
  // The trainer's kernel choice (the recipe's `kernels`, or --kernels): auto self-tests the CPU
  // loops for RMSNorm, rotary and SwiGLU and uses those that pass.
  kernels::KernelOptions ko;
  ko.mode = kernels::parse_kernel_mode(args.has("kernels") ? args.get("kernels") : r.kernels,
                                       "dus bench train --kernels");
  ko.log = false;
  ko.chunked_loss = loss_mode != "full";  // auto: the trainer's choice, chunked
  const kernels::KernelSet kernel_set = kernels::resolve_kernels(ko, device);
  std::unique_ptr<OptimizerStrategy> strategy;
  {
    std::vector<std::pair<std::string, at::Tensor>> named;
    for (const auto& p : model->named_parameters()) named.emplace_back(p.key(), p.value());
    NamedTensors masters = hf_tensors(model);
    for (auto& m : masters) m.second = m.second.detach();
    StrategyOptions so;
    so.optimizer = r.train.optimizer;
    so.device = device;
    so.compute_dtype = precision.compute;
    strategy = make_optimizer_strategy(so, nullptr, named, masters);
  }
  model->set_kernels(kernel_set);
  model->train();

  fmt::print(
      "bench train: {} layers, hidden {}, vocab {}, {} parameters, batch {} x {} = {} tokens per "
      "step, {} threads\n",
      config.num_hidden_layers, config.hidden_size, config.vocab_size,
      with_commas(config.parameter_count()), batch, seq, with_commas(batch * seq),
      at::get_num_threads());
  fmt::print(
      "precision {} ({}); kernels {} ({}); loss {}; AdamW betas ({:g}, {:g}), eps {:g}, weight "
      "decay {:g}, grad clip {:g}\n",
      precision.name, precision.reason, model->kernels().describe(), kernels::to_string(ko.mode),
      model->kernels().chunked_loss ? "chunked" : "full logits", r.train.optimizer.beta1,
      r.train.optimizer.beta2, r.train.optimizer.eps, r.train.optimizer.weight_decay,
      r.train.grad_clip);
  std::fflush(stdout);
  const MatmulRate fp32 = measure_matmul_rate(c10::ScalarType::Float, device, matmul_seconds);
  const MatmulRate bf16 = measure_matmul_rate(c10::ScalarType::BFloat16, device, matmul_seconds);
  reset_peak_rss();  // the peak below is the model's and the step's, not the matmul probes'
  if (device.is_cuda()) reset_cuda_peak_memory(device.index());
  // The probes drew a timing-dependent number of random matrices: re-seed, so the tokens (and
  // the losses printed) are the same in every run.
  torch::manual_seed(1);

  double last_loss = 0, last_norm = 0;
  DeviceTimer timer(device);
  auto run_step = [&](int64_t i) {
    StepTimes t;
    auto t0 = Clock::now();
    auto tokens = torch::randint(0, config.vocab_size, {batch, seq + 1}, torch::kLong);  // (B, T+1)
    auto input = tokens.narrow(1, 0, seq), target = tokens.narrow(1, 1, seq);
    t.data = seconds_since(t0);

    StepOptions so;
    so.micro_batch = batch;
    so.lr = lr_at(r.train.schedule, i);
    so.grad_clip = r.train.grad_clip;
    so.step = i + 1;
    so.device = device;
    so.timer = &timer;  // device time of each phase (CUDA events on a GPU)
    const StepResult step = train_step(*model, *strategy, input, target, so);
    const auto phases = timer.collect();  // waits for the step's kernels on a GPU
    t.forward = phases[static_cast<size_t>(Phase::forward)];
    t.backward = phases[static_cast<size_t>(Phase::backward)];
    t.optimizer = phases[static_cast<size_t>(Phase::optimizer)];

    // What the trainer does per step besides computing: build the metrics record.
    auto tl = Clock::now();
    last_loss = step.loss;
    last_norm = step.grad_norm;
    json::Value rec(json::Object{});
    rec.set("step", json::Value(i + 1));
    rec.set("loss", json::Value(last_loss));
    rec.set("grad_norm", json::Value(last_norm));
    volatile size_t sink = json::dump(rec).size();
    (void)sink;
    t.logging = seconds_since(tl);
    return t;
  };
  auto minor_faults = [] {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return static_cast<double>(u.ru_minflt);
  };
  std::vector<StepTimes> timed;
  double faults_before = 0;
  for (int64_t i = 0; i < warmup + steps; ++i) {
    if (i == warmup) faults_before = minor_faults();
    StepTimes t = run_step(i);
    if (i >= warmup) timed.push_back(t);
  }
  const double faults_per_step = (minor_faults() - faults_before) / static_cast<double>(steps);
  if (args.has("profile")) {
    // One more step under LibTorch's profiler (chrome://tracing JSON); not in the figures.
    torch::autograd::profiler::RecordProfile guard(args.get("profile"));
    run_step(warmup + steps);
  }

  auto part = [&](double StepTimes::*field) {
    std::vector<double> v;
    for (const auto& t : timed) v.push_back(t.*field);
    return median(v);
  };
  std::vector<double> totals;
  for (const auto& t : timed) totals.push_back(t.total());
  const double step_s = median(totals);
  // The fastest step too: on a shared machine contention only ever slows a step down.
  const double best_step_s = *std::min_element(totals.begin(), totals.end());
  const double tokens_per_s = static_cast<double>(batch * seq) / step_s;
  const double achieved = tokens_per_s * config.training_flops_per_token(seq) / 1e9;
  const int64_t peak = peak_rss_bytes();

  fmt::print("\n| measure | value |\n|---|---|\n");
  fmt::print(
      "| tokens/s (fwd + bwd + AdamW) | {:.0f} (median of {} steps after {} warm-up, {:.1f} "
      "ms/step) |\n",
      tokens_per_s, steps, warmup, step_s * 1e3);
  const char* names[] = {"data", "forward", "backward", "optimizer", "logging"};
  double StepTimes::*fields[] = {&StepTimes::data, &StepTimes::forward, &StepTimes::backward,
                                 &StepTimes::optimizer, &StepTimes::logging};
  fmt::print("| tokens/s, fastest step | {:.0f} ({:.1f} ms) |\n",
             static_cast<double>(batch * seq) / best_step_s, best_step_s * 1e3);
  for (int k = 0; k < 5; ++k) {
    const double m = part(fields[k]);
    fmt::print("| {} | {:.2f} ms ({:.1f}%) |\n", names[k], m * 1e3, 100.0 * m / step_s);
  }
  fmt::print("| matmul fp32 | {:.1f} GFLOP/s (n={}) |\n", fp32.best_gflops, fp32.size);
  fmt::print("| matmul bf16 | {:.1f} GFLOP/s (n={}) |\n", bf16.best_gflops, bf16.size);
  fmt::print("| achieved (6N + attention FLOPs) | {:.1f} GFLOP/s |\n", achieved);
  fmt::print("| MFU vs fp32 matmul | {:.1f}% |\n", 100.0 * achieved / fp32.best_gflops);
  fmt::print("| MFU vs bf16 matmul | {:.1f}% |\n", 100.0 * achieved / bf16.best_gflops);
  fmt::print("| page faults per step | {:.0f} ({:.0f} MiB of fresh pages) |\n", faults_per_step,
             faults_per_step * 4096.0 / (1 << 20));
  fmt::print("| peak resident memory | {} |\n", human_bytes(static_cast<double>(peak)));
  std::optional<double> datasheet;
  CudaMemory gpu_memory;
  if (device.is_cuda()) {
    const std::string name = cuda_device_name(device.index());
    if (precision.compute == c10::ScalarType::BFloat16)
      datasheet = datasheet_bf16_peak_tflops(name);
    gpu_memory = cuda_memory(device.index());
    fmt::print("| device | {} |\n", name);
    if (datasheet)
      fmt::print("| MFU vs datasheet dense bf16 ({:.0f} TFLOP/s) | {:.1f}% |\n", *datasheet,
                 100.0 * achieved / (*datasheet * 1e3));
    else
      fmt::print("| MFU vs datasheet | no datasheet peak for {} in {} |\n", name, precision.name);
    fmt::print("| GPU memory: max allocated, max reserved | {}, {} |\n",
               human_bytes(static_cast<double>(gpu_memory.peak_allocated)),
               human_bytes(static_cast<double>(gpu_memory.peak_reserved)));
  }
  fmt::print("| last loss, grad norm | {:.4f}, {:.3f} |\n", last_loss, last_norm);
  // One line for scripts (scripts/bench_vs_transformers.sh).
  fmt::print(
      "\nresult tokens_per_s={:.1f} best_tokens_per_s={:.1f} peak_rss_mib={:.1f} mfu_fp32={:.4f} "
      "mfu_bf16={:.4f} precision={}",
      tokens_per_s, static_cast<double>(batch * seq) / best_step_s,
      static_cast<double>(peak) / (1 << 20), achieved / fp32.best_gflops,
      achieved / bf16.best_gflops, precision.name);
  if (datasheet) fmt::print(" mfu_datasheet={:.4f}", achieved / (*datasheet * 1e3));
  if (device.is_cuda())
    fmt::print(" peak_cuda_mib={:.1f} peak_reserved_mib={:.1f}",
               static_cast<double>(gpu_memory.peak_allocated) / (1 << 20),
               static_cast<double>(gpu_memory.peak_reserved) / (1 << 20));
  fmt::print("\n");
  return 0;
}

}  // namespace

Command bench_train_command() {
  return {"bench train",
          [] {
            return ArgParser("bench train",
                             "Measure training-step tokens/s, time split, MFU and peak memory on "
                             "random tokens.")
                .positional("", "", 0)
                .option("recipe", "FILE",
                        "a training recipe (model, batch, seq, precision, threads, AdamW)")
                .option("config", "FILE",
                        "a config.json instead of a recipe (recipe defaults otherwise)")
                .option("batch", "B",
                        "sequences per step (default: the recipe's train.micro_batch)")
                .option("seq", "T", "tokens per sequence (default: the recipe's data.seq_len)")
                .option("precision", "auto|fp32|bf16", "compute precision (default: the recipe's)")
                .option("device", "cpu|cuda", "where the step runs", std::string("cpu"))
                .option("layers", "N",
                        "decoder layers (default: the config's): a stack of a large "
                        "model's layers")
                .option("threads", "N",
                        "intra-op threads (default: the recipe's run.threads, else torch's)")
                .option("steps", "N", "timed steps (the median is reported)", std::string("5"))
                .option("warmup", "N", "untimed steps first", std::string("2"))
                .option("loss", "auto|full|chunked",
                        "loss path: auto = the trainer's choice (chunked)", std::string("auto"))
                .option("kernels", "auto|on|off",
                        "fused CPU loops for RMSNorm, rotary, SwiGLU, loss, fp32 attention "
                        "(default: the recipe's)")
                .option("profile", "FILE", "write a chrome://tracing profile of one extra step")
                .option("matmul-seconds", "S", "time spent measuring each matmul rate",
                        std::string("1.0"));
          },
          run_bench_train};
}

}  // namespace dus
