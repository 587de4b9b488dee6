// Gradient accumulation over many micro-batches in bf16: the fp32 buffer of single/ddp
// (distributed/ddp.h) and zero2's fp32 shard (distributed/sharded_optimizer.h) keep the sum of
// the micro-batches' gradients to fp32 accuracy; accumulating in the parameters' bf16 .grad, as
// autograd does by default, does not.
//
// The reference is the float64 sum of the very gradients each micro-batch's backward produced
// (bf16 values, recorded one micro-batch at a time), so what is measured is the accumulation
// alone, not the bf16 arithmetic of forward and backward.
#include "torch_test.h"

#include <ATen/ops/cat.h>

#include <cmath>

#include "model/hf_checkpoint.h"
#include "model/loss.h"
#include "model/transformer.h"
#include "train/distributed/ddp.h"
#include "train/distributed/sharded_optimizer.h"
#include "train/optimizer_strategy.h"

namespace {

dus::ModelConfig small_config() {
  dus::ModelConfig c;
  c.vocab_size = 97;
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 8;
  c.rope_theta = 10000.0;
  c.rms_norm_eps = 1e-6;
  c.max_position_embeddings = 64;
  c.initializer_range = 0.1;
  return c;
}

constexpr int64_t kMicroBatches = 64;

// Micro-batch m's tokens (2 x 17): input = [:, :16], target = [:, 1:].
torch::Tensor tokens(int64_t m) {
  return torch::randint(0, 97, {2, 17}, torch::TensorOptions().dtype(torch::kLong))
      .add_(m)
      .remainder_(97);
}

double micro_loss_backward(dus::Transformer& model, int64_t m) {
  auto t = tokens(m);
  auto loss = dus::training_loss(*model, t.narrow(1, 0, 16), t.narrow(1, 1, 16)) /
              static_cast<double>(kMicroBatches);
  loss.backward();
  return loss.item<double>();
}

torch::Tensor flat(const std::vector<torch::Tensor>& grads, torch::ScalarType dtype) {
  std::vector<torch::Tensor> parts;
  for (const auto& g : grads) parts.push_back(g.reshape({-1}).to(dtype));
  return at::cat(parts);
}

double relative_error(const torch::Tensor& got, const torch::Tensor& ref) {
  return (got.to(torch::kDouble) - ref).norm().item<double>() / ref.norm().item<double>();
}

// A bf16 model on the host (the weights rounded once) and its parameters' names.
dus::Transformer bf16_model() {
  torch::manual_seed(3);
  dus::Transformer model(small_config());
  model->to(torch::kBFloat16);
  return model;
}

}  // namespace

TEST_CASE("fp32 accumulation: 64 bf16 micro-batches add up to the fp64 sum; bf16 .grad does not",
          "[unit]") {
  // 1. The fp64 reference: each micro-batch's bf16 gradient, summed in fp64.
  dus::Transformer model = bf16_model();
  std::vector<torch::Tensor> reference;
  torch::manual_seed(100);
  for (int64_t m = 0; m < kMicroBatches; ++m) {
    micro_loss_backward(model, m);
    std::vector<torch::Tensor> g;
    for (auto& p : model->parameters()) {
      g.push_back(p.grad().clone());
      p.mutable_grad() = torch::Tensor();
    }
    auto f = flat(g, torch::kDouble);
    if (reference.empty())
      reference.push_back(f);
    else
      reference[0] += f;
  }
  const torch::Tensor ref = reference[0];

  // 2. Autograd's own accumulation into the bf16 .grad.
  torch::manual_seed(100);
  for (int64_t m = 0; m < kMicroBatches; ++m) micro_loss_backward(model, m);
  const double bf16_error =
      relative_error(flat(dus::grads_of(model->parameters()), torch::kFloat), ref);
  for (auto& p : model->parameters()) p.mutable_grad() = torch::Tensor();

  // 3. The fp32 buffer of the single-process / ddp path (no process group: one rank).
  std::vector<torch::Tensor> params = model->parameters();
  double fp32_error = 0;
  {
    dus::dist::DdpGradSync sync(nullptr, params, dus::dist::DdpOptions{25, true, true});
    torch::manual_seed(100);
    for (int64_t m = 0; m < kMicroBatches; ++m) {
      sync.begin_micro_step(m + 1 == kMicroBatches);
      micro_loss_backward(model, m);
      // The hook released the bf16 gradient as soon as it was added in.
      for (auto& p : model->parameters()) CHECK_FALSE(p.grad().defined());
    }
    sync.finish();
    fp32_error = relative_error(flat(sync.main_grads(), torch::kFloat), ref);
  }

  // 4. zero2 on one rank: the fp32 shard is the whole flat gradient.
  double zero2_error = 0;
  {
    dus::Transformer z = bf16_model();
    std::vector<std::pair<std::string, at::Tensor>> named;
    for (const auto& p : z->named_parameters()) named.emplace_back(p.key(), p.value());
    dus::NamedTensors masters;
    for (const auto& [name, p] : named) masters.emplace_back(name, p.detach().to(torch::kFloat));
    dus::StrategyOptions so;
    so.strategy = "zero2";
    so.compute_dtype = torch::kBFloat16;
    so.bucket_mb = 0.01;  // several buckets, several in flight
    dus::dist::ShardedOptimizer zero2(2, nullptr, named, so, masters);
    torch::manual_seed(100);
    for (int64_t m = 0; m < kMicroBatches; ++m) {
      zero2.begin_micro_step(m + 1 == kMicroBatches);
      micro_loss_backward(z, m);
    }
    zero2.reduce_gradients();
    REQUIRE(zero2.buckets() > 2);
    zero2_error = relative_error(zero2.gradient_shard().narrow(0, 0, ref.numel()), ref);
  }

  INFO("relative error vs the fp64 sum: bf16 .grad " << bf16_error << ", fp32 buffer " << fp32_error
                                                     << ", zero2 " << zero2_error);
  // fp32 adds of bf16 values: ~64 roundings at 2^-24 each. The stated bound: 1e-6.
  CHECK(fp32_error < 1e-6);
  CHECK(zero2_error < 1e-6);
  // bf16 adds: each rounds the running sum to 8 bits (2^-9 relative); 64 of them lose far more.
  CHECK(bf16_error > 1e-3);
}
