#include "trainer/train_loop.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <torch/types.h>

#include <unistd.h>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "data/sha256.h"
#include "data/torch_batch.h"
#include "model/error.h"
#include "model/file_util.h"
#include "model/hf_checkpoint.h"
#include "model/kernels/cross_entropy.h"
#include "model/kernels/kernel_set.h"
#include "model/loss.h"
#include "scaling/depth_upscale.h"
#include "trainer/adamw.h"
#include "trainer/checkpoint.h"
#include "trainer/distributed/ddp.h"
#include "trainer/distributed/process_group.h"
#include "trainer/distributed/zero1.h"
#include "trainer/layer_stats.h"
#include "trainer/matmul_rate.h"
#include "trainer/metrics_log.h"
#include "trainer/precision.h"
#include "trainer/process_stats.h"
#include "trainer/recovery_tracker.h"
#include "trainer/tensorboard_writer.h"
#include "trainer/text_format.h"

namespace dus {

namespace fs = std::filesystem;

namespace {

// SIGTERM / SIGINT: finish the step, checkpoint, exit 0. The only global besides the process
// group, because a signal handler can reach nothing else.
std::atomic<int> g_stop_signal{0};
extern "C" void on_stop_signal(int sig) {
  g_stop_signal.store(sig);
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

json::Value num(double x) {
  return json::Value(x);
}

// The held-out set: the first `sequences` windows of the val split, in stream order, so every
// evaluation (and every resume) scores the same tokens.
torch::Tensor load_eval_tokens(const Recipe& r, const std::string& tokenizer_sha, int64_t vocab) {
  LoaderOptions o;
  const auto& dirs = r.data.val.empty() ? std::vector<std::string>{} : r.data.val;
  if (dirs.empty())
    for (const auto& s : r.data.train) o.sources.push_back({s.dir, "val", 1.0});
  for (const auto& d : dirs) o.sources.push_back({d, "val", 1.0});
  o.seq_len = r.data.seq_len;
  o.shuffle = false;
  o.seed = 0;
  o.bos = parse_bos_policy(r.data.bos);
  o.tokenizer_sha256 = tokenizer_sha;
  o.model_vocab_size = vocab;
  o.global_batch = 1;
  PackedLoader probe(o);
  int64_t windows = 0;
  for (size_t i = 0; i < probe.num_sources(); ++i) windows += probe.windows(i);
  int64_t n = std::min<int64_t>(r.eval.sequences, windows);
  if (n <= 0)
    throw Error(r.source + ": data", "the val split holds no full sequence of seq_len + 1 tokens");
  if (n < r.eval.sequences)
    std::printf("warning: eval.sequences = %lld but the val split holds %lld; using %lld\n",
                static_cast<long long>(r.eval.sequences), static_cast<long long>(windows),
                static_cast<long long>(n));
  o.global_batch = n;
  PackedLoader loader(o);
  Batch b = loader.next();
  auto t = batch_to_tensors(b);
  return torch::cat({t.input_BT, t.target_BT.narrow(1, t.target_BT.size(1) - 1, 1)},
                    1);  // (n, T+1)
}

// With a process group, each rank scores its contiguous share of the sequences and the
// per-sequence losses are summed over ranks: the same mean as one process (up to fp order).
double evaluate(Transformer& model, const torch::Tensor& tokens_NT1, int64_t batch,
                c10::Device device, dist::ProcessGroup* pg = nullptr) {
  torch::NoGradGuard no_grad;
  const bool was_training = model->is_training();
  model->eval();
  double sum = 0;
  int64_t count = 0;
  const int64_t n_all = tokens_NT1.size(0), t = tokens_NT1.size(1) - 1;
  const int64_t first = pg ? n_all * pg->rank() / pg->size() : 0;
  const int64_t n = pg ? n_all * (pg->rank() + 1) / pg->size() : n_all;
  for (int64_t i = first; i < n; i += batch) {
    auto chunk = tokens_NT1.narrow(0, i, std::min(batch, n - i)).to(device);
    auto input = chunk.narrow(1, 0, t), target = chunk.narrow(1, 1, t);
    auto logits = model->forward(input);
    auto loss =
        dus::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}), target.reshape({-1}));
    sum += loss.item<double>() * static_cast<double>(chunk.size(0));
    count += chunk.size(0);
  }
  if (was_training) model->train();
  if (pg) {
    auto v = torch::tensor({sum, static_cast<double>(count)}, torch::kFloat64);
    pg->all_reduce_sum(v);
    return v[0].item<double>() / v[1].item<double>();
  }
  return sum / static_cast<double>(count);
}

