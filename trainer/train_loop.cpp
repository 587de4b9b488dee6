#include "trainer/train_loop.h"

#include <ATen/Parallel.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/cuda.h>
#include <torch/types.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <unistd.h>

#include "data/sha256.h"
#include "data/torch_batch.h"
#include "model/error.h"
#include "model/file_util.h"
#include "model/hf_checkpoint.h"
#include "model/loss.h"
#include "scaling/depth_upscale.h"
#include "trainer/adamw.h"
#include "trainer/checkpoint.h"
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
extern "C" void on_stop_signal(int sig) { g_stop_signal.store(sig); }

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

json::Value num(double x) { return json::Value(x); }

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
  if (n <= 0) throw Error(r.source + ": data", "the val split holds no full sequence of seq_len + 1 tokens");
  if (n < r.eval.sequences)
    std::printf("warning: eval.sequences = %lld but the val split holds %lld; using %lld\n",
                static_cast<long long>(r.eval.sequences), static_cast<long long>(windows),
                static_cast<long long>(n));
  o.global_batch = n;
  PackedLoader loader(o);
  Batch b = loader.next();
  auto t = batch_to_tensors(b);
  return torch::cat({t.input_BT, t.target_BT.narrow(1, t.target_BT.size(1) - 1, 1)}, 1);  // (n, T+1)
}

double evaluate(Transformer& model, const torch::Tensor& tokens_NT1, int64_t batch, c10::Device device) {
  torch::NoGradGuard no_grad;
  const bool was_training = model->is_training();
  model->eval();
  double sum = 0;
  int64_t count = 0;
  const int64_t n = tokens_NT1.size(0), t = tokens_NT1.size(1) - 1;
  for (int64_t i = 0; i < n; i += batch) {
    auto chunk = tokens_NT1.narrow(0, i, std::min(batch, n - i)).to(device);
    auto input = chunk.narrow(1, 0, t), target = chunk.narrow(1, 1, t);
    auto logits = model->forward(input);
    auto loss = dus::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}), target.reshape({-1}));
    sum += loss.item<double>() * static_cast<double>(chunk.size(0));
    count += chunk.size(0);
  }
  if (was_training) model->train();
  return sum / static_cast<double>(count);
}

// Global L2 norm of all gradients, accumulated in fp32 (fp64 for the final sum).
double grad_norm(Transformer& model) {
  double sq = 0;
  for (const auto& p : model->parameters())
    if (p.grad().defined()) sq += p.grad().to(torch::kFloat32).pow(2).sum().item<double>();
  return std::sqrt(sq);
}

void clear_grads(Transformer& model) {
  for (auto& p : model->parameters()) p.mutable_grad() = torch::Tensor();
}

std::string fmt_eta(double seconds) {
  char buf[32];
  const long s = static_cast<long>(seconds);
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, (s / 60) % 60);
  else std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
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
  int64_t kill_at_step_ = 0;  // test hook: DUS_TEST_KILL_AT_STEP
  json::Value loader_state_json_;  // from the checkpoint, applied once the loader exists
};

void Trainer::setup_run_dir() {
  run_dir_ = r_.run.dir;
  if (!resume_) {
    if (!list_checkpoints(run_dir_).empty())
      throw Error(run_dir_, "the run directory already holds checkpoints",
                  "continue it with 'dus resume " + run_dir_ + "', or pass another --run-dir");
    fs::create_directories(run_dir_);
    write_file_atomic(run_dir_ + "/recipe.yaml", r_.to_yaml());
  }
}

