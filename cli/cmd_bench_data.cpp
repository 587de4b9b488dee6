// dus bench data: the cost of fetching a batch from the packed loader, next to what a training
// step costs, to show data loading is a negligible share of a step. The step estimate is
// 6 * params * tokens FLOPs at (a) the fp32 matmul rate measured here on the CPU and (b) a
// GPU's peak times an MFU (defaults: H100 bf16 dense 989 TFLOP/s at 40%).
#include <algorithm>

#include <chrono>
#include <cstdio>
#include <vector>

#include <fmt/format.h>

#include "cli/commands.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/text_format.h"
#include "data/packed_loader.h"
#include "data/tokenizer.h"
#include "train/matmul_rate.h"

namespace dus {

namespace {

int run_bench_data(const ParsedArgs& args) {
  LoaderOptions o;
  for (const auto& spec : args.all("data")) {
    DataSource s;
    s.dir = spec;
    if (auto colon = spec.rfind(':'); colon != std::string::npos) {  // DIR:WEIGHT
      s.dir = spec.substr(0, colon);
      s.weight = std::stod(spec.substr(colon + 1));
    }
    s.eos = parse_eos_policy(args.get("eos"), "--eos");
    o.sources.push_back(s);
  }
  if (o.sources.empty())
    throw Error("dus bench data", "missing --data DIR (repeatable, DIR:WEIGHT)");
  o.seq_len = args.get_int("seq-len");
  o.global_batch = args.get_int("batch");
  o.world_size = static_cast<int>(args.get_int("world-size"));
  o.rank = 0;
  o.seed = static_cast<uint64_t>(args.get_int("seed"));
  o.bos = parse_bos_policy(args.get("bos"));
  o.shuffle = !args.flag("no-shuffle");
  if (args.has("tokenizer")) {
    // Megatron sources record no tokenizer: this one bounds their ids and gives BOS/EOS.
    const Tokenizer tok = Tokenizer::load(args.get("tokenizer"));
    o.megatron = {tok.vocab_size(), tok.bos_id(), tok.eos_id(), tok.sha256()};
    o.tokenizer_sha256 = tok.sha256();
  }
  FILE* dump = nullptr;
  if (args.has("dump")) {
    dump = std::fopen(args.get("dump").c_str(), "wb");
    if (!dump) throw Error(args.get("dump"), "cannot create the dump file");
  }
  const int64_t steps = args.get_int("steps");
  if (steps < 1) throw Error("dus bench data", "--steps must be positive");

  using Clock = std::chrono::steady_clock;
  auto t0 = Clock::now();
  PackedLoader loader(o);
  const double open_s = seconds_since(t0);
  Batch batch;
  // --dump: this rank's rows of every batch, int32 little-endian, [rows, seq_len + 1] each.
  auto write_dump = [&] {
    if (dump && std::fwrite(batch.tokens.data(), sizeof(int32_t), batch.tokens.size(), dump) !=
                    batch.tokens.size())
      throw Error(args.get("dump"), "write failed");
  };
  loader.next(&batch);  // warm-up: first touch of the mapped pages
  write_dump();
  std::vector<double> times;
  for (int64_t i = 0; i < steps; ++i) {
    auto start = Clock::now();
    loader.next(&batch);
    times.push_back(seconds_since(start));
    write_dump();
  }
  if (dump && std::fclose(dump) != 0) throw Error(args.get("dump"), "write failed");
  std::sort(times.begin(), times.end());
  const double median = times[times.size() / 2], worst = times.back();
  const int64_t local_tokens = batch.rows * o.seq_len;
  const int64_t global_tokens = o.global_batch * o.seq_len;

  fmt::print(
      "bench data: {} source(s), seq_len {}, global batch {}, world size {} (rank 0 fetches {} "
      "rows), {} batches\n",
      o.sources.size(), o.seq_len, o.global_batch, o.world_size, batch.rows, steps);
  for (size_t i = 0; i < loader.num_sources(); ++i)
    fmt::print("  source {}  {}: {} tokens, {} windows, weight {:g}\n", i, o.sources[i].dir,
               with_commas(loader.dataset(i).num_tokens()), with_commas(loader.windows(i)),
               o.sources[i].weight);
  fmt::print("  open      {:.3f} ms\n", open_s * 1e3);
  fmt::print("  per batch {:.3f} ms median, {:.3f} ms worst; {:.1f} M tokens/s per rank\n",
             median * 1e3, worst * 1e3, local_tokens / median / 1e6);

  // A training step on rank 0 processes local_tokens tokens: 6 * params FLOPs each.
  const double params = args.get_double("params");
  const double flops_step = 6.0 * params * static_cast<double>(local_tokens);
  const double gpu_rate = args.get_double("peak-tflops") * 1e12 * args.get_double("mfu");
  const double gpu_step = flops_step / gpu_rate;
  fmt::print("  training step estimate for {:.3g} parameters, {} tokens per rank ({} global):\n",
             params, with_commas(local_tokens), with_commas(global_tokens));
  fmt::print(
      "    GPU  {:.0f} TFLOP/s x MFU {:.2f}: {:.3f} s per step -> batch fetch is {:.5f}% of it\n",
      args.get_double("peak-tflops"), args.get_double("mfu"), gpu_step, 100 * median / gpu_step);
  if (!args.flag("no-cpu")) {
    MatmulRate fp32 =
        measure_matmul_rate(c10::ScalarType::Float, c10::Device(c10::DeviceType::CPU), 1.0);
    const double cpu_step = flops_step / (fp32.gflops * 1e9);
    fmt::print(
        "    CPU  fp32 matmul {:.1f} GFLOP/s measured: {:.1f} s per step -> batch fetch is {:.6f}% "
        "of it\n",
        fp32.gflops, cpu_step, 100 * median / cpu_step);
  }
  return 0;
}

}  // namespace

Command bench_data_command() {
  return {
      "bench data",
      [] {
        return ArgParser(
                   "bench data",
                   "Time fetching batches from prepared or Megatron data against a training step.")
            .positional("", "", 0)
            .option("data", "DIR[:WEIGHT]", "prepared dataset (repeatable for a mixture)",
                    std::nullopt, true)
            .option("seq-len", "N", "tokens per sequence", std::string("4096"))
            .option("batch", "N", "global batch (sequences per step, all ranks)", std::string("8"))
            .option("world-size", "N", "data-parallel ranks (rank 0 is timed)", std::string("1"))
            .option("steps", "N", "batches timed", std::string("200"))
            .option("seed", "N", "sample-order seed", std::string("0"))
            .option("bos", "POLICY", "document or none", std::string("document"))
            .option("eos", "POLICY", "add (EOS after each document) or data (already there)",
                    std::string("add"))
            .option("tokenizer", "FILE", "tokenizer of Megatron .bin/.idx sources")
            .flag("no-shuffle", "windows in stream order, as evaluation reads them")
            .option("dump", "FILE", "write every batch's tokens (int32, rank 0's rows) to FILE")
            .option("params", "N", "model parameters for the step estimate", std::string("10.7e9"))
            .option("peak-tflops", "F", "GPU peak for the estimate (H100 bf16 dense)",
                    std::string("989"))
            .option("mfu", "F", "model FLOPs utilisation for the estimate", std::string("0.4"))
            .flag("no-cpu", "skip measuring the CPU matmul rate");
      },
      run_bench_data};
}

}  // namespace dus