void clear_grads(Transformer& model) {
  for (auto& p : model->parameters()) p.mutable_grad() = torch::Tensor();
}

std::string fmt_eta(double seconds) {
  char buf[32];
  const long s = static_cast<long>(seconds);
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, (s / 60) % 60);
  else
    std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  return buf;
}

class Trainer {
 public:
  explicit Trainer(const TrainJob& job) : r_(job.recipe), resume_(job.resume) {}

  int run();

 private:
  void setup_run_dir();
  void build_model_fresh();
  void restore_from_checkpoint(const LoadedCheckpoint& ck);
  void build_optimizer(const NamedTensors& fp32_masters);
  void train_step();
  void do_eval(const std::vector<double>& grad_norms, const std::vector<double>& update_ratios);
  void save(const char* why);
  void finish();
  void setup_distributed();
  bool root() const { return env_.rank == 0; }
  bool agree_to_stop(int sig);

  Recipe r_;
  bool resume_;
  std::string run_dir_;
  c10::Device device_ = c10::Device(c10::DeviceType::CPU);
  PrecisionChoice precision_;
  Transformer model_{nullptr};
  ModelConfig config_;
  json::Value provenance_json_;  // "dus" block of config.json, when scaled
  std::unique_ptr<AdamW> optimizer_;
  std::unique_ptr<PackedLoader> loader_;
  torch::Tensor eval_tokens_;
  std::string tokenizer_sha_;
  RecoveryTracker tracker_;
  std::unique_ptr<MetricsLog> metrics_;
  std::unique_ptr<TensorBoardWriter> tb_;

  int64_t step_ = 0;    // optimizer steps completed
  int64_t tokens_ = 0;  // training tokens consumed
  int64_t nonfinite_in_row_ = 0, nonfinite_total_ = 0;
  int64_t last_eval_step_ = -1, last_checkpoint_step_ = -1;
  double peak_gflops_ = 0;  // matmul rate measured at start: the MFU denominator on CPU
  std::chrono::steady_clock::time_point start_;
  int64_t start_step_ = 0;
  double window_loss_sum_ = 0;
  int64_t window_steps_ = 0;
  std::chrono::steady_clock::time_point window_start_;
  double time_data_ = 0, time_forward_ = 0, time_backward_ = 0, time_optimizer_ = 0;
  int64_t kill_at_step_ = 0;       // test hook: DUS_TEST_KILL_AT_STEP
  json::Value loader_state_json_;  // from the checkpoint, applied once the loader exists
  // Data parallelism (trainer/distributed): pg_ is null in a single process. ddp_ wraps the
  // model's gradients; zero1_ replaces optimizer_ (sharded masters and moments).
  dist::DistEnv env_;
  std::shared_ptr<dist::ProcessGroup> pg_;
  std::unique_ptr<dist::DdpGradSync> ddp_;
  std::unique_ptr<dist::Zero1Optimizer> zero1_;
  int kill_rank_ = -1;                    // test hook: DUS_TEST_KILL_RANK (only that rank dies)
  int64_t hang_at_step_ = 0;              // test hook: DUS_TEST_HANG_AT_STEP
  std::vector<int64_t> nonfinite_steps_;  // test hook: DUS_TEST_NONFINITE_STEPS=3,4
};

void Trainer::setup_run_dir() {
  run_dir_ = r_.run.dir;
  if (!resume_) {
    if (!list_checkpoints(run_dir_).empty())
      throw Error(run_dir_, "the run directory already holds checkpoints",
                  "continue it with 'dus resume " + run_dir_ + "', or pass another --run-dir");
    if (root()) {
      fs::create_directories(run_dir_);
      write_file_atomic(run_dir_ + "/recipe.yaml", r_.to_yaml());
    }
  }
}

void Trainer::build_optimizer(const NamedTensors& fp32_masters) {
  std::vector<std::pair<std::string, at::Tensor>> params;
  for (const auto& p : model_->named_parameters()) params.emplace_back(p.key(), p.value());
  if (r_.distributed.strategy == "zero1") {
    zero1_ = std::make_unique<dist::Zero1Optimizer>(pg_, params, r_.train.optimizer, fp32_masters);
    return;
  }
  optimizer_ = std::make_unique<AdamW>(params, r_.train.optimizer);
  // bf16 compute: the masters keep the fp32 values the model was built or loaded with.
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < fp32_masters.size(); ++i) {
    auto& slot = optimizer_->slots()[i];
    if (slot.name != fp32_masters[i].first) throw Error("optimizer", "parameter order changed");
    if (!slot.master.is_same(slot.param)) slot.master.copy_(fp32_masters[i].second);
  }
}

