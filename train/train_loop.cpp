#include "train/train_loop.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <c10/core/DeviceGuard.h>
#include <torch/cuda.h>
#include <torch/types.h>

#include <unistd.h>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>

#include <fmt/format.h>

#include "core/clock.h"
#include "core/error.h"
#include "core/file_util.h"
#include "core/stop_signals.h"
#include "core/text_format.h"
#include "data/token_bytes.h"
#include "data/tokenizer.h"
#include "model/hf_checkpoint.h"
#include "model/kernels/cross_entropy.h"
#include "model/kernels/kernel_set.h"
#include "model/loss.h"
#include "scaling/depth_upscale.h"
#include "scaling/provenance.h"
#include "train/checkpoint.h"
#include "train/cuda_events.h"
#include "train/device_choice.h"
#include "train/device_timer.h"
#include "train/distributed/process_group.h"
#include "train/fault_injection.h"
#include "train/layer_stats.h"
#include "train/matmul_rate.h"
#include "train/metrics_log.h"
#include "train/optimizer_strategy.h"
#include "train/precision.h"
#include "train/process_stats.h"
#include "train/recovery_tracker.h"
#include "train/task_evaluator.h"
#include "train/tensorboard_writer.h"
#include "train/throughput.h"
#include "train/torch_batch.h"
#include "train/train_state.h"
#include "train/train_step.h"

namespace dus {

namespace fs = std::filesystem;

namespace {

// SIGTERM / SIGINT: finish the step, checkpoint, exit 0. Installed at the first run and kept
// for the rest of the process (never destroyed), so a signal during the export or the exit
// after the loop is not fatal either, and runs one after another in one process (dus sweep
// --jobs 1) share it.
StopSignals& stop_signals() {
  static StopSignals* signals = new StopSignals();
  return *signals;
}

json::Value num(double x) {
  return json::Value(x);
}

// The held-out set: the first `sequences` windows of the val sources, in stream order, so every
// evaluation (and every resume) scores the same tokens. Without data.val: the val splits of the
// prepared train sources (a Megatron pair has no val split).
torch::Tensor load_eval_tokens(const Recipe& r, const std::string& tokenizer_sha, int64_t vocab,
                               const MegatronOptions& megatron,
                               const std::optional<ModelSpecialTokens>& model_tokens) {
  LoaderOptions o;
  if (r.data.val.empty()) {
    for (const auto& s : r.data.train)
      if (!s.is_megatron()) o.sources.push_back({s.dir, "val", 1.0, s.eos});
  } else {
    for (const auto& s : r.data.val) o.sources.push_back({s.dir, "val", 1.0, s.eos});
  }
  o.megatron = megatron;
  o.seq_len = r.data.seq_len;
  o.shuffle = false;
  o.seed = 0;
  o.bos = parse_bos_policy(r.data.bos);
  o.tokenizer_sha256 = tokenizer_sha;
  o.model_vocab_size = vocab;
  o.model_tokens = model_tokens;
  o.global_batch = 1;
  PackedLoader probe(o);
  int64_t windows = 0;
  for (size_t i = 0; i < probe.num_sources(); ++i) windows += probe.windows(i);
  int64_t n = std::min<int64_t>(r.eval.sequences, windows);
  if (n <= 0)
    throw Error(r.source + ": data", "the val split holds no full sequence of seq_len + 1 tokens");
  if (n < r.eval.sequences)
    fmt::print("warning: eval.sequences = {} but the val split holds {}; using {}\n",
               r.eval.sequences, windows, n);
  o.global_batch = n;
  PackedLoader loader(o);
  Batch b = loader.next();
  auto t = batch_to_tensors(b);
  return torch::cat({t.input_BT, t.target_BT.narrow(1, t.target_BT.size(1) - 1, 1)},
                    1);  // (n, T+1)
}

// Sum over ranks of a few doubles (the process group's one scalar reduction, on its device).
std::vector<double> sum_over_ranks(dist::ProcessGroup* pg, std::vector<double> v) {
  return pg ? pg->all_reduce_scalars(std::move(v)) : v;
}

// The held-out loss through the training loss path (the chunked lm_head + loss, the model's
// kernels, its dtype): what the loss curve is compared with, so base_loss, scaled_loss_0 and
// every later evaluation are measured the same way, and the full (B, T, V) logits never exist.
// With a process group, each rank scores its contiguous share of the sequences and the
// per-sequence losses are summed over ranks: the same mean as one process (up to fp order).
double evaluate(Transformer& model, const torch::Tensor& tokens_NT1, int64_t batch,
                c10::Device device, dist::ProcessGroup* pg = nullptr) {
  torch::NoGradGuard no_grad;
  const bool was_training = model->is_training();
  model->eval();
  const int64_t n_all = tokens_NT1.size(0), t = tokens_NT1.size(1) - 1;
  const int64_t first = pg ? n_all * pg->rank() / pg->size() : 0;
  const int64_t n = pg ? n_all * (pg->rank() + 1) / pg->size() : n_all;
  auto sum = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat64).device(device));
  for (int64_t i = first; i < n; i += batch) {
    auto chunk = tokens_NT1.narrow(0, i, std::min(batch, n - i)).to(device);
    auto input = chunk.narrow(1, 0, t), target = chunk.narrow(1, 1, t);
    auto loss = dus::training_loss(*model, input, target);
    sum.add_(loss.to(torch::kFloat64) * static_cast<double>(chunk.size(0)));
  }
  if (was_training) model->train();
  const auto v = sum_over_ranks(pg, {sum.item<double>(), static_cast<double>(n - first)});
  return v[0] / v[1];
}

// Bits per byte per unit of eval loss for the held-out windows (n, T + 1): the loss is the mean
// over the n * T targets in nats, so bpb = loss * n * T / (ln 2 * bytes), with bytes the UTF-8
// bytes of the text those targets encode. Every rank holds all the windows (each scores a share
// of them), so every rank counts the same total: the sum of the shares' bytes, no reduction.
// Absent (with the reason in *why) when no byte is scored.
std::optional<double> bpb_per_loss(const TokenBytes& bytes, const torch::Tensor& tokens_NT1,
                                   std::string* why) {
  const torch::Tensor t = tokens_NT1.contiguous();
  const int64_t n = t.size(0), len = t.size(1);
  const int64_t* data = t.data_ptr<int64_t>();
  int64_t total = 0;
  for (int64_t i = 0; i < n; ++i)
    total += bytes.target_bytes(data + i * len, len, fmt::format("held-out window {}", i));
  if (total <= 0) {
    *why = "the held-out targets encode no text bytes";
    return std::nullopt;
  }
  const int64_t targets = n * (len - 1);
  const double scale = static_cast<double>(targets) / (std::log(2.0) * static_cast<double>(total));
  fmt::print(
      "eval bytes       {} UTF-8 bytes of held-out text in {} target tokens "
      "({:.3f} bytes/token): bpb = eval_loss x {:.6f}\n",
      with_commas(total), with_commas(targets),
      static_cast<double>(total) / static_cast<double>(targets), scale);
  return scale;
}

