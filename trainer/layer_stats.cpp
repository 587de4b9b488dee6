#include "trainer/layer_stats.h"

#include <torch/torch.h>

#include "model/error.h"
#include "model/transformer.h"

namespace dus {

namespace {

/// Sum of squares of a tensor as a 0-dim float64 tensor on its device; the reduction runs in
/// fp32 for bf16/fp16/fp32 (no full-size float64 copy of a large weight), fp64 for fp64.
torch::Tensor sum_of_squares(const torch::Tensor& t) {
  const auto acc = t.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat;
  return torch::linalg_vector_norm(t, 2, c10::nullopt, false, acc).to(torch::kDouble).square();
}

/// One value per entry, moved to the host in a single copy (one device synchronisation).
std::vector<double> to_host(const std::vector<torch::Tensor>& scalars) {
  if (scalars.empty()) return {};
  auto host = torch::stack(scalars).to(torch::kCPU, torch::kDouble).contiguous();
  const double* p = host.data_ptr<double>();
  return std::vector<double>(p, p + host.numel());
}

torch::Tensor zero_like_device(const torch::nn::Module& layer) {
  auto params = layer.parameters();
  auto options = torch::TensorOptions().dtype(torch::kDouble);
  if (!params.empty()) options = options.device(params.front().device());
  return torch::zeros({}, options);
}

}  // namespace

std::vector<double> layer_grad_norms(TransformerImpl& model) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> norms;
  for (int64_t i = 0; i < model.num_layers(); ++i) {
    auto layer = model.layer(i);
    torch::Tensor total = zero_like_device(*layer);
    for (const auto& p : layer->parameters())
      if (p.grad().defined()) total = total + sum_of_squares(p.grad());
    norms.push_back(total.sqrt());
  }
  return to_host(norms);
}

LayerSnapshot snapshot_layers(TransformerImpl& model) {
  torch::NoGradGuard no_grad;
  LayerSnapshot snapshot;
  for (int64_t i = 0; i < model.num_layers(); ++i) {
    std::vector<torch::Tensor> copies;
    for (const auto& p : model.layer(i)->parameters()) copies.push_back(p.detach().clone());
    snapshot.push_back(std::move(copies));
  }
  return snapshot;
}

std::vector<double> layer_update_ratios(const LayerSnapshot& before, const LayerSnapshot& after) {
  if (before.size() != after.size())
    throw Error("layer_update_ratios", "snapshots of " + std::to_string(before.size()) + " and " +
                                           std::to_string(after.size()) + " layers");
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> ratios;
  for (size_t i = 0; i < before.size(); ++i) {
    if (before[i].size() != after[i].size() || before[i].empty())
      throw Error(
          "layer_update_ratios",
          "layer " + std::to_string(i) + ": snapshots differ in their parameters (or are empty)");
    torch::Tensor moved, weight;
    for (size_t j = 0; j < before[i].size(); ++j) {
      const auto& b = before[i][j];
      const auto& a = after[i][j];
      if (!b.sizes().equals(a.sizes()))
        throw Error("layer_update_ratios", "layer " + std::to_string(i) + " parameter " +
                                               std::to_string(j) + " changed shape");
      // The difference in fp32 at least: in bf16 small updates would round away.
      const auto acc = b.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat;
      auto d = sum_of_squares(a.to(acc) - b.to(acc));
      auto w = sum_of_squares(b);
      moved = moved.defined() ? moved + d : d;
      weight = weight.defined() ? weight + w : w;
    }
    // 0/0 (an all-zero layer that stayed zero) is reported as 0, not NaN.
    ratios.push_back(torch::where(
        weight > 0, (moved / weight).sqrt(),
        torch::where(moved > 0, torch::full_like(moved, INFINITY), torch::zeros_like(moved))));
  }
  return to_host(ratios);
}

std::vector<double> layer_hidden_cosines(TransformerImpl& model, const at::Tensor& input_ids_BT) {
  torch::NoGradGuard no_grad;
  const ModelConfig& config = model.config();
  auto x = model.model->embed_tokens(input_ids_BT);  // (B, T, D)
  auto [cos, sin] = rotary_tables(input_ids_BT.size(1), config.head_dim, config.rope_theta,
                                  x.scalar_type(), x.device());
  std::vector<torch::Tensor> cosines;
  for (int64_t i = 0; i < model.num_layers(); ++i) {
    auto y = model.layer(i)->forward(x, cos, sin);  // (B, T, D)
    // Written out rather than torch::cosine_similarity, which normalises before the dot
    // product and so misses 1 by an ulp for identical vectors: here dot == |x|^2 == |y|^2
    // bitwise when y == x, and sqrt(a * a) == a in IEEE arithmetic.
    auto x64 = x.to(torch::kDouble), y64 = y.to(torch::kDouble);
    auto dot = (x64 * y64).sum(-1);                                   // (B, T)
    auto norms = ((x64 * x64).sum(-1) * (y64 * y64).sum(-1)).sqrt();  // (B, T)
    auto cosine = torch::where(norms > 0, dot / norms, torch::zeros_like(dot));
    cosines.push_back(cosine.mean());
    x = y;
  }
  return to_host(cosines);
}

}  // namespace dus