void Trainer::build_optimizer(const NamedTensors& fp32_masters) {
  std::vector<std::pair<std::string, at::Tensor>> params;
  for (const auto& p : model_->named_parameters()) params.emplace_back(p.key(), p.value());
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
    const double base_loss = evaluate(base, eval_tokens_, r_.eval.batch, device_);
    std::printf("base_loss        %.6f  (%lld layers, %s parameters, %lld held-out sequences)\n", base_loss,
                static_cast<long long>(config_.num_hidden_layers), with_commas(config_.parameter_count()).c_str(),
                static_cast<long long>(eval_tokens_.size(0)));
    std::optional<double> scaled_loss_0;
    LayerLabels labels = LayerLabels::plain(config_.num_hidden_layers);
    if (r_.model.scaling) {
      LayerPlan plan = make_plan(*r_.model.scaling, config_.num_hidden_layers, r_.source + ": scaling");
      ScaledModel scaled = apply_plan(base, plan);
      base = Transformer(nullptr);  // free the base: one extra copy of the weights at most
      model_ = scaled.model;
      config_ = model_->config();
      provenance_json_ = scaled.provenance.to_json();
      labels = LayerLabels::from_provenance(scaled.provenance);
      scaled_loss_0 = evaluate(model_, eval_tokens_, r_.eval.batch, device_);
      std::printf("scaled           %s -> %lld layers, %s parameters\n", plan.describe().c_str(),
                  static_cast<long long>(config_.num_hidden_layers), with_commas(config_.parameter_count()).c_str());
      for (const auto& seam : scaled.provenance.seams()) std::printf("seam             %s\n", seam.name().c_str());
      std::printf("scaled_loss_0    %.6f  (%+.6f over base)\n", *scaled_loss_0, *scaled_loss_0 - base_loss);
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
    tracker_ = RecoveryTracker(std::nullopt, std::nullopt, LayerLabels::plain(config_.num_hidden_layers));
    std::printf("model            from scratch: %lld layers, %s parameters\n",
                static_cast<long long>(config_.num_hidden_layers), with_commas(config_.parameter_count()).c_str());
  }
  NamedTensors masters = hf_tensors(model_);
  for (auto& m : masters) m.second = m.second.clone();  // own copies: the model may change dtype
  model_->to(precision_.compute);
  build_optimizer(masters);
}

void Trainer::restore_from_checkpoint(const LoadedCheckpoint& ck) {
  std::printf("resuming from %s (step %lld)\n", ck.dir.c_str(), static_cast<long long>(ck.step));
  const std::string saved_recipe = ck.state.find("recipe_sha256") ? ck.state.find("recipe_sha256")->as_string() : "";
  if (saved_recipe != r_.sha256) {
    // Only the run length and logging may change on resume; anything else is another run.
    throw Error(ck.dir + "/state.json", "the checkpoint was written by a different recipe (sha256 " +
                                            saved_recipe.substr(0, 12) + " vs " + r_.sha256.substr(0, 12) + ")",
                "resume with the run's own recipe.yaml; start a new run for a changed recipe");
  }
  config_ = ModelConfig::from_json(ck.config, ck.dir + "/config.json");
  if (const json::Value* d = ck.config.find("dus")) provenance_json_ = *d;
  ModelInit init;
  init.device = device_;
  init.random = false;
  model_ = Transformer(config_, init);
  // The checkpoint is a Hugging Face directory: load_weights validates names and shapes.
  SafetensorsCheckpoint weights = SafetensorsCheckpoint::open_dir(ck.dir);
  load_weights(model_, weights, ck.dir);
  NamedTensors masters = hf_tensors(model_);
  for (auto& m : masters) m.second = m.second.to(device_, torch::kFloat32).clone();
  model_->to(precision_.compute);
  build_optimizer(masters);
  torch::NoGradGuard no_grad;
  for (auto& slot : optimizer_->slots()) {
    slot.exp_avg.copy_(ck.optimizer.tensor("exp_avg." + slot.name));
    slot.exp_avg_sq.copy_(ck.optimizer.tensor("exp_avg_sq." + slot.name));
  }
  optimizer_->copy_masters_to_params();
  const json::Value& s = ck.state;
  const std::string where = ck.dir + "/state.json";
  step_ = ck.step;
  optimizer_->set_steps_taken(s.find("optimizer_steps") ? s.find("optimizer_steps")->as_int(where) : step_);
  tokens_ = s.find("tokens")->as_int(where + ": tokens");
  nonfinite_total_ = s.find("nonfinite_total") ? s.find("nonfinite_total")->as_int(where) : 0;
  nonfinite_in_row_ = s.find("nonfinite_in_row") ? s.find("nonfinite_in_row")->as_int(where) : 0;
  last_eval_step_ = s.find("last_eval_step") ? s.find("last_eval_step")->as_int(where) : -1;
  tracker_ = RecoveryTracker::from_json(*s.find("recovery"), where + ": recovery");
  if (ck.optimizer.contains("rng.cpu")) {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(ck.optimizer.tensor("rng.cpu").clone());
  }
  eval_tokens_ = load_eval_tokens(r_, tokenizer_sha_, config_.vocab_size);
  last_checkpoint_step_ = step_;
  loader_state_json_ = *s.find("loader");
}

