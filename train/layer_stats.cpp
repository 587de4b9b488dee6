#include "train/layer_stats.h"

#include <torch/torch.h>

#include <cctype>
#include <cmath>

#include <fmt/format.h>

#include "core/error.h"
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

}  // namespace

std::vector<double> layer_sums_of_squares(
    const std::vector<std::pair<int64_t, at::Tensor>>& tensors, int64_t num_layers) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> sq;
  std::vector<int64_t> layer;
  for (const auto& [l, t] : tensors) {
    if (!t.defined() || l < 0 || l >= num_layers) continue;
    sq.push_back(sum_of_squares(t));
    layer.push_back(l);
  }
  std::vector<double> out(static_cast<size_t>(num_layers), 0.0);
  const std::vector<double> host = to_host(sq);
  for (size_t i = 0; i < layer.size(); ++i) out[static_cast<size_t>(layer[i])] += host[i];
  return out;
}

std::vector<double> layer_grad_norms(TransformerImpl& model) {
  std::vector<std::pair<int64_t, at::Tensor>> grads;
  for (int64_t i = 0; i < model.num_layers(); ++i)
    for (const auto& p : model.layer(i)->parameters()) grads.emplace_back(i, p.grad());
  std::vector<double> out = layer_sums_of_squares(grads, model.num_layers());
  for (double& x : out) x = std::sqrt(x);
  return out;
}

void LayerUpdateSums::add(int64_t layer, const at::Tensor& before, const at::Tensor& after) {
  if (layer < 0 || layer >= layers_) return;
  torch::NoGradGuard no_grad;
  // The difference in fp32 at least: in bf16 small updates would round away.
  const auto acc = before.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat;
  weight_sq_.emplace_back(layer, sum_of_squares(before));
  update_sq_.emplace_back(layer, sum_of_squares(after.to(acc) - before.to(acc)));
}

std::vector<double> LayerUpdateSums::values() const {
  std::vector<double> out(static_cast<size_t>(2 * layers_), 0.0);
  std::vector<torch::Tensor> all;
  for (const auto& e : weight_sq_) all.push_back(e.second);
  for (const auto& e : update_sq_) all.push_back(e.second);
  const std::vector<double> host = to_host(all);
  for (size_t i = 0; i < weight_sq_.size(); ++i)
    out[static_cast<size_t>(weight_sq_[i].first)] += host[i];
  for (size_t i = 0; i < update_sq_.size(); ++i)
    out[static_cast<size_t>(layers_ + update_sq_[i].first)] += host[weight_sq_.size() + i];
  return out;
}

std::vector<double> LayerUpdateSums::ratios(const std::vector<double>& values) {
  if (values.size() % 2 != 0)
    throw Error("layer update ratios",
                fmt::format("an odd number of sums ({}): expected weights then updates per layer",
                            values.size()));
  const size_t n = values.size() / 2;
  std::vector<double> out(n);
  for (size_t i = 0; i < n; ++i) {
    const double w = values[i], d = values[n + i];
    out[i] = w > 0 ? std::sqrt(d / w) : (d > 0 ? INFINITY : 0.0);
  }
  return out;
}

int64_t layer_index_of(const std::string& name) {
  static const std::string prefix = "model.layers.";
  if (name.compare(0, prefix.size(), prefix) != 0) return -1;
  int64_t i = 0;
  size_t k = prefix.size();
  if (k >= name.size() || !std::isdigit(static_cast<unsigned char>(name[k]))) return -1;
  for (; k < name.size() && std::isdigit(static_cast<unsigned char>(name[k])); ++k)
    i = i * 10 + (name[k] - '0');
  return k < name.size() && name[k] == '.' ? i : -1;
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
