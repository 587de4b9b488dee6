// Fused kernels (model/kernels): [op] cases run on any machine and check the references, the
// chunked cross-entropy and AdamW on the CPU; [cpu][op] cases check each CPU loop and
// [gpu][op] cases each CUDA kernel against its reference (forward and backward, fp32 and bf16,
// odd sizes); the GPU cases skip with a visible reason where there is no CUDA device.
#include "torch_test.h"

#include <cmath>
#include <limits>

#include "core/error.h"
#include "model/kernels/adamw.h"
#include "model/kernels/attention.h"
#include "model/kernels/cpu_vector.h"
#include "model/kernels/cross_entropy.h"
#include "model/kernels/kernel_set.h"
#include "model/kernels/rmsnorm.h"
#include "model/kernels/rope.h"
#include "model/kernels/swiglu.h"
#include "model/loss.h"
#include "model/transformer.h"

namespace k = dus::kernels;

namespace {

dus::ModelConfig tiny_config() {
  dus::ModelConfig c;
  c.vocab_size = 61;
  c.hidden_size = 24;
  c.intermediate_size = 40;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 8;
  c.rope_theta = 10000.0;
  c.rms_norm_eps = 1e-6;
  c.max_position_embeddings = 128;
  c.initializer_range = 0.1;
  return c;
}

double max_rel(const torch::Tensor& got, const torch::Tensor& want) {
  auto w = want.to(torch::kDouble), g = got.to(torch::kDouble);
  return ((g - w).abs().max() / w.abs().max().clamp_min(1e-300)).item<double>();
}

// Targets in [0, V) with about one in four set to the ignore index.
torch::Tensor random_targets(int64_t n, int64_t V) {
  auto t = torch::randint(0, V, {n}, torch::kLong);
  return torch::where(torch::rand({n}) < 0.25, torch::full({n}, dus::kIgnoreIndex, torch::kLong),
                      t);
}

struct LossAndGrads {
  double loss;
  torch::Tensor dh, dw;
};

LossAndGrads plain_loss(const torch::Tensor& h0, const torch::Tensor& w0, const torch::Tensor& t) {
  auto h = h0.clone().requires_grad_(true), w = w0.clone().requires_grad_(true);
  auto loss = dus::cross_entropy_loss(torch::linear(h, w), t);
  loss.backward();
  return {loss.item<double>(), h.grad(), w.grad()};
}

LossAndGrads chunked_loss(const torch::Tensor& h0, const torch::Tensor& w0, const torch::Tensor& t,
                          int64_t chunk_rows, bool fused = false) {
  auto h = h0.clone().requires_grad_(true), w = w0.clone().requires_grad_(true);
  auto loss = k::chunked_cross_entropy(h, w, t, chunk_rows, fused);
  loss.backward();
  return {loss.item<double>(), h.grad(), w.grad()};
}

bool cuda_ready() {
  if (!torch::cuda::is_available()) {
    WARN("skipped: no CUDA device");
    return false;
  }
  if (!k::cuda_kernels_built()) {
    WARN("skipped: this build has no CUDA kernels (DUS_CUDA=OFF or no toolkit)");
    return false;
  }
  return true;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// [op]: CPU

TEST_CASE("chunked cross-entropy equals the plain loss in value and gradients", "[op]") {
  torch::manual_seed(3);
  const int64_t N = 37, D = 24, V = 101;  // odd on purpose
  for (auto dtype : {torch::kFloat64, torch::kFloat32}) {
    auto h = torch::randn({N, D}, dtype), w = torch::randn({V, D}, dtype) * 0.3;
    auto t = random_targets(N, V);
    auto want = plain_loss(h, w, t);
    const double tol = dtype == torch::kFloat64 ? 1e-12 : 2e-6;
    for (int64_t chunk : {1, 5, 8, 36, 37, 100, 0}) {
      INFO("dtype " << dtype << ", chunk rows " << chunk);
      auto got = chunked_loss(h, w, t, chunk);
      CHECK(std::abs(got.loss - want.loss) <= tol * std::abs(want.loss));
      CHECK(max_rel(got.dh, want.dh) <= tol);
      CHECK(max_rel(got.dw, want.dw) <= tol);
      CHECK(got.dh.scalar_type() == dtype);
      CHECK(got.dw.scalar_type() == dtype);
    }
  }
}

TEST_CASE("chunked cross-entropy in bf16 stays within bf16 rounding of the plain loss", "[op]") {
  torch::manual_seed(4);
  const int64_t N = 19, D = 16, V = 67;
  auto h = torch::randn({N, D}).to(torch::kBFloat16);
  auto w = (torch::randn({V, D}) * 0.3).to(torch::kBFloat16);
  auto t = random_targets(N, V);
  auto want = plain_loss(h, w, t);
  auto got = chunked_loss(h, w, t, 4);
  CHECK(std::abs(got.loss - want.loss) <= 1e-3 * std::abs(want.loss));
  // d loss / d logits are the same fp32 values rounded once to bf16 on both paths; the weight
  // gradient sums bf16 chunk products in fp32 (the plain path: one bf16 matmul).
  CHECK(max_rel(got.dh, want.dh) <= 1.6e-2);
  CHECK(max_rel(got.dw, want.dw) <= 1.6e-2);
}

TEST_CASE("chunked cross-entropy: ignore index, no-grad and the next-token shift", "[op]") {
  torch::manual_seed(5);
  const int64_t V = 29, D = 8;
  auto w = torch::randn({V, D}, torch::kFloat64);

  SECTION("every target ignored: NaN like the plain loss, zero gradients") {
    auto h = torch::randn({6, D}, torch::kFloat64);
    auto t = torch::full({6}, dus::kIgnoreIndex, torch::kLong);
    CHECK(std::isnan(plain_loss(h, w, t).loss));
    auto got = chunked_loss(h, w, t, 4);
    CHECK(std::isnan(got.loss));
    CHECK(got.dh.abs().max().item<double>() == 0.0);
    CHECK(got.dw.abs().max().item<double>() == 0.0);
  }
  SECTION("ignored rows contribute nothing") {
    auto h = torch::randn({9, D}, torch::kFloat64);
    auto t = random_targets(9, V);
    t[0] = dus::kIgnoreIndex;
    auto got = chunked_loss(h, w, t, 2);
    CHECK(got.dh[0].abs().max().item<double>() == 0.0);
    CHECK(std::abs(got.loss - plain_loss(h, w, t).loss) < 1e-12);
  }
  SECTION("under no-grad only the value is computed") {
    auto h = torch::randn({9, D}, torch::kFloat64).requires_grad_(true);
    auto t = random_targets(9, V);
    const double want = plain_loss(h.detach(), w, t).loss;
    torch::NoGradGuard no_grad;
    auto loss = k::chunked_cross_entropy(h, w.clone().requires_grad_(true), t, 3);
    CHECK_FALSE(loss.requires_grad());
    CHECK(std::abs(loss.item<double>() - want) < 1e-12);
  }
  SECTION("chunked_next_token_loss equals next_token_loss on the logits") {
    auto h = torch::randn({2, 7, D}, torch::kFloat64);
    auto labels = torch::randint(0, V, {2, 7}, torch::kLong);
    labels[1][3] = dus::kIgnoreIndex;
    auto want = dus::next_token_loss(torch::linear(h, w), labels).item<double>();
    CHECK(std::abs(k::chunked_next_token_loss(h, w, labels, 5).item<double>() - want) < 1e-12);
  }
  SECTION("the incoming gradient scales both gradients") {
    auto h = torch::randn({5, D}, torch::kFloat64).requires_grad_(true);
    auto w2 = w.clone().requires_grad_(true);
    auto t = random_targets(5, V);
    (k::chunked_cross_entropy(h, w2, t, 2) * 3.0).backward();
    auto want = plain_loss(h.detach(), w, t);
    CHECK(max_rel(h.grad(), want.dh * 3.0) < 1e-12);
    CHECK(max_rel(w2.grad(), want.dw * 3.0) < 1e-12);
  }
}

TEST_CASE("the per-chunk reference step gives the per-row loss and d loss / d logits", "[op]") {
  torch::manual_seed(6);
  auto logits = torch::randn({7, 13}, torch::kFloat64);
  auto t = random_targets(7, 13);
  t[2] = dus::kIgnoreIndex;
  const double n = t.ne(dus::kIgnoreIndex).sum().item<double>();
  auto x = logits.clone().requires_grad_(true);
  auto want = dus::cross_entropy_loss(x, t);
  want.backward();
  auto buffer = logits.clone();
  auto scale = torch::full({}, 1.0 / n, torch::kFloat);
  auto rows = k::cross_entropy_chunk_reference(buffer, t, scale, /*compute_grad=*/true);
  CHECK(std::abs(rows.sum().item<double>() / n - want.item<double>()) < 1e-12);
  CHECK(rows[2].item<double>() == 0.0);
  CHECK(max_rel(buffer, x.grad()) < 1e-6);  // the scale is fp32
}

TEST_CASE("AdamW reference matches torch::optim::AdamW over several steps", "[op]") {
  torch::manual_seed(7);
  std::vector<torch::Tensor> p_ref, p_ours, m, v;
  for (auto shape : std::vector<std::vector<int64_t>>{{5, 3}, {7}, {2, 3, 4}}) {
    auto p = torch::randn(shape);
    p_ref.push_back(p.clone().requires_grad_(true));
    p_ours.push_back(p.clone());
    m.push_back(torch::zeros(shape));
    v.push_back(torch::zeros(shape));
  }
  const double lr = 3e-2, b1 = 0.9, b2 = 0.95, eps = 1e-8, wd = 0.1;
  torch::optim::AdamW opt(p_ref,
                          torch::optim::AdamWOptions(lr).betas({b1, b2}).eps(eps).weight_decay(wd));
  for (int64_t step = 1; step <= 6; ++step) {
    std::vector<torch::Tensor> grads;
    for (auto& p : p_ref) grads.push_back(torch::randn_like(p).detach());
    for (size_t i = 0; i < p_ref.size(); ++i) p_ref[i].mutable_grad() = grads[i].clone();
    opt.step();
    k::fused_adamw_step(p_ours, grads, m, v, step, lr, b1, b2, eps, wd);  // CPU: the reference
  }
  for (size_t i = 0; i < p_ref.size(); ++i) CHECK(max_rel(p_ours[i], p_ref[i].detach()) < 1e-6);
}

TEST_CASE("at::_fused_adamw_, the CUDA path's call, matches the reference (CPU kernel)", "[op]") {
  torch::manual_seed(8);
  std::vector<torch::Tensor> pa, ma, va, pb, mb, vb, grads;
  for (auto shape : std::vector<std::vector<int64_t>>{{9, 5}, {11}}) {
    auto p = torch::randn(shape);
    pa.push_back(p.clone());
    pb.push_back(p.clone());
    for (auto* l : {&ma, &va, &mb, &vb}) l->push_back(torch::zeros(shape));
  }
  for (int64_t step = 1; step <= 4; ++step) {
    grads.clear();
    for (auto& p : pa) grads.push_back(torch::randn_like(p));
    k::AdamWStep hp{step, 1e-2, 0.9, 0.999, 1e-8, 0.05};
    k::adamw_step_reference(pa, grads, ma, va, hp);
    k::adamw_step_aten_fused(pb, grads, mb, vb, hp);
  }
  for (size_t i = 0; i < pa.size(); ++i) {
    CHECK(max_rel(pb[i], pa[i]) < 1e-6);
    CHECK(max_rel(mb[i], ma[i]) < 1e-6);
    CHECK(max_rel(vb[i], va[i]) < 1e-6);
  }
}

TEST_CASE("the references are transformers' formulas bit for bit", "[op]") {
  // The model runs these references when its fused ops are off; the expected values are the
  // formulas as transformers writes them (MistralRMSNorm, rotate_half, silu(gate) * up).
  torch::manual_seed(9);
  for (auto dtype : {torch::kFloat32, torch::kBFloat16}) {
    INFO("dtype " << dtype);
    auto w = torch::randn({10}).to(dtype);
    auto x = torch::randn({3, 4, 10}).to(dtype);
    auto x32 = x.to(torch::kFloat32);
    auto hf_norm = w * (x32 * torch::rsqrt(x32.pow(2).mean(-1, true) + 1e-5)).to(dtype);
    CHECK(torch::equal(k::rms_norm_reference(x, w, 1e-5), hf_norm));
    dus::RMSNorm norm(10, 1e-5, torch::TensorOptions().dtype(dtype));
    {
      torch::NoGradGuard g;
      norm->weight.copy_(w);
    }
    CHECK(torch::equal(norm->forward(x), hf_norm));

    auto [cos, sin] = dus::rotary_tables(5, 6, 10000.0, dtype, torch::kCPU);
    auto q0 = torch::randn({2, 5, 3, 6}).to(dtype);
    auto q = q0.transpose(1, 2);  // (B, H, T, d) view
    auto rot = torch::cat({-q.narrow(-1, 3, 3), q.narrow(-1, 0, 3)}, -1);
    CHECK(torch::equal(k::rotary_reference(q, cos, sin), q * cos + rot * sin));
    // Gradients too: the per-half form must back-propagate exactly as the rotate_half form.
    auto dy = torch::randn({2, 3, 5, 6}).to(dtype);
    auto qa = q0.clone().requires_grad_(true), qb = q0.clone().requires_grad_(true);
    k::rotary_reference(qa.transpose(1, 2), cos, sin).backward(dy);
    auto qb_v = qb.transpose(1, 2);
    auto rot_b = torch::cat({-qb_v.narrow(-1, 3, 3), qb_v.narrow(-1, 0, 3)}, -1);
    (qb_v * cos + rot_b * sin).backward(dy);
    CHECK(torch::equal(qa.grad(), qb.grad()));

    auto g = torch::randn({4, 7}).to(dtype), u = torch::randn({4, 7}).to(dtype);
    CHECK(torch::equal(k::swiglu_reference(g, u), torch::silu(g) * u));
  }
}

TEST_CASE("attention reference with a sliding window masks keys at or beyond the window", "[op]") {
  // transformers' sliding_window_overlay: query i sees keys j with i - window < j <= i. Checked
  // against softmax(q k^T / sqrt(d) + mask) v written out in fp64.
  torch::manual_seed(12);
  const int64_t B = 2, H = 4, Hkv = 2, T = 9, d = 8, W = 3;
  auto opt = torch::TensorOptions().dtype(torch::kFloat64);
  auto q = torch::randn({B, H, T, d}, opt), kk = torch::randn({B, Hkv, T, d}, opt);
  auto v = torch::randn({B, Hkv, T, d}, opt);
  auto k_full = kk.repeat_interleave(H / Hkv, 1), v_full = v.repeat_interleave(H / Hkv, 1);
  auto scores = torch::matmul(q, k_full.transpose(-1, -2)) / std::sqrt(double(d));  // (B,H,T,T)
  auto i = torch::arange(T).unsqueeze(1), j = torch::arange(T).unsqueeze(0);
  auto allowed = (j <= i) & (j > i - W);
  scores = scores.masked_fill(~allowed, -std::numeric_limits<double>::infinity());
  auto want = torch::matmul(torch::softmax(scores, -1), v_full);
  CHECK(max_rel(k::causal_attention_reference(q, kk, v, W), want) < 1e-12);
  // The fused op has no window: with one shorter than T, fused=true runs the reference.
  auto qf = q.to(torch::kFloat), kf = kk.to(torch::kFloat), vf = v.to(torch::kFloat);
  CHECK(torch::equal(k::causal_attention(qf, kf, vf, /*fused=*/true, W),
                     k::causal_attention_reference(qf, kf, vf, W)));
  // A window at least T long is plain causal attention.
  CHECK(torch::equal(k::causal_attention_reference(q, kk, v, T),
                     k::causal_attention_reference(q, kk, v)));
}

TEST_CASE("fused=true falls back to the reference where no loop applies (fp64)", "[op]") {
  torch::manual_seed(10);
  dus::ModelInit init;
  init.dtype = torch::kFloat64;
  dus::Transformer plain(tiny_config(), init);
  torch::manual_seed(10);
  dus::Transformer fused(tiny_config(), init);
  k::KernelSet all;
  all.rmsnorm = all.rope = all.swiglu = all.cross_entropy = all.attention = all.adamw =
      all.chunked_loss = true;
  fused->set_kernels(all);
  CHECK(fused->kernels().describe() ==
        "rmsnorm rope swiglu cross_entropy attention adamw chunked_loss");
  CHECK(fused->layer(1)->self_attn->fused_attention);
  CHECK(fused->layer(1)->mlp->fused_swiglu);
  auto ids = torch::randint(0, 61, {2, 9}, torch::kLong);
  auto a = plain->forward(ids), b = fused->forward(ids);
  CHECK(torch::equal(a, b));
  dus::next_token_loss(a, ids).backward();
  dus::next_token_loss(b, ids).backward();
  auto pa = plain->parameters(), pb = fused->parameters();
  for (size_t i = 0; i < pa.size(); ++i) CHECK(torch::equal(pa[i].grad(), pb[i].grad()));
}

TEST_CASE("kernel options: parsing, and resolution on the CPU", "[op]") {
  CHECK(k::parse_kernel_mode("auto") == k::KernelMode::kAuto);
  CHECK(k::parse_kernel_mode("on") == k::KernelMode::kOn);
  CHECK(k::parse_kernel_mode("off") == k::KernelMode::kOff);
  CHECK_THROWS_AS(k::parse_kernel_mode("fast", "recipe.kernels"), dus::Error);
  CHECK(k::to_string(k::KernelMode::kOn) == "on");
  CHECK(k::KernelSet{}.describe() == "none");

  k::KernelOptions options;
  options.log = false;
  options.loss_chunk_rows = 64;
  k::KernelSelfTestReport report;
  // auto on the CPU: the self-test runs the five CPU ops; AdamW has none of ours (the
  // trainer's AdamW calls at::_fused_adamw_ on every device).
  auto set = k::resolve_kernels(options, torch::kCPU, &report);
  INFO(report.describe());
  CHECK(set.rmsnorm);
  CHECK(set.rope);
  CHECK(set.swiglu);
  CHECK(set.cross_entropy);
  CHECK(set.attention);
  CHECK_FALSE(set.adamw);
  CHECK(set.chunked_loss);  // a memory saving on any device
  CHECK(set.loss_chunk_rows == 64);
  REQUIRE(report.ops.size() == 6);
  for (const auto& op : report.ops) {
    INFO(op.op);
    CHECK(op.passed == (op.op != "adamw"));
    if (op.op == "adamw") CHECK(op.note.find("skipped") != std::string::npos);
  }
  // A skipped op reads as skipped in the log, not as a failure.
  CHECK(report.describe().find("adamw: skipped: a CUDA kernel only") != std::string::npos);
  CHECK(report.describe().find("FAIL") == std::string::npos);

  options.mode = k::KernelMode::kOn;
  set = k::resolve_kernels(options, torch::kCPU, &report);
  CHECK(set.describe() == "rmsnorm rope swiglu cross_entropy attention chunked_loss");
  CHECK(report.ops.empty());  // no self-test with `on`
  options.mode = k::KernelMode::kOff;
  CHECK(k::resolve_kernels(options, torch::kCPU).describe() == "chunked_loss");
  CHECK(k::default_loss_chunk_rows(32000) == (int64_t{1} << 26) / 32000);
  CHECK(k::default_loss_chunk_rows(int64_t{1} << 40) == 1);
}

// ---------------------------------------------------------------------------------------------
// [gpu][op]: CUDA kernels against their references

namespace {

// Shapes for the op cases (CPU and GPU): the self-test's own odd ones, a Mistral-sized row (hidden
// and FFN widths not a multiple of any block), and the degenerate smallest.
std::vector<std::pair<std::string, k::SelfTestSizes>> op_shapes() {
  k::SelfTestSizes odd;  // defaults: rows 37, hidden 1000, ffn 1001, d 66, V 1001, chunks of 8
  k::SelfTestSizes large;
  large.rows = 129;
  large.hidden = 4096 + 3;
  large.ffn = 14336 + 5;
  large.batch = 2;
  large.heads = 5;
  large.seq = 257;
  large.head_dim = 128;
  large.kv_heads = 5;  // no grouping (the odd shapes share one kv head among 3)
  large.attention_seq = 257;
  large.vocab = 32000 + 7;
  large.loss_chunk_rows = 50;
  k::SelfTestSizes tiny;
  tiny.rows = 1;
  tiny.hidden = 7;
  tiny.ffn = 3;
  tiny.batch = tiny.heads = tiny.seq = tiny.kv_heads = tiny.attention_seq = 1;
  tiny.head_dim = 2;
  tiny.vocab = 3;
  tiny.loss_chunk_rows = 1;
  return {{"odd", odd}, {"large", large}, {"tiny", tiny}};
}

void check_op_on(torch::Device device, const std::string& name) {
  for (const auto& [label, sizes] : op_shapes()) {
    auto report = k::run_kernel_self_test(device, 99, sizes);
    for (const auto& op : report.ops) {
      if (op.op != name) continue;
      INFO(label << " shapes: " << op.op << " forward err " << op.max_error_forward << " (|d| "
                 << op.max_abs_forward << "), backward err " << op.max_error_backward << " (|d| "
                 << op.max_abs_backward << ") " << op.note);
      CHECK(op.passed);
    }
  }
}

void check_gpu_op(const std::string& name) {
  if (cuda_ready()) check_op_on(torch::Device(torch::kCUDA, 0), name);
}

}  // namespace

TEST_CASE("fused RMSNorm matches its reference on the GPU (fp32, bf16, fwd + bwd)", "[gpu][op]") {
  check_gpu_op("rmsnorm");
}
TEST_CASE("fused rotary embedding matches its reference on the GPU", "[gpu][op]") {
  check_gpu_op("rope");
}
TEST_CASE("fused SwiGLU matches its reference on the GPU", "[gpu][op]") {
  check_gpu_op("swiglu");
}
TEST_CASE("chunked cross-entropy with the CUDA kernel matches the unfused chunked loss",
          "[gpu][op]") {
  check_gpu_op("cross_entropy");
}
TEST_CASE("fused AdamW (at::_fused_adamw_) matches the reference on the GPU", "[gpu][op]") {
  check_gpu_op("adamw");
}

TEST_CASE("fused rotary keeps bit-exact agreement with the eager formula", "[gpu][op]") {
  if (!cuda_ready()) return;
  torch::manual_seed(11);
  for (auto dtype : {torch::kFloat32, torch::kBFloat16}) {
    auto [cos, sin] = dus::rotary_tables(33, 64, 10000.0, dtype, torch::kCUDA);
    auto q = torch::randn({2, 33, 3, 64}, torch::kCUDA).to(dtype).transpose(1, 2);
    CHECK(torch::equal(k::rotary(q, cos, sin, true), k::rotary_reference(q, cos, sin)));
  }
}

namespace {
// A model with every fused op on against the plain model: loss within rounding of fp32/bf16,
// every parameter gradient close.
void check_fused_model(torch::Device device) {
  for (auto dtype : {torch::kFloat32, torch::kBFloat16}) {
    INFO("dtype " << dtype);
    dus::ModelInit init;
    init.dtype = dtype;
    init.device = device;
    torch::manual_seed(12);
    dus::Transformer plain(tiny_config(), init);
    torch::manual_seed(12);
    dus::Transformer fused(tiny_config(), init);
    k::KernelSet all;
    all.rmsnorm = all.rope = all.swiglu = all.cross_entropy = all.attention = true;
    fused->set_kernels(all);
    auto ids =
        torch::randint(0, 61, {3, 17}, torch::TensorOptions().dtype(torch::kLong).device(device));
    auto loss_a = dus::next_token_loss(plain->forward(ids), ids);
    auto loss_b = k::chunked_next_token_loss(fused->hidden_states(ids), fused->lm_head_weight(),
                                             ids, 7, true);
    const double tol = dtype == torch::kFloat32 ? 1e-4 : 3e-2;
    CHECK(std::abs(loss_a.item<double>() - loss_b.item<double>()) <= tol * loss_a.item<double>());
    loss_a.backward();
    loss_b.backward();
    auto pa = plain->named_parameters(), pb = fused->named_parameters();
    for (const auto& p : pa) {
      INFO(p.key());
      CHECK(max_rel(pb[p.key()].grad(), p.value().grad()) <=
            (dtype == torch::kFloat32 ? 1e-3 : 6e-2));
    }
  }
}
}  // namespace

TEST_CASE("a model on the GPU with every fused kernel matches the plain model", "[gpu][op]") {
  if (cuda_ready()) check_fused_model(torch::Device(torch::kCUDA, 0));
}

TEST_CASE("kernels: auto on the GPU turns on every op that passes its self-test", "[gpu][op]") {
  if (!cuda_ready()) return;
  k::KernelOptions options;
  k::KernelSelfTestReport report;
  auto set = k::resolve_kernels(options, torch::Device(torch::kCUDA, 0), &report);
  INFO(report.describe());
  CHECK(report.ops.size() == 6);
  CHECK(set.rmsnorm);
  CHECK(set.rope);
  CHECK(set.swiglu);
  CHECK(set.cross_entropy);
  CHECK(set.adamw);
  CHECK_FALSE(set.attention);  // SDPA's flash kernel on CUDA
}

// ---------------------------------------------------------------------------------------------
// [cpu][op]: the CPU loops (model/kernels/*_cpu.cpp) against their references

TEST_CASE(
    "CPU loops: RMSNorm, rotary, SwiGLU, the cross-entropy chunk and causal attention "
    "match their references",
    "[cpu][op]") {
  // fp32 and bf16, forward and backward, on the GPU cases' shapes (a 32007-entry vocabulary
  // would cost this test 20 s on 2 cores; 4099 keeps it odd and wider than any block).
  auto shapes = op_shapes();
  for (auto& [label, sizes] : shapes)
    if (label == "large") sizes.vocab = 4096 + 3;
  for (const auto& [label, sizes] : shapes) {
    auto report = k::run_kernel_self_test(torch::kCPU, 99, sizes);
    REQUIRE(report.ops.size() == 6);
    for (const auto& op : report.ops) {
      INFO(label << " shapes: " << op.op << " forward err " << op.max_error_forward << " (|d| "
                 << op.max_abs_forward << "), backward err " << op.max_error_backward << " (|d| "
                 << op.max_abs_backward << ") " << op.note);
      CHECK(op.passed == (op.op != "adamw"));  // AdamW: no CPU loop of ours
    }
  }
}
TEST_CASE("a model on the CPU with every fused op matches the plain model", "[cpu][op]") {
  check_fused_model(torch::kCPU);
}

TEST_CASE("exp_approx is within a few ulp of std::exp over the float range it serves",
          "[cpu][op]") {
  double worst = 0;
  for (double x = -87.0; x <= 88.0; x += 0.0137) {
    const double want = std::exp(static_cast<double>(static_cast<float>(x)));
    const double got = k::cpu::exp_approx(static_cast<float>(x));
    worst = std::max(worst, std::abs(got - want) / want);
  }
  INFO("worst relative error " << worst);
  CHECK(worst < 4 * 6e-8);                                            // 4 ulp of fp32
  CHECK(k::cpu::exp_approx(-1000.0f) == k::cpu::exp_approx(-87.0f));  // clamped, never 0/NaN
  CHECK(k::cpu::exp_approx(1000.0f) == k::cpu::exp_approx(88.0f));    // clamped, never inf
}

TEST_CASE("bf16 loads and stores of the CPU loops round as c10::BFloat16", "[cpu][op]") {
  torch::manual_seed(24);
  auto x = torch::cat(
      {torch::randn({20000}) * 100, torch::randn({100}) * 1e-30,
       torch::tensor({0.0f, -0.0f, INFINITY, -INFINITY, NAN, 3.4e38f, 1.0f + 1.0f / 256})});
  auto want = x.to(torch::kBFloat16);
  const float* xp = x.data_ptr<float>();
  const auto* wp = reinterpret_cast<const uint16_t*>(want.data_ptr<at::BFloat16>());
  auto widened = want.to(torch::kFloat32);
  const float* widened_p = widened.data_ptr<float>();
  int64_t rounding_mismatches = 0, widening_mismatches = 0;
  for (int64_t i = 0; i < x.numel(); ++i) {
    const uint16_t got = k::cpu::float_to_bf16(xp[i]);
    const bool both_nan = std::isnan(xp[i]) && (got & 0x7FFF) > 0x7F80 && (wp[i] & 0x7FFF) > 0x7F80;
    if (got != wp[i] && !both_nan) ++rounding_mismatches;
    const float back = k::cpu::bf16_to_float(wp[i]);
    if (back != widened_p[i] && !(std::isnan(back) && std::isnan(widened_p[i])))
      ++widening_mismatches;
  }
  CHECK(rounding_mismatches == 0);
  CHECK(widening_mismatches == 0);
}

TEST_CASE("CPU loops give the same bits for 1 and 2 threads and on a second run", "[cpu][op]") {
  torch::manual_seed(21);
  auto x = torch::randn({300, 130}).requires_grad_(true),
       w = torch::randn({130}).requires_grad_(true);
  auto dy = torch::randn({300, 130});
  auto run = [&] {
    x.mutable_grad() = torch::Tensor();
    w.mutable_grad() = torch::Tensor();
    auto y = k::rms_norm(x, w, 1e-5, true);
    y.backward(dy);
    return std::make_tuple(y.detach(), x.grad().clone(), w.grad().clone());
  };
  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  auto [y1, dx1, dw1] = run();
  at::set_num_threads(2);
  auto [y2, dx2, dw2] = run();
  auto [y3, dx3, dw3] = run();
  at::set_num_threads(threads);
  CHECK(torch::equal(y1, y2));
  CHECK(torch::equal(dx1, dx2));
  CHECK(torch::equal(dw1, dw2));  // dw: fixed row blocks summed in a fixed order
  CHECK(torch::equal(dw2, dw3));
}

TEST_CASE("CPU cross-entropy chunk: a target outside the vocabulary is an error naming it",
          "[cpu][op]") {
  auto logits = torch::randn({3, 5});
  auto targets = torch::tensor({int64_t{1}, int64_t{7}, dus::kIgnoreIndex}, torch::kLong);
  auto scale = torch::tensor(1.0f / 2);
  auto before = logits.clone();
  try {
    k::cross_entropy_chunk(logits, targets, scale, true, /*fused=*/true);
    FAIL("no error");
  } catch (const dus::Error& e) {
    CHECK(std::string(e.what()).find("target 7 at row 1") != std::string::npos);
    CHECK(std::string(e.what()).find("[0, 5)") != std::string::npos);
  }
  CHECK(torch::equal(logits, before));  // nothing written
}

TEST_CASE("CPU rotary backward writes the gradient in the input's layout", "[cpu][op]") {
  torch::manual_seed(22);
  auto [cos, sin] = dus::rotary_tables(6, 8, 10000.0, torch::kFloat, torch::kCPU);
  auto buf = torch::randn({2, 6, 3, 8}).requires_grad_(true);  // (B, T, H, d): the q_proj output
  auto y = k::rotary(buf.transpose(1, 2), cos, sin, true);     // (B, H, T, d) view in, as the model
  auto dy = torch::randn({2, 3, 6, 8});
  y.backward(dy);
  auto ref_buf = buf.detach().clone().requires_grad_(true);
  k::rotary_reference(ref_buf.transpose(1, 2), cos, sin).backward(dy);
  CHECK(max_rel(buf.grad(), ref_buf.grad()) < 1e-6);
  CHECK(max_rel(y.detach(), k::rotary_reference(buf.detach().transpose(1, 2), cos, sin)) < 1e-6);
}

TEST_CASE("CPU attention: layouts, threads, and agreement with SDPA at the bench's shape",
          "[cpu][op]") {
  torch::manual_seed(23);
  const int64_t B = 2, T = 200, H = 4, Hkv = 2, d = 64;
  // The model's q/k/v: projections (B, T, heads, d) viewed as (B, heads, T, d).
  auto q = torch::randn({B, T, H, d}).requires_grad_(true);
  auto kk = torch::randn({B, T, Hkv, d}).requires_grad_(true);
  auto v = torch::randn({B, T, Hkv, d}).requires_grad_(true);
  auto dy = torch::randn({B, H, T, d});
  REQUIRE(k::causal_attention_fusable(q.transpose(1, 2), kk.transpose(1, 2), v.transpose(1, 2)));
  CHECK_FALSE(k::causal_attention_fusable(q.transpose(1, 2).to(torch::kBFloat16),
                                          kk.transpose(1, 2), v.transpose(1, 2)));
  CHECK_FALSE(k::causal_attention_fusable(q.transpose(1, 2),
                                          kk.transpose(1, 2).narrow(1, 0, 1).expand({B, 3, T, d}),
                                          v.transpose(1, 2)));  // 4 % 3
  auto run = [&](bool fused) {
    for (auto* t : {&q, &kk, &v}) t->mutable_grad() = torch::Tensor();
    auto y = k::causal_attention(q.transpose(1, 2), kk.transpose(1, 2), v.transpose(1, 2), fused);
    y.backward(dy);
    return std::make_tuple(y.detach(), q.grad().clone(), kk.grad().clone(), v.grad().clone());
  };
  auto [y_ref, dq_ref, dk_ref, dv_ref] = run(false);
  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  auto [y1, dq1, dk1, dv1] = run(true);
  at::set_num_threads(2);
  auto [y2, dq2, dk2, dv2] = run(true);
  at::set_num_threads(threads);
  CHECK(y2.transpose(1, 2).is_contiguous());  // the model's reshape to (B, T, H d) is free
  CHECK(max_rel(y2, y_ref) < 1e-5);
  CHECK(max_rel(dq2, dq_ref) < 1e-4);
  CHECK(max_rel(dk2, dk_ref) < 1e-4);
  CHECK(max_rel(dv2, dv_ref) < 1e-4);
  // One work item per (batch, head) forward and per (batch, kv head) backward, each on one BLAS
  // thread: the bits do not depend on the thread count.
  CHECK(torch::equal(y1, y2));
  CHECK(torch::equal(dq1, dq2));
  CHECK(torch::equal(dk1, dk2));
  CHECK(torch::equal(dv1, dv2));
}