void Trainer::build_model_fresh() {
  torch::manual_seed(r_.run.seed);
  if (!r_.model.init_from.empty()) {
    std::printf("loading base model %s\n", r_.model.init_from.c_str());
    LoadOptions load;  // fp32 first: the fp32 masters start from the checkpoint's exact values
    load.device = device_;
    Transformer base = load_hf_model(r_.model.init_from, load);
    config_ = base->config();
    eval_tokens_ = load_eval_tokens(r_, tokenizer_sha_, config_.vocab_size);
    const double base_loss = evaluate(base, eval_tokens_, r_.eval.batch, device_, pg_.get());
    std::printf("base_loss        %.6f  (%lld layers, %s parameters, %lld held-out sequences)\n",
                base_loss, static_cast<long long>(config_.num_hidden_layers),
                with_commas(config_.parameter_count()).c_str(),
                static_cast<long long>(eval_tokens_.size(0)));
    std::optional<double> scaled_loss_0;
    LayerLabels labels = LayerLabels::plain(config_.num_hidden_layers);
    if (r_.model.scaling) {
      LayerPlan plan =
          make_plan(*r_.model.scaling, config_.num_hidden_layers, r_.source + ": scaling");
      ScaledModel scaled = apply_plan(base, plan);
      base = Transformer(nullptr);  // free the base: one extra copy of the weights at most
      model_ = scaled.model;
      config_ = model_->config();
      provenance_json_ = scaled.provenance.to_json();
      labels = LayerLabels::from_provenance(scaled.provenance);
      scaled_loss_0 = evaluate(model_, eval_tokens_, r_.eval.batch, device_, pg_.get());
      std::printf("scaled           %s -> %lld layers, %s parameters\n", plan.describe().c_str(),
                  static_cast<long long>(config_.num_hidden_layers),
                  with_commas(config_.parameter_count()).c_str());
      for (const auto& seam : scaled.provenance.seams())
        std::printf("seam             %s\n", seam.name().c_str());
      std::printf("scaled_loss_0    %.6f  (%+.6f over base)\n", *scaled_loss_0,
                  *scaled_loss_0 - base_loss);
    } else {
      model_ = base;
    }
    tracker_ = RecoveryTracker(base_loss, scaled_loss_0, labels);
  } else {
    config_ = ModelConfig::load(r_.model.config);
    ModelInit init;
    init.device = device_;
    model_ = Transformer(config_, init);
    eval_tokens_ = load_eval_tokens(r_, tokenizer_sha_, config_.vocab_size);
    tracker_ =
        RecoveryTracker(std::nullopt, std::nullopt, LayerLabels::plain(config_.num_hidden_layers));
    std::printf("model            from scratch: %lld layers, %s parameters\n",
                static_cast<long long>(config_.num_hidden_layers),
                with_commas(config_.parameter_count()).c_str());
  }
  NamedTensors masters = hf_tensors(model_);
  for (auto& m : masters) m.second = m.second.clone();  // own copies: the model may change dtype
  model_->to(precision_.compute);
  build_optimizer(masters);
}

void Trainer::restore_from_checkpoint(const LoadedCheckpoint& ck) {
  std::printf("resuming from %s (step %lld)\n", ck.dir.c_str(), static_cast<long long>(ck.step));
  const std::string saved_recipe =
      ck.state.find("recipe_sha256") ? ck.state.find("recipe_sha256")->as_string() : "";
  if (saved_recipe != r_.sha256) {
    // Only the run length and logging may change on resume; anything else is another run.
    throw Error(ck.dir + "/state.json",
                "the checkpoint was written by a different recipe (sha256 " +
                    saved_recipe.substr(0, 12) + " vs " + r_.sha256.substr(0, 12) + ")",
                "resume with the run's own recipe.yaml; start a new run for a changed recipe");
  }
  config_ = ModelConfig::from_json(ck.config, ck.dir + "/config.json");
  if (const json::Value* d = ck.config.find("dus")) provenance_json_ = *d;
  ModelInit init;
  init.device = device_;
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
  NamedTensors masters = hf_tensors(model_);
  for (auto& m : masters) m.second = m.second.to(device_, torch::kFloat32).clone();
  model_->to(precision_.compute);
  build_optimizer(masters);
  torch::NoGradGuard no_grad;
  if (zero1_) {
    zero1_->load(ck);  // this rank's shard of masters and moments, re-sharded as needed
    zero1_->set_steps_taken(
        ck.state.find("optimizer_steps") ? ck.state.find("optimizer_steps")->as_int() : ck.step);
  } else {
    for (auto& slot : optimizer_->slots()) {
      slot.exp_avg.copy_(checkpoint_tensor(ck, "exp_avg", slot.name));
      slot.exp_avg_sq.copy_(checkpoint_tensor(ck, "exp_avg_sq", slot.name));
    }
    optimizer_->copy_masters_to_params();
  }
  const json::Value& s = ck.state;
  const std::string where = ck.dir + "/state.json";
  step_ = ck.step;
  if (optimizer_)
    optimizer_->set_steps_taken(s.find("optimizer_steps") ? s.find("optimizer_steps")->as_int(where)
                                                          : step_);
  tokens_ = s.find("tokens")->as_int(where + ": tokens");
  nonfinite_total_ = s.find("nonfinite_total") ? s.find("nonfinite_total")->as_int(where) : 0;
  nonfinite_in_row_ = s.find("nonfinite_in_row") ? s.find("nonfinite_in_row")->as_int(where) : 0;
  last_eval_step_ = s.find("last_eval_step") ? s.find("last_eval_step")->as_int(where) : -1;
  tracker_ = RecoveryTracker::from_json(*s.find("recovery"), where + ": recovery");
  if (auto rng = ck.rng_state()) {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(rng->clone());
  }
  eval_tokens_ = load_eval_tokens(r_, tokenizer_sha_, config_.vocab_size);
  last_checkpoint_step_ = step_;
  loader_state_json_ = *s.find("loader");
}