void Trainer::train_step() {
  const int64_t accum = r_.train.global_batch / r_.train.micro_batch;
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
    auto input = tensors.input_BT.narrow(0, m * r_.train.micro_batch, r_.train.micro_batch).to(device_);
    auto target = tensors.target_BT.narrow(0, m * r_.train.micro_batch, r_.train.micro_batch).to(device_);
    auto tf = std::chrono::steady_clock::now();
    auto logits = model_->forward(input);  // (B, T, V)
    auto loss = dus::cross_entropy_loss(logits.reshape({-1, config_.vocab_size}), target.reshape({-1})) /
                static_cast<double>(accum);
    time_forward_ += seconds_since(tf);
    if (kill_at_step_ == step_ + 1) {
      std::fflush(stdout);
      ::kill(::getpid(), SIGKILL);  // test hook: die in the middle of this step, as kill -9 would
    }
    auto tb = std::chrono::steady_clock::now();
    loss.backward();
    time_backward_ += seconds_since(tb);
    loss_sum += loss.item<double>();
  }

  auto to = std::chrono::steady_clock::now();
  const double norm = grad_norm(model_);
  const bool finite = std::isfinite(loss_sum) && std::isfinite(norm);
  std::vector<double> layer_grads, update_ratios;
  if (finite) {
    nonfinite_in_row_ = 0;
    if (r_.train.grad_clip > 0 && norm > r_.train.grad_clip) {
      torch::NoGradGuard no_grad;
      const double scale = r_.train.grad_clip / (norm + 1e-6);
      for (auto& p : model_->parameters())
        if (p.grad().defined()) p.mutable_grad().mul_(scale);
    }
    LayerSnapshot before;
    if (eval_now) {
      layer_grads = layer_grad_norms(*model_);
      before = snapshot_layers(*model_);
    }
    optimizer_->step(lr);
    if (eval_now) update_ratios = layer_update_ratios(before, snapshot_layers(*model_));
  } else {
    ++nonfinite_in_row_;
    ++nonfinite_total_;
    std::printf("warning: step %lld: non-finite %s; update skipped (%lld in a row, %lld in all)\n",
                static_cast<long long>(step_ + 1), std::isfinite(loss_sum) ? "gradient norm" : "loss",
                static_cast<long long>(nonfinite_in_row_), static_cast<long long>(nonfinite_total_));
  }
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
  metrics_->append(rec);
  if (tb_) {
    tb_->add_scalar("train/loss", loss_sum, step_);
    tb_->add_scalar("train/lr", lr, step_);
    tb_->add_scalar("train/grad_norm", norm, step_);
  }

  if (step_ % r_.log.every == 0 || step_ == r_.train.steps) {
    const double elapsed = seconds_since(window_start_);
    const double tok_s = static_cast<double>(window_steps_ * r_.train.global_batch * r_.data.seq_len) / elapsed;
    const double mfu = tok_s * config_.training_flops_per_token(r_.data.seq_len) / 1e9 / peak_gflops_;
    const double done = static_cast<double>(step_ - start_step_);
    const double eta = seconds_since(start_) / done * static_cast<double>(r_.train.steps - step_);
    std::string rec_text;
    if (!tracker_.history().empty())
      if (auto rv = tracker_.recovery(tracker_.history().back().eval_loss)) {
        char b[48];
        std::snprintf(b, sizeof b, " | recovery %.2f", *rv);
        rec_text = b;
      }
    std::printf("step %5lld/%lld [%3.0f%%] | loss %.4f | lr %.2e | grad %.3f | %.0f tok/s | MFU %.0f%% | mem %s%s | ETA %s\n",
                static_cast<long long>(step_), static_cast<long long>(r_.train.steps),
                100.0 * static_cast<double>(step_) / static_cast<double>(r_.train.steps),
                window_loss_sum_ / static_cast<double>(window_steps_), lr, norm, tok_s, 100.0 * mfu,
                human_bytes(static_cast<double>(current_rss_bytes())).c_str(), rec_text.c_str(), fmt_eta(eta).c_str());
    std::fflush(stdout);
    if (tb_) tb_->add_scalar("perf/tokens_per_s", tok_s, step_);
    window_loss_sum_ = 0;
    window_steps_ = 0;
    window_start_ = std::chrono::steady_clock::now();
  }
  if (eval_now) do_eval(layer_grads, update_ratios);
}