// A copy of `model` on `device` in `dtype` with the same kernels: the base model evaluated in
// the training precision on the compute device while its fp32 weights stay on the host.
Transformer copy_model(Transformer& model, c10::Device device, c10::ScalarType dtype) {
  ModelInit init;
  init.device = device;
  init.dtype = dtype;
  init.random = false;
  Transformer copy(model->config(), init);
  torch::NoGradGuard no_grad;
  auto src = model->parameters(), dst = copy->parameters();
  for (size_t i = 0; i < src.size(); ++i) dst[i].copy_(src[i]);
  copy->set_kernels(model->kernels());
  return copy;
}

// The CUDA caching allocator with expandable segments unless the user configured it: a step's
// tensors of varying sizes (activations, loss chunks, buckets) then reuse one growing mapping
// instead of fragmenting fixed blocks. Read when the allocator starts, so set before any CUDA
// allocation.
void use_expandable_segments() {
  if (std::getenv("PYTORCH_CUDA_ALLOC_CONF") || std::getenv("PYTORCH_ALLOC_CONF")) return;
  ::setenv("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True", 0);
}

class Trainer {
 public:
  explicit Trainer(const TrainJob& job) : r_(job.recipe), resume_(job.resume) {}

  int run();

 private:
  void setup_run_dir();
  void resolve_kernels();
  void build_model_fresh();
  /// The held-out windows (eval_tokens_) and, with a tokenizer, their bpb_per_loss_.
  void load_eval();
  void restore_from_checkpoint(const LoadedCheckpoint& ck);
  void build_strategy(const NamedTensors& fp32_masters);
  void train_one_step();
  void do_eval(const std::vector<double>& grad_norms, const std::vector<double>& update_ratios);
  /// Scores eval.tasks on `model` (collective: every rank calls it); prints one line per task
  /// headed `label` when given. The seconds it took go to *seconds.
  std::vector<TaskMetrics> score_tasks_on(TransformerImpl& model, const char* label,
                                          double* seconds);
  /// Registers the tasks with their start scores in the tracker, with the seconds they took.
  void start_tasks(const std::vector<TaskMetrics>& base, const std::vector<TaskMetrics>& scaled,
                   const std::vector<double>& seconds);
  /// Rank 0: one task evaluation into the tracker, metrics.jsonl, TensorBoard and the console.
  void log_tasks(const std::vector<TaskMetrics>& scores, double seconds);
  /// Writes a checkpoint; false (with a warning, the previous checkpoints untouched) when the
  /// save failed on any rank. Stops the run once checkpoint.max_failed_saves failed in a row.
  bool save(const char* why);
  void finish();
  void setup_distributed();
  bool root() const { return env_.rank == 0; }
  bool agree_to_stop(int sig);
  void collect_phase_times();
  /// The memory that matters here: the CUDA allocator's on a GPU, resident memory on a CPU.
  std::vector<std::pair<std::string, int64_t>> memory_numbers() const;
  std::string memory_text() const;

  Recipe r_;
  bool resume_;
  std::string run_dir_;
  c10::Device device_ = c10::Device(c10::DeviceType::CPU);
  PrecisionChoice precision_;
  kernels::KernelSet kernels_;
  Transformer model_{nullptr};
  ModelConfig config_;
  json::Value provenance_json_;  // "dus" block of config.json, when scaled
  // The base model's BOS/EOS, which every dataset must use; set when continuing from one.
  std::optional<ModelSpecialTokens> model_tokens_;
  // Gradient synchronisation and AdamW (single process, ddp or zero1).
  std::unique_ptr<OptimizerStrategy> strategy_;
  std::unique_ptr<PackedLoader> loader_;
  torch::Tensor eval_tokens_;
  std::optional<TokenBytes> token_bytes_;  // data.tokenizer's bytes per id; none without one
  std::optional<double> bpb_per_loss_;     // eval bits per byte per unit of eval loss
  std::optional<TaskSet> tasks_;           // eval.tasks, tokenized once; none without them
  std::string tokenizer_sha_;
  MegatronOptions megatron_;  // data.tokenizer's ids, when a source is a Megatron pair
  RecoveryTracker tracker_;
  std::unique_ptr<MetricsLog> metrics_;
  std::unique_ptr<TensorBoardWriter> tb_;

  int64_t step_ = 0;    // optimizer steps completed
  int64_t tokens_ = 0;  // training tokens consumed
  int64_t nonfinite_in_row_ = 0, nonfinite_total_ = 0;
  int64_t loss_spikes_total_ = 0;
  std::deque<double> recent_losses_;  // the spike guard's window: losses of updated steps
  int64_t failed_saves_in_row_ = 0;   // checkpoint saves that failed since the last good one
  int64_t last_eval_step_ = -1, last_checkpoint_step_ = -1;
  double peak_gflops_ = 0;  // matmul rate measured at start: the MFU denominator on CPU
  std::chrono::steady_clock::time_point start_;
  int64_t start_step_ = 0;
  double window_loss_sum_ = 0;
  int64_t window_steps_ = 0;
  std::chrono::steady_clock::time_point window_start_;
  double time_data_ = 0, time_forward_ = 0, time_backward_ = 0, time_optimizer_ = 0;
  FaultInjection faults_;
  json::Value loader_state_json_;  // from the checkpoint, applied once the loader exists
  // Data parallelism (train/distributed): pg_ is null in a single process.
  dist::DistEnv env_;
  std::shared_ptr<dist::ProcessGroup> pg_;
  std::optional<c10::DeviceGuard> device_guard_;  // CUDA: this rank's device is current
  std::unique_ptr<DeviceTimer> timer_;            // forward / backward / optimizer time
  std::optional<double> datasheet_tflops_;        // GPU: the MFU's second denominator
  std::string device_name_;
};

void Trainer::load_eval() {
  eval_tokens_ = load_eval_tokens(r_, tokenizer_sha_, config_.vocab_size, megatron_, model_tokens_);
  bpb_per_loss_.reset();
  if (!token_bytes_) return;
  std::string why;
  bpb_per_loss_ = bpb_per_loss(*token_bytes_, eval_tokens_, &why);
  if (!bpb_per_loss_) fmt::print("bpb              not reported: {}\n", why);
}

void Trainer::setup_run_dir() {
  run_dir_ = r_.run.dir;
  if (!resume_) {
    if (!list_checkpoints(run_dir_).empty())
      throw Error(run_dir_, "the run directory already holds checkpoints",
                  "continue it with 'dus resume " + run_dir_ + "', or pass another --run-dir");
    if (root()) {
      fs::create_directories(run_dir_);
      write_file_atomic(run_dir_ + "/recipe.yaml", r_.to_yaml());
      // What an attempt killed before its first checkpoint logged would repeat steps 1, 2, ...
      fs::remove(run_dir_ + "/" + kMetricsFile);
    }
  }
}

// Fused ops (auto self-tests them first): CUDA kernels, or the CPU loops for RMSNorm, rotary,
// SwiGLU, the loss chunk and causal attention. The chunked loss everywhere: it never holds the
// full fp32 logits and their gradient (100M config on CPU: 1.3 GB less peak memory, and
// faster). Resolved before any model exists: the base model is evaluated with them too.
void Trainer::resolve_kernels() {
  kernels::KernelOptions ko;
  ko.mode = kernels::parse_kernel_mode(r_.kernels, r_.source + ": kernels");
  ko.chunked_loss = true;
  kernels_ = kernels::resolve_kernels(ko, device_);
}