void Trainer::train_step() {
  const int64_t accum = r_.train.global_batch / env_.world_size / r_.train.micro_batch;
  const double lr = lr_at(r_.train.schedule, step_);
  const bool eval_now = (step_ + 1) % r_.eval.every == 0 || step_ + 1 == r_.train.steps;

  auto t0 = std::chrono::steady_clock::now();
  Batch batch = loader_->next();
  TokenTensors tensors = batch_to_tensors(batch);
  time_data_ += seconds_since(t0);

  // Gradient accumulation: each micro-batch's mean loss is divided by the number of
  // micro-batches, so the summed gradient is that of the mean over the global batch.
  double loss_sum = 0;
  for (int64_t m = 0; m < accum; ++m) {
    auto input =
        tensors.input_BT.narrow(0, m * r_.train.micro_batch, r_.train.micro_batch).to(device_);
    auto target =
        tensors.target_BT.narrow(0, m * r_.train.micro_batch, r_.train.micro_batch).to(device_);
    auto tf = std::chrono::steady_clock::now();
    // Chunked lm_head + loss when the kernel set says so (dus bench train runs the same call).
    torch::Tensor loss = dus::training_loss(*model_, input, target) / static_cast<double>(accum);
    time_forward_ += seconds_since(tf);
    if (kill_at_step_ == step_ + 1 && (kill_rank_ < 0 || kill_rank_ == env_.rank)) {
      std::fflush(stdout);
      ::kill(::getpid(), SIGKILL);  // test hook: die in the middle of this step, as kill -9 would
    }
    if (hang_at_step_ == step_ + 1 && (kill_rank_ < 0 || kill_rank_ == env_.rank)) {
      std::fflush(stdout);
      while (true) ::pause();  // test hook: hang (alive, never reaching the next collective)
    }
    auto tb = std::chrono::steady_clock::now();
    if (ddp_) ddp_->begin_micro_step(m + 1 == accum);  // communicate on the last micro-step only
    loss.backward();
    time_backward_ += seconds_since(tb);
    loss_sum += loss.item<double>();
  }

  auto to = std::chrono::steady_clock::now();
  if (ddp_) ddp_->finish();                // every .grad now the mean over ranks
  if (zero1_) zero1_->reduce_gradients();  // this rank's shard of the mean
  if (pg_) {
    // The logged loss is that of the global batch: the mean of the ranks' (local mean) losses.
    auto v = torch::tensor({loss_sum}, torch::kFloat64);
    pg_->all_reduce_sum(v);
    loss_sum = v.item<double>() / static_cast<double>(env_.world_size);
  }
  const double norm = zero1_ ? zero1_->grad_norm() : global_grad_norm(model_->parameters());
  if (std::find(nonfinite_steps_.begin(), nonfinite_steps_.end(), step_ + 1) !=
      nonfinite_steps_.end())
    loss_sum = std::nan("");  // test hook: DUS_TEST_NONFINITE_STEPS
  const bool finite = std::isfinite(loss_sum) && std::isfinite(norm);
  std::vector<double> layer_grads, update_ratios;
  if (finite) {
    nonfinite_in_row_ = 0;
    if (r_.train.grad_clip > 0 && norm > r_.train.grad_clip) {
      torch::NoGradGuard no_grad;
      const double scale = r_.train.grad_clip / (norm + 1e-6);
      if (zero1_)
        zero1_->scale_gradients(scale);
      else
        scale_grads(model_->parameters(), scale);
    }
    LayerSnapshot before;
    if (eval_now) {
      if (!zero1_) layer_grads = layer_grad_norms(*model_);  // zero1: each rank holds a shard only
      before = snapshot_layers(*model_);
    }
    if (zero1_)
      zero1_->step(lr);
    else
      optimizer_->step(lr);
    if (eval_now) update_ratios = layer_update_ratios(before, snapshot_layers(*model_));
  } else {
    ++nonfinite_in_row_;
    ++nonfinite_total_;
    std::printf(
        "warning: step %lld: non-finite %s; update skipped (%lld in a row, %lld in all)\n",
        static_cast<long long>(step_ + 1), std::isfinite(loss_sum) ? "gradient norm" : "loss",
        static_cast<long long>(nonfinite_in_row_), static_cast<long long>(nonfinite_total_));
  }
  if (ddp_)
    ddp_->zero_grads();  // the .grad views into the buckets stay
  else if (zero1_)
    zero1_->zero_grads();
  else
    clear_grads(model_);
  time_optimizer_ += seconds_since(to);

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
  if (!finite) rec.set("skipped", json::Value(true));
  if (pg_) pg_->mark_progress(step_);
  if (metrics_) metrics_->append(rec);  // rank 0 alone logs; the others have no sinks
  if (tb_) {
    tb_->add_scalar("train/loss", loss_sum, step_);
    tb_->add_scalar("train/lr", lr, step_);
    tb_->add_scalar("train/grad_norm", norm, step_);
  }

  if (root() && (step_ % r_.log.every == 0 || step_ == r_.train.steps)) {
    const double elapsed = seconds_since(window_start_);
    const double tok_s =
        static_cast<double>(window_steps_ * r_.train.global_batch * r_.data.seq_len) / elapsed;
    const double mfu =
        tok_s * config_.training_flops_per_token(r_.data.seq_len) / 1e9 / peak_gflops_;
    const double done = static_cast<double>(step_ - start_step_);
    const double eta = seconds_since(start_) / done * static_cast<double>(r_.train.steps - step_);
    std::string rec_text;
    if (!tracker_.history().empty())
      if (auto rv = tracker_.recovery(tracker_.history().back().eval_loss)) {
        char b[48];
        std::snprintf(b, sizeof b, " | recovery %.2f", *rv);
        rec_text = b;
      }
    std::printf(
        "step %5lld/%lld [%3.0f%%] | loss %.4f | lr %.2e | grad %.3f | %.0f tok/s | MFU %.0f%% | "
        "mem %s%s | ETA %s\n",
        static_cast<long long>(step_), static_cast<long long>(r_.train.steps),
        100.0 * static_cast<double>(step_) / static_cast<double>(r_.train.steps),
        window_loss_sum_ / static_cast<double>(window_steps_), lr, norm, tok_s, 100.0 * mfu,
        human_bytes(static_cast<double>(current_rss_bytes())).c_str(), rec_text.c_str(),
        fmt_eta(eta).c_str());
    std::fflush(stdout);
    if (tb_) tb_->add_scalar("perf/tokens_per_s", tok_s, step_);
    window_loss_sum_ = 0;
    window_steps_ = 0;
    window_start_ = std::chrono::steady_clock::now();
  }
  if (eval_now) do_eval(layer_grads, update_ratios);
}