void Trainer::do_eval(const std::vector<double>& grad_norms, const std::vector<double>& update_ratios) {
  const double eval_loss = evaluate(model_, eval_tokens_, r_.eval.batch, device_);
  std::vector<LayerStats> layers(static_cast<size_t>(config_.num_hidden_layers));
  auto cosines = layer_hidden_cosines(*model_, eval_tokens_.narrow(0, 0, std::min<int64_t>(r_.eval.batch, eval_tokens_.size(0)))
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
  CheckpointContents c;
  c.step = step_;
  json::Value config = config_.to_json();
  if (!provenance_json_.is_null()) config.set("dus", provenance_json_);
  config.set("dtype", json::Value("float32"));  // the weights stored are the fp32 masters
  c.config = config;
  c.recipe_yaml = r_.to_yaml();
  for (auto& slot : optimizer_->slots()) {
    c.model.emplace_back(slot.name, slot.master);
    c.optimizer.emplace_back("exp_avg." + slot.name, slot.exp_avg);
    c.optimizer.emplace_back("exp_avg_sq." + slot.name, slot.exp_avg_sq);
  }
  c.optimizer.emplace_back("rng.cpu", at::detail::getDefaultCPUGenerator().get_state());
  json::Value s(json::Object{});
  s.set("step", json::Value(step_));
  s.set("optimizer_steps", json::Value(optimizer_->steps_taken()));
  s.set("tokens", json::Value(tokens_));
  s.set("loader", loader_->state().to_json());
  s.set("nonfinite_total", json::Value(nonfinite_total_));
  s.set("nonfinite_in_row", json::Value(nonfinite_in_row_));
  s.set("last_eval_step", json::Value(last_eval_step_));
  s.set("recovery", tracker_.to_json());
  s.set("lr", num(lr_at(r_.train.schedule, std::max<int64_t>(0, step_ - 1))));
  s.set("world_size", json::Value(1));
  s.set("recipe_sha256", json::Value(r_.sha256));
  s.set("precision", json::Value(precision_.name));
  c.state = s;
  metrics_->sync();  // the log up to this step is on disk before the checkpoint exists
  if (tb_) tb_->flush();
  auto t = std::chrono::steady_clock::now();
  std::string dir = save_checkpoint(run_dir_, c, r_.checkpoint.keep);
  last_checkpoint_step_ = step_;
  std::printf("checkpoint %s (%s, %.1f s)\n", dir.c_str(), why, seconds_since(t));
  std::fflush(stdout);
}

void Trainer::finish() {
  tracker_.write_summary(run_dir_ + "/" + kRecoveryFile);
  // The final model in Hugging Face layout, in the compute dtype, with provenance.
  SaveOptions out;
  out.dtype = precision_.compute;
  if (!provenance_json_.is_null()) {
    out.extra_config = json::Value(json::Object{{"dus", provenance_json_}});
    out.metadata["dus"] = json::dump(provenance_json_);
  }
  optimizer_->copy_masters_to_params();
  save_hf_model(model_, run_dir_ + "/final", out);
  if (!r_.data.tokenizer.empty() && fs::exists(r_.data.tokenizer))
    fs::copy_file(r_.data.tokenizer, run_dir_ + "/final/tokenizer.model", fs::copy_options::overwrite_existing);
  std::printf("\nfinal model      %s/final\n", run_dir_.c_str());
  std::printf("%s", RecoveryTracker::summary_text(tracker_.summary_json()).c_str());
  const double total = time_data_ + time_forward_ + time_backward_ + time_optimizer_;
  if (total > 0)
    std::printf("time split       data %.1f%%, forward %.1f%%, backward %.1f%%, optimizer %.1f%% of %.1f s\n",
                100 * time_data_ / total, 100 * time_forward_ / total, 100 * time_backward_ / total,
                100 * time_optimizer_ / total, total);
}

int Trainer::run() {
  setup_run_dir();
  if (r_.run.threads > 0) at::set_num_threads(r_.run.threads);
  if (torch::cuda::is_available()) device_ = c10::Device(c10::DeviceType::CUDA, 0);
  if (const char* k = std::getenv("DUS_TEST_KILL_AT_STEP")) kill_at_step_ = std::atoll(k);
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
  const int64_t width = ck ? ModelConfig::from_json(ck->config, ck->dir).hidden_size
                           : (!r_.model.init_from.empty() ? ModelConfig::load(r_.model.init_from).hidden_size
                                                           : ModelConfig::load(r_.model.config).hidden_size);
  precision_ = choose_precision(r_.train.precision, device_, width);
  std::printf("dus train        run %s -> %s\n", r_.run.name.c_str(), run_dir_.c_str());
  std::printf("device           %s, %d threads, precision %s (%s)\n", device_.str().c_str(),
              at::get_num_threads(), precision_.name.c_str(), precision_.reason.c_str());

  if (ck) restore_from_checkpoint(*ck);
  else build_model_fresh();
  model_->activation_checkpointing = r_.train.activation_checkpointing;
  model_->train();

  LoaderOptions lo;
  lo.sources = r_.data.train;
  lo.seq_len = r_.data.seq_len;
  lo.global_batch = r_.train.global_batch;
  lo.seed = r_.run.seed;
  lo.bos = parse_bos_policy(r_.data.bos);
  lo.tokenizer_sha256 = tokenizer_sha_;
  lo.model_vocab_size = config_.vocab_size;
  loader_ = std::make_unique<PackedLoader>(lo);
  if (ck) loader_->restore(LoaderState::from_json(loader_state_json_, ck->dir + "/state.json: loader"));

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
  write_file_atomic(run_dir_ + "/run_info.json", json::dump(info, 2) + "\n");

  const std::string metrics_path = run_dir_ + "/" + kMetricsFile;
  metrics_ = std::make_unique<MetricsLog>(ck ? MetricsLog::open_for_resume(metrics_path, step_) : MetricsLog(metrics_path));
  if (r_.log.tensorboard) {
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
    metrics_->append(rec);
  }

  const auto peak = measure_matmul_rate(precision_.compute, device_, 0.2);
  peak_gflops_ = peak.gflops;
  std::printf("matmul peak      %.1f GFLOP/s (%s, measured now; the MFU denominator)\n", peak.gflops, precision_.name.c_str());
  std::printf("batch            %lld sequences x %lld tokens = %s tokens per step (%lld micro-batches of %lld)\n",
              static_cast<long long>(r_.train.global_batch), static_cast<long long>(r_.data.seq_len),
              with_commas(r_.train.global_batch * r_.data.seq_len).c_str(),
              static_cast<long long>(r_.train.global_batch / r_.train.micro_batch),
              static_cast<long long>(r_.train.micro_batch));

  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGINT, on_stop_signal);
  start_ = window_start_ = std::chrono::steady_clock::now();
  start_step_ = step_;
  while (step_ < r_.train.steps) {
    train_step();
    if (nonfinite_in_row_ >= r_.train.max_nonfinite_in_row) {
      save("stopping: non-finite losses");
      throw Error(run_dir_, std::to_string(nonfinite_in_row_) + " steps in a row had a non-finite loss or gradient",
                  "lower train.lr or raise train.warmup_steps; the last checkpoint holds the state before");
    }
    if (int sig = g_stop_signal.load()) {
      save(sig == SIGTERM ? "SIGTERM" : "SIGINT");
      std::printf("stopped by %s at step %lld; continue with: dus resume %s\n", sig == SIGTERM ? "SIGTERM" : "SIGINT",
                  static_cast<long long>(step_), run_dir_.c_str());
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

int run_training(const TrainJob& job) { return Trainer(job).run(); }

}  // namespace dus