// The model's parameters go to the compute device in the compute dtype; the strategy takes
// what this rank needs of the fp32 masters (all of them, or its shard), which the caller then
// frees by dropping them.
void Trainer::build_strategy(const NamedTensors& fp32_masters) {
  std::vector<std::pair<std::string, at::Tensor>> params;
  for (const auto& p : model_->named_parameters()) params.emplace_back(p.key(), p.value());
  StrategyOptions so;
  so.strategy = r_.distributed.strategy;
  so.optimizer = r_.train.optimizer;
  so.bucket_mb = r_.distributed.bucket_mb;
  so.device = device_;
  so.compute_dtype = precision_.compute;
  so.grad_accumulation_fp32 = r_.train.grad_accumulation == "fp32";
  so.micro_batches = r_.train.global_batch / env_.world_size / r_.train.micro_batch;
  strategy_ = make_optimizer_strategy(so, pg_, params, fp32_masters);
  model_->set_kernels(kernels_);
}

// The masters: the host model's fp32 tensors themselves (detached: the parameters are about
// to be re-pointed at their compute copies, the masters must keep the fp32 storage).
NamedTensors host_masters(Transformer& model) {
  NamedTensors masters = hf_tensors(model);
  for (auto& m : masters) m.second = m.second.detach();
  return masters;
}

// Start-up on the host: the fp32 base is loaded (mapped) and scaled in host memory; the compute
// device receives the base in the compute dtype for its evaluation (then freed), and then only
// the scaled model's compute-dtype parameters and this rank's optimizer state.
void Trainer::build_model_fresh() {
  torch::manual_seed(r_.run.seed);
  const c10::Device host(c10::DeviceType::CPU);
  if (!r_.model.init_from.empty()) {
    fmt::print("loading base model {}\n", r_.model.init_from);
    LoadOptions load;  // fp32 on the host: the masters start from the checkpoint's exact values
    load.device = host;
    Transformer base = load_hf_model(r_.model.init_from, load);
    base->set_kernels(kernels_);
    config_ = base->config();
    load_eval();
    double base_loss = 0;
    std::vector<TaskMetrics> base_tasks, scaled_tasks;
    std::vector<double> task_seconds;
    if (device_ == host && precision_.compute == torch::kFloat32) {
      base_loss = evaluate(base, eval_tokens_, r_.eval.batch, device_, pg_.get());
      if (tasks_) base_tasks = score_tasks_on(*base, "base", &task_seconds.emplace_back());
    } else {
      Transformer on_device = copy_model(base, device_, precision_.compute);
      base_loss = evaluate(on_device, eval_tokens_, r_.eval.batch, device_, pg_.get());
      if (tasks_) base_tasks = score_tasks_on(*on_device, "base", &task_seconds.emplace_back());
    }
    fmt::print("base_loss        {:.6f}  ({} layers, {} parameters, {} held-out sequences)\n",
               base_loss, config_.num_hidden_layers, with_commas(config_.parameter_count()),
               eval_tokens_.size(0));
    if (bpb_per_loss_) fmt::print("base_bpb         {:.6f}\n", base_loss * *bpb_per_loss_);
    LayerLabels labels = LayerLabels::plain(config_.num_hidden_layers);
    std::optional<LayerPlan> plan;
    std::vector<std::string> seam_names;
    if (r_.model.scaling) {
      plan = make_plan(*r_.model.scaling, config_.num_hidden_layers, r_.source + ": scaling");
      ScaledModel scaled = apply_plan(base, *plan);
      base = Transformer(nullptr);  // free the base: one extra copy of the weights at most
      model_ = scaled.model;
      config_ = model_->config();
      provenance_json_ = scaled.provenance.to_json();
      labels = LayerLabels::from_provenance(scaled.provenance);
      for (const auto& seam : scaled.provenance.seams()) seam_names.push_back(seam.name());
    } else {
      model_ = base;
      base = Transformer(nullptr);
    }
    build_strategy(host_masters(model_));
    std::optional<double> scaled_loss_0;
    if (plan) {
      scaled_loss_0 = evaluate(model_, eval_tokens_, r_.eval.batch, device_, pg_.get());
      fmt::print("scaled           {}, {} parameters\n", plan->describe(),
                 with_commas(config_.parameter_count()));
      for (const auto& name : seam_names) fmt::print("seam             {}\n", name);
      fmt::print("scaled_loss_0    {:.6f}  ({:+.6f} over base)\n", *scaled_loss_0,
                 *scaled_loss_0 - base_loss);
      if (bpb_per_loss_) fmt::print("scaled_bpb_0     {:.6f}\n", *scaled_loss_0 * *bpb_per_loss_);
      if (tasks_) scaled_tasks = score_tasks_on(*model_, "scaled", &task_seconds.emplace_back());
    }
    tracker_ = RecoveryTracker(base_loss, scaled_loss_0, labels);
    start_tasks(base_tasks, scaled_tasks, task_seconds);
  } else {
    config_ = ModelConfig::load(r_.model.config);
    ModelInit init;  // on the host: the same initial weights whatever the compute device
    model_ = Transformer(config_, init);
    load_eval();
    tracker_ =
        RecoveryTracker(std::nullopt, std::nullopt, LayerLabels::plain(config_.num_hidden_layers));
    fmt::print("model            from scratch: {} layers, {} parameters\n",
               config_.num_hidden_layers, with_commas(config_.parameter_count()));
    build_strategy(host_masters(model_));
    start_tasks({}, {}, {});
  }
}

std::vector<TaskMetrics> Trainer::score_tasks_on(TransformerImpl& model, const char* label,
                                                 double* seconds) {
  LoglikelihoodOptions o;
  o.batch = r_.eval.batch;
  o.max_length = model.config().max_position_embeddings;
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<TaskResult> results = score_tasks(model, *tasks_, o, pg_.get());
  *seconds = seconds_since(t0);
  std::vector<TaskMetrics> out;
  for (size_t i = 0; i < results.size(); ++i) {
    const TaskMetrics& m = results[i].metrics;
    if (label)
      fmt::print("{:<16} {}: acc {:.4f} ± {:.4f}, acc_norm {:.4f} ± {:.4f} ({} items)\n",
                 std::string(label) + " task", tasks_->tasks()[i].name, m.acc, m.acc_stderr,
                 m.acc_norm, m.acc_norm_stderr, m.items);
    out.push_back(m);
  }
  if (label) fmt::print("{:<16} {:.1f} s\n", std::string(label) + " tasks", *seconds);
  return out;
}

void Trainer::start_tasks(const std::vector<TaskMetrics>& base,
                          const std::vector<TaskMetrics>& scaled,
                          const std::vector<double>& seconds) {
  if (!tasks_) return;
  for (size_t i = 0; i < tasks_->tasks().size(); ++i) {
    const TaskSet::Task& t = tasks_->tasks()[i];
    tracker_.tasks().add_task(
        t.name, t.file, static_cast<int64_t>(t.items.size()),
        i < base.size() ? std::optional<TaskMetrics>(base[i]) : std::nullopt,
        i < scaled.size() ? std::optional<TaskMetrics>(scaled[i]) : std::nullopt);
  }
  for (double s : seconds) tracker_.tasks().add_seconds(s);
}