void Trainer::do_eval(const std::vector<double>& grad_norms,
                      const std::vector<double>& update_ratios) {
  const double eval_loss = evaluate(model_, eval_tokens_, r_.eval.batch, device_, pg_.get());
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
  auto recovery = tracker_.recovery(eval_loss);
  rec.set("recovery", recovery ? num(*recovery) : json::Value());
  metrics_->append(rec);
  if (tb_) {
    tb_->add_scalar("eval/loss", eval_loss, step_);
    if (recovery) tb_->add_scalar("eval/recovery", *recovery, step_);
    for (size_t i = 0; i < layers.size(); ++i)
      if (std::isfinite(layers[i].grad_norm))
        tb_->add_scalar("layers/grad_norm/" + std::to_string(i), layers[i].grad_norm, step_);
    tb_->flush();
  }
  std::printf("eval  step %lld | eval_loss %.4f", static_cast<long long>(step_), eval_loss);
  if (tracker_.base_loss()) std::printf(" | base_loss %.4f", *tracker_.base_loss());
  if (recovery) std::printf(" | recovery %.3f", *recovery);
  for (const auto& m : reached) std::printf(" | reached %s", m.c_str());
  std::printf("\n");
  std::fflush(stdout);
}

void Trainer::save(const char* why) {
  if (!zero1_ && !root()) {  // ddp: every rank holds the same state; rank 0 writes it whole
    last_checkpoint_step_ = step_;
    return;
  }
  CheckpointContents c;
  c.step = step_;
  json::Value config = config_.to_json();
  if (!provenance_json_.is_null()) config.set("dus", provenance_json_);
  config.set("dtype", json::Value("float32"));  // the weights stored are the fp32 masters
  c.config = config;
  c.recipe_yaml = r_.to_yaml();
  if (optimizer_) {
    for (auto& slot : optimizer_->slots()) {
      c.model.emplace_back(slot.name, slot.master);
      c.optimizer.emplace_back("exp_avg." + slot.name, slot.exp_avg);
      c.optimizer.emplace_back("exp_avg_sq." + slot.name, slot.exp_avg_sq);
    }
    c.optimizer.emplace_back("rng.cpu", at::detail::getDefaultCPUGenerator().get_state());
  }
  json::Value s(json::Object{});
  s.set("step", json::Value(step_));
  s.set("optimizer_steps", json::Value(zero1_ ? zero1_->steps_taken() : optimizer_->steps_taken()));
  s.set("tokens", json::Value(tokens_));
  s.set("loader", loader_->state().to_json());
  s.set("nonfinite_total", json::Value(nonfinite_total_));
  s.set("nonfinite_in_row", json::Value(nonfinite_in_row_));
  s.set("last_eval_step", json::Value(last_eval_step_));
  s.set("recovery", tracker_.to_json());
  s.set("lr", num(lr_at(r_.train.schedule, std::max<int64_t>(0, step_ - 1))));
  s.set("world_size", json::Value(env_.world_size));
  s.set("strategy", json::Value(r_.distributed.strategy));
  s.set("recipe_sha256", json::Value(r_.sha256));
  s.set("precision", json::Value(precision_.name));
  c.state = s;
  if (metrics_)
    metrics_->sync();  // the log up to this step is on disk before the checkpoint exists
  if (tb_) tb_->flush();
  auto t = std::chrono::steady_clock::now();
  std::string dir;
  if (zero1_) {
    // Every rank writes its shard into step_N.tmp; rank 0 then the manifest (state.json, last)
    // and the rename: the checkpoint appears whole or not at all.
    const std::string tmp = run_dir_ + "/checkpoints/" + checkpoint_dir_name(step_) + ".tmp";
    if (root()) begin_checkpoint(run_dir_, step_);
    if (pg_) pg_->barrier();
    NamedTensors shard = zero1_->shard_tensors();
    if (root()) shard.emplace_back("rng.cpu", at::detail::getDefaultCPUGenerator().get_state());
    write_safetensors(tmp + "/" + zero1_shard_file(env_.rank), shard,
                      {{"step", std::to_string(step_)},
                       {"begin", std::to_string(zero1_->shard_begin())},
                       {"end", std::to_string(zero1_->shard_end())}});
    if (pg_) pg_->barrier();
    if (root()) {
      json::Array shards;
      for (int r = 0; r < env_.world_size; ++r) {
        auto [b, e] = zero1_->shard_range(r);
        shards.push_back(json::Value(
            json::Array{json::Value(zero1_shard_file(r)), json::Value(b), json::Value(e)}));
      }
      json::Value manifest(json::Object{});
      manifest.set("world_size", json::Value(env_.world_size));
      manifest.set("params", flat_layout_to_json(zero1_->layout()));
      manifest.set("shards", json::Value(std::move(shards)));
      c.state.set("zero1", manifest);
      dir = commit_checkpoint(run_dir_, c, r_.checkpoint.keep);
    }
    if (pg_) pg_->barrier();
  } else {
    dir = save_checkpoint(run_dir_, c, r_.checkpoint.keep);
  }
  last_checkpoint_step_ = step_;
  std::printf("checkpoint %s (%s, %.1f s)\n", dir.c_str(), why, seconds_since(t));
  std::fflush(stdout);
}