void Trainer::restore_from_checkpoint(const LoadedCheckpoint& ck) {
  fmt::print("resuming from {} (step {})\n", ck.dir, ck.step);
  const TrainState& st = ck.train;  // checked key by key when the checkpoint was opened
  if (st.recipe_sha256 != r_.sha256) {
    // Only the run length and logging may change on resume; anything else is another run.
    throw Error(ck.dir + "/state.json",
                "the checkpoint was written by a different recipe (sha256 " +
                    st.recipe_sha256.substr(0, 12) + " vs " + r_.sha256.substr(0, 12) + ")",
                "resume with the run's own recipe.yaml; start a new run for a changed recipe");
  }
  config_ = ModelConfig::from_json(ck.config, ck.dir + "/config.json");
  if (const json::Value* d = ck.config.find(kProvenanceKey)) provenance_json_ = *d;
  ModelInit init;  // on the host, as a fresh start: the strategy places it
  init.random = false;
  model_ = Transformer(config_, init);
  if (!ck.sharded) {
    // The checkpoint is a Hugging Face directory: load_weights validates names and shapes.
    SafetensorsCheckpoint weights = SafetensorsCheckpoint::open_dir(ck.dir);
    load_weights(model_, weights, ck.dir);
  } else {
    // Written by ZeRO-1 ranks: every weight is assembled from the shards (any world size).
    torch::NoGradGuard no_grad;
    for (auto& [name, t] : hf_tensors(model_)) t.copy_(checkpoint_tensor(ck, "master", name));
  }
  build_strategy(host_masters(model_));
  {
    torch::NoGradGuard no_grad;
    strategy_->load(ck);  // masters and moments (this rank's shard, re-sharded as needed)
  }
  const std::string where = ck.dir + "/state.json";
  step_ = ck.step;
  strategy_->set_steps_taken(st.optimizer_steps);
  tokens_ = st.tokens;
  nonfinite_total_ = st.nonfinite_total;
  nonfinite_in_row_ = st.nonfinite_in_row;
  loss_spikes_total_ = st.loss_spikes_total;
  recent_losses_.assign(st.recent_losses.begin(), st.recent_losses.end());
  last_eval_step_ = st.last_eval_step;
  tracker_ = RecoveryTracker::from_json(st.recovery, where + ": recovery");
  const size_t tracked = tracker_.tasks().tasks().size();
  if (tasks_ ? tasks_->tasks().size() != tracked : tracked != 0)
    throw Error(where,
                fmt::format("the checkpoint tracks {} tasks, the recipe's eval.tasks lists {}",
                            tracked, tasks_ ? tasks_->tasks().size() : 0),
                "resume with the run's own recipe.yaml");
  if (auto rng = ck.rng_state()) {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(rng->clone());
  }
  load_eval();
  last_checkpoint_step_ = step_;
  loader_state_json_ = st.loader;
}

void Trainer::train_one_step() {
  const double lr = lr_at(r_.train.schedule, step_);
  const bool eval_now = (step_ + 1) % r_.eval.every == 0 || step_ + 1 == r_.train.steps;

  auto t0 = std::chrono::steady_clock::now();
  Batch batch = loader_->next();
  time_data_ += seconds_since(t0);
  if (r_.train.skips_batch_of(step_ + 1)) {
    // A known bad data range: its batch is consumed (the data order after it is unchanged)
    // but trains nothing; the schedule still advances with the step.
    ++step_;
    json::Value rec(json::Object{});
    rec.set("kind", json::Value("skip"));
    rec.set("step", json::Value(step_));
    rec.set("reason", json::Value("train.skip_batches"));
    if (pg_) pg_->mark_progress(step_);
    if (metrics_) metrics_->append(rec);
    if (root()) fmt::print("step {}: batch skipped (train.skip_batches)\n", step_);
    if (eval_now) do_eval({}, {});
    return;
  }
  TokenTensors tensors = batch_to_tensors(batch);

  StepOptions so;
  so.micro_batch = r_.train.micro_batch;
  so.lr = lr;
  so.grad_clip = r_.train.grad_clip;
  so.layer_stats = eval_now;
  so.step = step_ + 1;
  so.rank = env_.rank;
  so.device = device_;
  so.faults = &faults_;
  so.timer = timer_.get();
  if (r_.train.loss_spike_factor > 0 &&
      static_cast<int64_t>(recent_losses_.size()) == r_.train.loss_spike_window) {
    double mean = 0;
    for (double l : recent_losses_) mean += l;
    so.max_loss = r_.train.loss_spike_factor * mean / static_cast<double>(recent_losses_.size());
  }
  const StepResult result =
      train_step(*model_, *strategy_, tensors.input_BT, tensors.target_BT, so);
  const double loss_sum = result.loss, norm = result.grad_norm;
  const bool finite = result.finite;
  if (result.spike) {
    ++loss_spikes_total_;
    fmt::print(
        "warning: step {}: loss {:.4f} is above {:.4f} ({:g} x the mean of the last {} "
        "steps); update skipped ({} in all)\n",
        step_ + 1, loss_sum, so.max_loss, r_.train.loss_spike_factor, r_.train.loss_spike_window,
        loss_spikes_total_);
  } else if (finite) {
    recent_losses_.push_back(loss_sum);
    while (static_cast<int64_t>(recent_losses_.size()) > r_.train.loss_spike_window)
      recent_losses_.pop_front();
  }
  if (finite) {
    nonfinite_in_row_ = 0;
  } else {
    ++nonfinite_in_row_;
    ++nonfinite_total_;
    fmt::print("warning: step {}: non-finite {}; update skipped ({} in a row, {} in all)\n",
               step_ + 1, std::isfinite(loss_sum) ? "gradient norm" : "loss", nonfinite_in_row_,
               nonfinite_total_);
  }

  ++step_;
  tokens_ += r_.train.global_batch * r_.data.seq_len;
  window_loss_sum_ += loss_sum;
  ++window_steps_;

  json::Value rec(json::Object{});
  rec.set("kind", json::Value("train"));
  rec.set("step", json::Value(step_));
  rec.set("tokens", json::Value(tokens_));
  rec.set("loss", num(loss_sum));
  rec.set("lr", num(lr));
  rec.set("grad_norm", num(norm));
  if (!finite || result.spike) rec.set("skipped", json::Value(true));
  if (result.spike) rec.set("loss_spike", json::Value(true));
  if (pg_) pg_->mark_progress(step_);
  if (metrics_) metrics_->append(rec);  // rank 0 alone logs; the others have no sinks
  if (tb_) {
    tb_->add_scalar("train/loss", loss_sum, step_);
    tb_->add_scalar("train/lr", lr, step_);
    tb_->add_scalar("train/grad_norm", norm, step_);
  }

  const bool log_now = step_ % r_.log.every == 0 || step_ == r_.train.steps;
  if (log_now) collect_phase_times();  // every rank: the one wait for the timer's events
  if (root() && log_now) {
    const double elapsed = seconds_since(window_start_);
    ThroughputInput in;
    in.tokens = static_cast<double>(window_steps_ * r_.train.global_batch * r_.data.seq_len);
    in.seconds = elapsed;
    in.world_size = env_.world_size;
    in.flops_per_token = config_.training_flops_per_token(r_.data.seq_len);
    in.datasheet_tflops = datasheet_tflops_;
    in.measured_gflops = peak_gflops_;
    in.gpu = device_.is_cuda();
    in.device_name = device_name_;
    const Throughput tp = compute_throughput(in);
    const double done = static_cast<double>(step_ - start_step_);
    const double eta = seconds_since(start_) / done * static_cast<double>(r_.train.steps - step_);
    std::string rec_text;
    if (!tracker_.history().empty())
      if (auto rv = tracker_.recovery(tracker_.history().back().eval_loss))
        rec_text = fmt::format(" | recovery {:.2f}", *rv);
    fmt::print(
        "step {:5}/{} [{:3.0f}%] | loss {:.4f} | lr {:.2e} | grad {:.3f} | {} | mem {}{} | ETA "
        "{}\n",
        step_, r_.train.steps,
        100.0 * static_cast<double>(step_) / static_cast<double>(r_.train.steps),
        window_loss_sum_ / static_cast<double>(window_steps_), lr, norm, format_throughput(in, tp),
        memory_text(), rec_text, fmt_eta(eta));
    std::fflush(stdout);
    if (metrics_) {
      json::Value perf(json::Object{});
      perf.set("kind", json::Value("perf"));
      perf.set("step", json::Value(step_));
      perf.set("tokens_per_s", num(tp.tokens_per_s));
      perf.set("tokens_per_s_per_device", num(tp.tokens_per_s_per_device));
      if (tp.mfu_measured) perf.set("mfu_measured", num(*tp.mfu_measured));
      if (tp.mfu_datasheet) perf.set("mfu_datasheet", num(*tp.mfu_datasheet));
      for (const auto& [key, value] : memory_numbers()) perf.set(key, json::Value(value));
      metrics_->append(perf);
    }
    if (tb_) {
      tb_->add_scalar("perf/tokens_per_s", tp.tokens_per_s, step_);
      tb_->add_scalar("perf/tokens_per_s_per_device", tp.tokens_per_s_per_device, step_);
      if (tp.mfu_measured) tb_->add_scalar("perf/mfu", *tp.mfu_measured, step_);
    }
    window_loss_sum_ = 0;
    window_steps_ = 0;
    window_start_ = std::chrono::steady_clock::now();
  }
  if (eval_now) do_eval(result.layer_grad_norms, result.update_ratios);
}

void Trainer::do_eval(const std::vector<double>& grad_norms,
                      const std::vector<double>& update_ratios) {
  const double eval_loss = evaluate(model_, eval_tokens_, r_.eval.batch, device_, pg_.get());
  std::vector<TaskMetrics> task_scores;
  double task_seconds = 0;
  const bool tasks_now = tasks_ && r_.eval.tasks_due(step_, r_.train.steps);
  if (tasks_now) task_scores = score_tasks_on(*model_, nullptr, &task_seconds);
  fault_point("eval");
  if (!root()) {  // the tracker, logs and diagnostics are rank 0's
    last_eval_step_ = step_;
    return;
  }
  std::vector<LayerStats> layers(static_cast<size_t>(config_.num_hidden_layers));
  auto cosines = layer_hidden_cosines(
      *model_, eval_tokens_.narrow(0, 0, std::min<int64_t>(r_.eval.batch, eval_tokens_.size(0)))
                   .narrow(1, 0, eval_tokens_.size(1) - 1)
                   .to(device_));
  for (size_t i = 0; i < layers.size(); ++i) {
    if (i < grad_norms.size()) layers[i].grad_norm = grad_norms[i];
    if (i < update_ratios.size()) layers[i].update_ratio = update_ratios[i];
    if (i < cosines.size()) layers[i].hidden_cosine = cosines[i];
  }
  auto reached = tracker_.observe(step_, tokens_, eval_loss, layers);
  last_eval_step_ = step_;
  json::Value rec(json::Object{});
  rec.set("kind", json::Value("eval"));
  rec.set("step", json::Value(step_));
  rec.set("tokens", json::Value(tokens_));
  rec.set("eval_loss", num(eval_loss));
  const auto bpb = tracker_.bpb(eval_loss);
  if (bpb) rec.set("bpb", num(*bpb));
  auto recovery = tracker_.recovery(eval_loss);
  rec.set("recovery", json::number_or_null(recovery));
  metrics_->append(rec);
  if (tb_) {
    tb_->add_scalar("eval/loss", eval_loss, step_);
    if (bpb) tb_->add_scalar("eval/bpb", *bpb, step_);
    if (recovery) tb_->add_scalar("eval/recovery", *recovery, step_);
    for (size_t i = 0; i < layers.size(); ++i)
      if (std::isfinite(layers[i].grad_norm))
        tb_->add_scalar(fmt::format("layers/grad_norm/{}", i), layers[i].grad_norm, step_);
    tb_->flush();
  }
  fmt::print("eval  step {} | eval_loss {:.4f}", step_, eval_loss);
  if (bpb) fmt::print(" | bpb {:.4f}", *bpb);
  if (tracker_.base_loss()) fmt::print(" | base_loss {:.4f}", *tracker_.base_loss());
  if (recovery) fmt::print(" | recovery {:.3f}", *recovery);
  for (const auto& m : reached) fmt::print(" | reached {}", m);
  fmt::print("\n");
  if (tasks_now) log_tasks(task_scores, task_seconds);
  std::fflush(stdout);
}

void Trainer::log_tasks(const std::vector<TaskMetrics>& scores, double seconds) {
  TaskRecovery& tr = tracker_.tasks();
  tr.observe(step_, tokens_, scores);
  tr.add_seconds(seconds);
  json::Object per_task;
  std::string line = fmt::format("tasks step {}", step_);
  for (size_t i = 0; i < scores.size(); ++i) {
    const TaskRecovery::Task& t = tr.tasks()[i];
    const TaskMetrics& m = scores[i];
    const auto recovery = TaskRecovery::recovery(t, m.acc);
    per_task.emplace_back(t.name,
                          json::Object{{"items", json::Value(m.items)},
                                       {"acc", json::number_or_null(m.acc)},
                                       {"acc_stderr", json::number_or_null(m.acc_stderr)},
                                       {"acc_norm", json::number_or_null(m.acc_norm)},
                                       {"acc_norm_stderr", json::number_or_null(m.acc_norm_stderr)},
                                       {"recovery", json::number_or_null(recovery)}});
    if (tb_) {
      tb_->add_scalar("tasks/" + t.name + "/acc", m.acc, step_);
      tb_->add_scalar("tasks/" + t.name + "/acc_norm", m.acc_norm, step_);
      if (recovery) tb_->add_scalar("tasks/" + t.name + "/recovery", *recovery, step_);
    }
    auto out = std::back_inserter(line);
    fmt::format_to(out, " | {} acc {:.3f} acc_norm {:.3f}", t.name, m.acc, m.acc_norm);
    if (t.base) {
      fmt::format_to(out, " (base {:.3f}", t.base->acc);
      if (t.scaled_0) fmt::format_to(out, ", scaled_0 {:.3f}", t.scaled_0->acc);
      line += ")";
    }
    if (recovery) fmt::format_to(out, " recovery {:.2f}", *recovery);
  }
  json::Value rec(json::Object{});
  rec.set("kind", json::Value("tasks"));
  rec.set("step", json::Value(step_));
  rec.set("tokens", json::Value(tokens_));
  rec.set("seconds", num(seconds));
  rec.set("tasks", json::Value(std::move(per_task)));
  metrics_->append(rec);
  if (tb_) tb_->add_scalar("tasks/seconds", seconds, step_);
  fmt::print("{} | {:.1f} s\n", line, seconds);
}