void Trainer::finish() {
  if (!root()) return;
  tracker_.write_summary(run_dir_ + "/" + kRecoveryFile);
  // The final model in Hugging Face layout, in the compute dtype, with provenance.
  SaveOptions out;
  out.dtype = precision_.compute;
  if (!provenance_json_.is_null()) {
    out.extra_config = json::Value(json::Object{{"dus", provenance_json_}});
    out.metadata["dus"] = json::dump(provenance_json_);
  }
  if (optimizer_) optimizer_->copy_masters_to_params();  // zero1: the all-gather already did
  save_hf_model(model_, run_dir_ + "/final", out);
  if (!r_.data.tokenizer.empty() && fs::exists(r_.data.tokenizer))
    fs::copy_file(r_.data.tokenizer, run_dir_ + "/final/tokenizer.model",
                  fs::copy_options::overwrite_existing);
  std::printf("\nfinal model      %s/final\n", run_dir_.c_str());
  std::printf("%s", RecoveryTracker::summary_text(tracker_.summary_json()).c_str());
  const double total = time_data_ + time_forward_ + time_backward_ + time_optimizer_;
  if (total > 0)
    std::printf(
        "time split       data %.1f%%, forward %.1f%%, backward %.1f%%, optimizer %.1f%% of %.1f "
        "s\n",
        100 * time_data_ / total, 100 * time_forward_ / total, 100 * time_backward_ / total,
        100 * time_optimizer_ / total, total);
}