bool Trainer::save(const char* why) {
  CheckpointContents c;
  c.step = step_;
  json::Value config = config_.to_json();
  if (!provenance_json_.is_null()) config.set(kProvenanceKey, provenance_json_);
  config.set("dtype", json::Value("float32"));  // the weights stored are the fp32 masters
  c.config = config;
  c.recipe_yaml = r_.to_yaml();
  TrainState st;
  st.step = step_;
  st.optimizer_steps = strategy_->steps_taken();
  st.tokens = tokens_;
  st.loader = loader_->state().to_json();
  st.nonfinite_total = nonfinite_total_;
  st.nonfinite_in_row = nonfinite_in_row_;
  st.loss_spikes_total = loss_spikes_total_;
  st.recent_losses.assign(recent_losses_.begin(), recent_losses_.end());
  st.last_eval_step = last_eval_step_;
  st.recovery = tracker_.to_json();
  st.lr = lr_at(r_.train.schedule, std::max<int64_t>(0, step_ - 1));
  st.world_size = env_.world_size;
  st.strategy = r_.distributed.strategy;
  st.recipe_sha256 = r_.sha256;
  st.precision = precision_.name;
  c.state = st.to_json();
  auto t = std::chrono::steady_clock::now();
  std::string dir, failure;
  try {
    if (metrics_)
      metrics_->sync();  // the log up to this step is on disk before the checkpoint exists
    if (tb_) tb_->flush();
    dir = strategy_->save_checkpoint(run_dir_, c, r_.checkpoint.keep);
  } catch (const std::exception& e) {  // dus::Error, std::filesystem::filesystem_error
    failure = e.what();
  }
  // Every rank learns whether any failed: they go on, or stop, together.
  const bool saved = sum_over_ranks(pg_.get(), {failure.empty() ? 0.0 : 1.0})[0] == 0;
  if (saved) {
    last_checkpoint_step_ = step_;
    failed_saves_in_row_ = 0;
    if (root()) fmt::print("checkpoint {} ({}, {:.1f} s)\n", dir, why, seconds_since(t));
    return true;
  }
  if (root()) abandon_checkpoint(run_dir_, step_);
  ++failed_saves_in_row_;
  const std::string last_good =
      last_checkpoint_step_ > 0 ? fmt::format("step {}", last_checkpoint_step_) : "none yet";
  if (failure.empty()) failure = "another rank could not write its part";
  fmt::print(stderr,
             "warning: checkpoint at step {} ({}) failed: {}\nwarning: training goes on; "
             "the last good checkpoint is {} ({} of checkpoint.max_failed_saves = {} "
             "failed in a row)\n",
             step_, why, failure, last_good, failed_saves_in_row_, r_.checkpoint.max_failed_saves);
  if (metrics_) {
    json::Value rec(json::Object{});
    rec.set("kind", json::Value("checkpoint_failed"));
    rec.set("step", json::Value(step_));
    rec.set("error", json::Value(failure));
    metrics_->append(rec);  // held in memory if the disk refuses it too
  }
  if (failed_saves_in_row_ >= r_.checkpoint.max_failed_saves)
    throw Error(run_dir_ + "/checkpoints",
                fmt::format("{} checkpoint saves in a row failed; the last: {}",
                            failed_saves_in_row_, failure),
                "free space (or fix the permissions) there and continue with 'dus resume " +
                    run_dir_ + "': it starts from the last good checkpoint (" + last_good + ")");
  return false;
}

void Trainer::finish() {
  if (!root()) return;
  // recovery.json says in which precision its losses were measured: all of them, base_loss
  // and scaled_loss_0 included, in the training precision through the training loss path.
  json::Value summary = tracker_.summary_json();
  summary.set("eval_precision", json::Value(precision_.name));
  write_file_atomic(run_dir_ + "/" + kRecoveryFile, json::dump(summary, 2) + "\n");
  // The final model in Hugging Face layout, in the compute dtype, with provenance.
  SaveOptions out;
  out.dtype = precision_.compute;
  if (!provenance_json_.is_null()) {
    out.extra_config = json::Value(json::Object{{kProvenanceKey, provenance_json_}});
    out.metadata[kProvenanceKey] = json::dump(provenance_json_);
  }
  // The parameters hold the masters rounded to the compute dtype (every step copies or
  // all-gathers them).
  save_hf_model(model_, run_dir_ + "/final", out);
  if (!r_.data.tokenizer.empty() && fs::exists(r_.data.tokenizer))
    copy_tokenizer_files(r_.data.tokenizer, run_dir_ + "/final");
  fmt::print("\nfinal model      {}/final\n", run_dir_);
  fmt::print("{}", RecoveryTracker::summary_text(tracker_.summary_json()));
  collect_phase_times();
  const double total = time_data_ + time_forward_ + time_backward_ + time_optimizer_;
  if (total > 0)
    fmt::print(
        "time split       data {:.1f}%, forward {:.1f}%, backward {:.1f}%, optimizer {:.1f}% of "
        "{:.1f} "
        "s\n",
        100 * time_data_ / total, 100 * time_forward_ / total, 100 * time_backward_ / total,
        100 * time_optimizer_ / total, total);
}

void Trainer::collect_phase_times() {
  if (!timer_) return;
  const auto t = timer_->collect();
  time_forward_ += t[static_cast<size_t>(Phase::forward)];
  time_backward_ += t[static_cast<size_t>(Phase::backward)];
  time_optimizer_ += t[static_cast<size_t>(Phase::optimizer)];
}

std::vector<std::pair<std::string, int64_t>> Trainer::memory_numbers() const {
  if (device_.is_cuda()) {
    const CudaMemory m = cuda_memory(device_.index());
    return {{"gpu_allocated_bytes", m.allocated},
            {"gpu_max_allocated_bytes", m.peak_allocated},
            {"gpu_reserved_bytes", m.reserved},
            {"gpu_max_reserved_bytes", m.peak_reserved}};
  }
  return {{"rss_bytes", current_rss_bytes()}, {"max_rss_bytes", peak_rss_bytes()}};
}

std::string Trainer::memory_text() const {
  if (device_.is_cuda()) {
    const CudaMemory m = cuda_memory(device_.index());
    return human_bytes(static_cast<double>(m.peak_allocated)) + " max allocated, " +
           human_bytes(static_cast<double>(m.peak_reserved)) + " reserved";
  }
  return human_bytes(static_cast<double>(current_rss_bytes()));
}

// The process group, when the environment describes several ranks (torchrun, dus launch,
// SLURM). Ranks other than 0 keep stderr (errors) but print nothing on stdout.
void Trainer::setup_distributed() {
  env_ = dist::dist_env_from_environment();
  const int64_t per_rank = r_.train.global_batch / env_.world_size;
  if (r_.train.global_batch % env_.world_size != 0 || per_rank % r_.train.micro_batch != 0)
    throw Error(r_.source + ": train.global_batch_tokens",
                fmt::format("the global batch of {} sequences does not split into {} ranks x "
                            "whole micro-batches of {}",
                            r_.train.global_batch, env_.world_size, r_.train.micro_batch),
                "make the global batch a multiple of world_size x train.micro_batch");
  if (torch::cuda::is_available()) {
    const DeviceChoice dc = cuda_device_for_rank(env_.local_rank);
    device_ = c10::Device(c10::DeviceType::CUDA, static_cast<c10::DeviceIndex>(dc.index));
    device_guard_.emplace(device_);  // this rank's current device: its streams and events
    fmt::print("gpu              cuda:{} ({})\n", dc.index, dc.reason);
  }
  // A job started by dus launch or torchrun has a process group even of one rank (`dus launch
  // --nproc 1` runs the ddp path on NCCL or Gloo); a plain `dus train`, or one SLURM task, none.
  if (env_.world_size == 1 && env_.source != "torchrun") return;
  dist::ProcessGroupOptions po;
  po.timeout_s = r_.distributed.timeout_s;
  po.cuda_device = device_.is_cuda() ? device_.index() : -1;
  pg_ = dist::ProcessGroup::create(env_, po);
  fmt::print("distributed      rank {} of {} ({}, {}, strategy {}, timeout {:.0f} s)\n", env_.rank,
             env_.world_size, pg_->backend(), env_.source, r_.distributed.strategy,
             r_.distributed.timeout_s);
  std::fflush(stdout);
  if (!root() && !std::getenv("DUS_LOG_ALL_RANKS")) {
    if (!std::freopen("/dev/null", "w", stdout))
      throw Error(fmt::format("rank {}", env_.rank), "cannot silence stdout");
  }
}

// Every rank must stop after the same step: a signal seen by any rank stops them all.
bool Trainer::agree_to_stop(int sig) {
  return sum_over_ranks(pg_.get(), {sig != 0 ? 1.0 : 0.0})[0] > 0;
}