// The process group, when the environment describes several ranks (torchrun, dus launch,
// SLURM). Ranks other than 0 keep stderr (errors) but print nothing on stdout.
void Trainer::setup_distributed() {
  env_ = dist::dist_env_from_environment();
  if (const char* k = std::getenv("DUS_TEST_KILL_RANK")) kill_rank_ = std::atoi(k);
  const int64_t per_rank = r_.train.global_batch / env_.world_size;
  if (r_.train.global_batch % env_.world_size != 0 || per_rank % r_.train.micro_batch != 0)
    throw Error(r_.source + ": train.global_batch_tokens",
                "the global batch of " + std::to_string(r_.train.global_batch) +
                    " sequences does not split into " + std::to_string(env_.world_size) +
                    " ranks x whole micro-batches of " + std::to_string(r_.train.micro_batch),
                "make the global batch a multiple of world_size x train.micro_batch");
  if (torch::cuda::is_available())
    device_ = c10::Device(c10::DeviceType::CUDA, static_cast<c10::DeviceIndex>(env_.local_rank));
  if (env_.world_size == 1) return;
  dist::ProcessGroupOptions po;
  po.timeout_s = r_.distributed.timeout_s;
  po.cuda = device_.is_cuda();
  pg_ = dist::ProcessGroup::create(env_, po);
  std::printf("distributed      rank %d of %d (%s, %s, strategy %s, timeout %.0f s)\n", env_.rank,
              env_.world_size, pg_->backend(), env_.source.c_str(), r_.distributed.strategy.c_str(),
              r_.distributed.timeout_s);
  std::fflush(stdout);
  if (!root() && !std::getenv("DUS_LOG_ALL_RANKS")) {
    if (!std::freopen("/dev/null", "w", stdout))
      throw Error("rank " + std::to_string(env_.rank), "cannot silence stdout");
  }
}

// Every rank must stop after the same step: a signal seen by any rank stops them all.
bool Trainer::agree_to_stop(int sig) {
  if (!pg_) return sig != 0;
  auto v = torch::tensor({sig != 0 ? 1.0 : 0.0}, torch::kFloat64);
  pg_->all_reduce_sum(v);
  return v.item<double>() > 0;
}