int Trainer::run() {
  // First: a stop requested during start-up is honoured after the first step, with a checkpoint.
  stop_signals();
  use_expandable_segments();
  setup_distributed();
  setup_run_dir();
  if (r_.run.threads > 0) at::set_num_threads(r_.run.threads);
  faults_ = FaultInjection::from_environment();
  std::optional<Tokenizer> tokenizer;
  if (!r_.data.tokenizer.empty()) {
    if (!fs::exists(r_.data.tokenizer))
      throw Error(r_.source + ": data.tokenizer", "file " + r_.data.tokenizer + " does not exist");
    // Megatron files record no tokenizer: its vocabulary bounds their ids and its BOS/EOS
    // separate their documents.
    bool megatron = false;
    for (const auto* list : {&r_.data.train, &r_.data.val})
      for (const DataSource& d : *list) megatron = megatron || d.is_megatron();
    // Loaded once: its byte table (one walk over the vocabulary) serves every evaluation.
    tokenizer.emplace(Tokenizer::load(r_.data.tokenizer));
    tokenizer_sha_ = tokenizer->sha256();  // of the file Tokenizer::resolve chose
    const Tokenizer& tok = *tokenizer;
    token_bytes_ = TokenBytes::from_tokenizer(tok);
    if (megatron) {
      megatron_.vocab_size = tok.vocab_size();
      megatron_.bos_id = tok.bos_id();
      megatron_.eos_id = tok.eos_id();
      megatron_.tokenizer_sha256 = tokenizer_sha_;
    }
  }

  std::optional<LoadedCheckpoint> ck;
  if (resume_) {
    ck = open_latest_checkpoint(run_dir_);
    if (!ck) throw Error(run_dir_, "no checkpoint to resume from", "start the run with dus train");
  }
  const ModelConfig start_config =
      ck ? ModelConfig::from_json(ck->config, ck->dir)
         : ModelConfig::load(!r_.model.init_from.empty() ? r_.model.init_from : r_.model.config);
  precision_ = choose_precision(r_.train.precision, device_, start_config.hidden_size);
  if (!r_.model.init_from.empty()) {
    // On resume the checkpoint's config.json carries the base model's ids unchanged.
    const std::string config_path =
        ck ? ck->dir + "/config.json"
           : (fs::is_directory(r_.model.init_from) ? r_.model.init_from + "/config.json"
                                                   : r_.model.init_from);
    const ModelConfig base = ck ? ModelConfig::from_json(ck->config, config_path)
                                : ModelConfig::load(r_.model.init_from);
    model_tokens_ = ModelSpecialTokens{config_path, base.bos_token_id, base.eos_token_id};
  }
  fmt::print("dus train        run {} -> {}\n", r_.run.name, run_dir_);
  fmt::print("device           {}, {} threads, precision {} ({})\n", device_.str(),
             at::get_num_threads(), precision_.name, precision_.reason);
  if (model_tokens_) {
    fmt::print("special tokens   bos {}, eos {} (the model's; every dataset must agree)\n",
               model_tokens_->bos.describe(), model_tokens_->eos.describe());
    const std::string unchecked =
        special_tokens_unchecked(*model_tokens_, parse_bos_policy(r_.data.bos));
    if (!unchecked.empty() && root()) fmt::print("{}\n", unchecked);
  }
  if (!r_.eval.tasks.empty()) {
    // Read and tokenized once, before any model work: a bad task file stops the run here.
    tasks_ = TaskSet::load(r_.eval.tasks, *tokenizer, start_config.vocab_size);
    fmt::print("tasks            {}, {}\n", tasks_->add_bos() ? "BOS first" : "no BOS",
               r_.eval.tasks_every ? fmt::format("every {} steps", r_.eval.tasks_every)
                                   : "at every evaluation");
    fmt::print("{}", tasks_->describe("task             "));
  }

  if (r_.data.tokenizer.empty())
    fmt::print(
        "bpb              not reported: data.tokenizer is not set (bits per byte needs "
        "the tokenizer's bytes per token)\n");
  resolve_kernels();
  if (ck)
    restore_from_checkpoint(*ck);
  else
    build_model_fresh();
  tracker_.set_bpb_per_loss(bpb_per_loss_);
  model_->activation_checkpointing = r_.train.activation_checkpointing;
  fmt::print("kernels          {} ({})\n", model_->kernels().describe(), r_.kernels);
  fmt::print("optimizer        {}: {}\n", strategy_->name(), strategy_->describe());
  if (pg_) {
    const int64_t micro_batches = r_.train.global_batch / env_.world_size / r_.train.micro_batch;
    fmt::print("communication    {} of gradient reductions per step per rank\n",
               human_bytes(strategy_->reduce_bytes_per_step(micro_batches)));
  }
  model_->train();
  // What start-up cost this process at its peak (dus plan's "peak at start-up" on a CPU).
  fmt::print("start-up         peak resident memory {} (rss_bytes={})\n",
             human_bytes(static_cast<double>(peak_rss_bytes())), peak_rss_bytes());

  LoaderOptions lo;
  lo.sources = r_.data.train;
  lo.seq_len = r_.data.seq_len;
  lo.global_batch = r_.train.global_batch;
  lo.seed = r_.run.seed;
  lo.bos = parse_bos_policy(r_.data.bos);
  lo.tokenizer_sha256 = tokenizer_sha_;
  lo.megatron = megatron_;
  lo.model_vocab_size = config_.vocab_size;
  lo.model_tokens = model_tokens_;
  lo.rank = env_.rank;
  lo.world_size = env_.world_size;
  loader_ = std::make_unique<PackedLoader>(lo);
  if (ck)
    loader_->restore(LoaderState::from_json(loader_state_json_, ck->dir + "/state.json: loader"));

  // Run-directory records: what was chosen and why, for reproducing and comparing runs.
  json::Value info(json::Object{});
  info.set("precision", json::Value(precision_.name));
  info.set("precision_reason", json::Value(precision_.reason));
  info.set("device", json::Value(device_.str()));
  info.set("threads", json::Value(at::get_num_threads()));
  info.set("parameters", json::Value(config_.parameter_count()));
  info.set("layers", json::Value(config_.num_hidden_layers));
  info.set("global_batch", json::Value(r_.train.global_batch));
  info.set("tokens_per_step", json::Value(r_.train.global_batch * r_.data.seq_len));
  info.set("recipe_sha256", json::Value(r_.sha256));
  info.set("world_size", json::Value(env_.world_size));
  info.set("strategy", json::Value(r_.distributed.strategy));
  if (root()) write_file_atomic(run_dir_ + "/run_info.json", json::dump(info, 2) + "\n");

  const std::string metrics_path = run_dir_ + "/" + kMetricsFile;
  if (root())
    metrics_ = std::make_unique<MetricsLog>(ck ? MetricsLog::open_for_resume(metrics_path, step_)
                                               : MetricsLog(metrics_path));
  if (root() && r_.log.tensorboard) {
    tb_ = std::make_unique<TensorBoardWriter>(run_dir_ + "/tensorboard");
    // TensorBoard then drops what the killed process logged past the checkpoint.
    if (ck) tb_->mark_restart(step_ + 1);
  }
  if (!ck) {
    json::Value rec(json::Object{});
    rec.set("kind", json::Value("start"));
    rec.set("step", json::Value(0));
    if (tracker_.base_loss()) rec.set("base_loss", num(*tracker_.base_loss()));
    if (tracker_.scaled_loss_0()) rec.set("scaled_loss_0", num(*tracker_.scaled_loss_0()));
    if (auto b = tracker_.bpb(tracker_.base_loss())) rec.set("base_bpb", num(*b));
    if (auto b = tracker_.bpb(tracker_.scaled_loss_0())) rec.set("scaled_bpb_0", num(*b));
    rec.set("precision", json::Value(precision_.name));
    if (!tracker_.tasks().empty()) {
      json::Object per_task;
      for (const TaskRecovery::Task& t : tracker_.tasks().tasks()) {
        json::Object o{{"items", json::Value(t.items)}};
        if (t.base) {
          o.emplace_back("base_acc", num(t.base->acc));
          o.emplace_back("base_acc_norm", num(t.base->acc_norm));
        }
        if (t.scaled_0) {
          o.emplace_back("scaled_acc_0", num(t.scaled_0->acc));
          o.emplace_back("scaled_acc_norm_0", num(t.scaled_0->acc_norm));
        }
        per_task.emplace_back(t.name, json::Value(std::move(o)));
      }
      rec.set("tasks", json::Value(std::move(per_task)));
    }
    if (metrics_) metrics_->append(rec);
  }

  const auto peak = measure_matmul_rate(precision_.compute, device_, device_.is_cuda() ? 1.0 : 0.2);
  peak_gflops_ = peak.best_gflops;
  fmt::print(
      "matmul peak      {:.1f} GFLOP/s ({}, n = {}, best of {} repeats now; an MFU denominator)\n",
      peak.best_gflops, precision_.name, peak.size, peak.repeats);
  if (device_.is_cuda()) {
    device_name_ = cuda_device_name(device_.index());
    // The datasheet peak is the dense bf16 tensor-core rate: a denominator for bf16 runs only.
    if (precision_.compute == torch::kBFloat16)
      datasheet_tflops_ = datasheet_bf16_peak_tflops(device_name_);
    if (datasheet_tflops_)
      fmt::print("datasheet peak   {} TFLOP/s dense bf16 ({})\n",
                 static_cast<int>(*datasheet_tflops_), device_name_);
    else
      fmt::print("datasheet peak   none for {}\n", device_name_);
  }
  timer_ = std::make_unique<DeviceTimer>(device_);
  // From here on freed memory stays in the heap for the next step's tensors of the same sizes
  // (no page faults for each step's large tensors). Not during start-up: what it frees (the
  // base model, the host masters) goes back to the system.
  keep_freed_memory_for_reuse();
  fmt::print(
      "batch            {} sequences x {} tokens = {} tokens per step ({} micro-batches of "
      "{} per rank)\n",
      r_.train.global_batch, r_.data.seq_len, with_commas(r_.train.global_batch * r_.data.seq_len),
      r_.train.global_batch / env_.world_size / r_.train.micro_batch, r_.train.micro_batch);

  start_ = window_start_ = std::chrono::steady_clock::now();
  start_step_ = step_;
  while (step_ < r_.train.steps) {
    train_one_step();
    if (nonfinite_in_row_ >= r_.train.max_nonfinite_in_row) {
      save("stopping: non-finite losses");
      throw Error(
          run_dir_,
          fmt::format("{} steps in a row had a non-finite loss or gradient", nonfinite_in_row_),
          "lower train.lr or raise train.warmup_steps; the last checkpoint holds the state before");
    }
    if (const int own = stop_signals().pending(); agree_to_stop(own)) {
      // Another rank's signal stops this one as SIGTERM.
      const char* sig = own == SIGINT ? "SIGINT" : "SIGTERM";
      if (!save(sig))
        throw Error(run_dir_ + "/checkpoints",
                    fmt::format("stopped by {} at step {}, but its checkpoint failed", sig, step_),
                    fmt::format("dus resume continues from the last good checkpoint (step {})",
                                last_checkpoint_step_));
      fmt::print("stopped by {} at step {}; continue with: dus resume {}\n", sig, step_, run_dir_);
      if (pg_) pg_->shutdown();
      return 0;
    }
    if (step_ % r_.checkpoint.every == 0 && step_ < r_.train.steps) save("periodic");
  }
  if (last_eval_step_ != step_) do_eval({}, {});
  if (last_checkpoint_step_ != step_) save("end of training");
  finish();
  if (pg_) pg_->shutdown();  // clean: the destructor of a group not shut down aborts it
  return 0;
}

}  // namespace

int run_training(const TrainJob& job) {
  return Trainer(job).run();
}

}  // namespace dus