int Trainer::run() {
  setup_distributed();
  setup_run_dir();
  if (r_.run.threads > 0) at::set_num_threads(r_.run.threads);
  keep_freed_memory_for_reuse();  // no page faults for each step's large tensors
  if (const char* k = std::getenv("DUS_TEST_KILL_AT_STEP")) kill_at_step_ = std::atoll(k);
  if (const char* k = std::getenv("DUS_TEST_HANG_AT_STEP")) hang_at_step_ = std::atoll(k);
  if (const char* k = std::getenv("DUS_TEST_NONFINITE_STEPS")) {
    for (const char* p = k; *p;) {
      nonfinite_steps_.push_back(std::atoll(p));
      while (*p && *p != ',') ++p;
      if (*p == ',') ++p;
    }
  }
  if (!r_.data.tokenizer.empty()) {
    if (!fs::exists(r_.data.tokenizer))
      throw Error(r_.source + ": data.tokenizer", "file " + r_.data.tokenizer + " does not exist");
    tokenizer_sha_ = sha256_file(r_.data.tokenizer);
  }

  std::optional<LoadedCheckpoint> ck;
  if (resume_) {
    ck = open_latest_checkpoint(run_dir_);
    if (!ck) throw Error(run_dir_, "no checkpoint to resume from", "start the run with dus train");
  }
  const int64_t width =
      ck ? ModelConfig::from_json(ck->config, ck->dir).hidden_size
         : (!r_.model.init_from.empty() ? ModelConfig::load(r_.model.init_from).hidden_size
                                        : ModelConfig::load(r_.model.config).hidden_size);
  precision_ = choose_precision(r_.train.precision, device_, width);
  std::printf("dus train        run %s -> %s\n", r_.run.name.c_str(), run_dir_.c_str());
  std::printf("device           %s, %d threads, precision %s (%s)\n", device_.str().c_str(),
              at::get_num_threads(), precision_.name.c_str(), precision_.reason.c_str());

  if (ck)
    restore_from_checkpoint(*ck);
  else
    build_model_fresh();
  model_->activation_checkpointing = r_.train.activation_checkpointing;
  {
    // Fused ops (auto self-tests them first): CUDA kernels, or the CPU loops for RMSNorm,
    // rotary, SwiGLU, the loss chunk and (fp32) causal attention. The chunked loss everywhere: it
    // never holds the full fp32 logits and their gradient (100M config on CPU: 1.3 GB less peak
    // memory, and faster).
    kernels::KernelOptions ko;
    ko.mode = kernels::parse_kernel_mode(r_.kernels, r_.source + ": kernels");
    ko.chunked_loss = true;
    model_->set_kernels(kernels::resolve_kernels(ko, device_));
    std::printf("kernels          %s (%s)\n", model_->kernels().describe().c_str(),
                r_.kernels.c_str());
  }
  model_->train();
  if (pg_ && !zero1_) {
    std::vector<at::Tensor> params;
    for (auto& p : model_->parameters()) params.push_back(p);
    dist::DdpOptions dopt;
    dopt.bucket_mb = r_.distributed.bucket_mb;
    ddp_ = std::make_unique<dist::DdpGradSync>(pg_, params, dopt);
    // Every rank starts from rank 0's weights (fp32 masters included).
    for (auto& slot : optimizer_->slots()) pg_->broadcast(slot.master, 0);
    optimizer_->copy_masters_to_params();
    std::printf(
        "ddp              %lld gradient buckets of <= %.0f MiB, all-reduce overlapped with "
        "backward\n",
        static_cast<long long>(ddp_->buckets()), r_.distributed.bucket_mb);
  }

  LoaderOptions lo;
  lo.sources = r_.data.train;
  lo.seq_len = r_.data.seq_len;
  lo.global_batch = r_.train.global_batch;
  lo.seed = r_.run.seed;
  lo.bos = parse_bos_policy(r_.data.bos);
  lo.tokenizer_sha256 = tokenizer_sha_;
  lo.model_vocab_size = config_.vocab_size;
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
    rec.set("precision", json::Value(precision_.name));
    if (metrics_) metrics_->append(rec);
  }

  const auto peak = measure_matmul_rate(precision_.compute, device_, 0.2);
  peak_gflops_ = peak.best_gflops;
  std::printf("matmul peak      %.1f GFLOP/s (%s, best of %d products now; the MFU denominator)\n",
              peak.best_gflops, precision_.name.c_str(), peak.repeats);
  std::printf(
      "batch            %lld sequences x %lld tokens = %s tokens per step (%lld micro-batches of "
      "%lld per rank)\n",
      static_cast<long long>(r_.train.global_batch), static_cast<long long>(r_.data.seq_len),
      with_commas(r_.train.global_batch * r_.data.seq_len).c_str(),
      static_cast<long long>(r_.train.global_batch / env_.world_size / r_.train.micro_batch),
      static_cast<long long>(r_.train.micro_batch));

  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGINT, on_stop_signal);
  start_ = window_start_ = std::chrono::steady_clock::now();
  start_step_ = step_;
  while (step_ < r_.train.steps) {
    train_step();
    if (nonfinite_in_row_ >= r_.train.max_nonfinite_in_row) {
      save("stopping: non-finite losses");
      throw Error(
          run_dir_,
          std::to_string(nonfinite_in_row_) + " steps in a row had a non-finite loss or gradient",
          "lower train.lr or raise train.warmup_steps; the last checkpoint holds the state before");
    }
    if (agree_to_stop(g_stop_signal.load())) {
      const int sig = g_stop_signal.load() ? g_stop_signal.load() : SIGTERM;  // another rank's
      save(sig == SIGTERM ? "SIGTERM" : "SIGINT");
      std::printf("stopped by %s at step %lld; continue with: dus resume %s\n",
                  sig == SIGTERM ? "SIGTERM" : "SIGINT", static_cast<long long>(step_),
                  run_dir_.c_str());
      return 0;
    }
    if (step_ % r_.checkpoint.every == 0 && step_ < r_.train.steps) save("periodic");
  }
  if (last_eval_step_ != step_) do_eval({}, {});
  if (last_checkpoint_step_ != step_) save("end of training");
  finish();
  return 0;
}

}  // namespace

int run_training(const TrainJob& job) {
  return Trainer(job).run();
}

}  // namespace dus
