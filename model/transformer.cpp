#include "model/transformer.h"

#include <ATen/ops/arange.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/embedding.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/pow.h>
#include <torch/nn/init.h>

#include "model/kernels/attention.h"
#include "model/kernels/rmsnorm.h"
#include "model/kernels/rope.h"
#include "model/kernels/swiglu.h"
#include "model/layer_checkpoint.h"

namespace dus {

// ---------------------------------------------------------------------------------------------
// Linear, Embedding, RMSNorm

LinearImpl::LinearImpl(int64_t in_features, int64_t out_features,
                       const torch::TensorOptions& options) {
  weight = register_parameter("weight", torch::empty({out_features, in_features}, options));
}

torch::Tensor LinearImpl::forward(const torch::Tensor& x) {
  return at::linear(x, weight);
}

EmbeddingImpl::EmbeddingImpl(int64_t num_embeddings, int64_t dim,
                             const torch::TensorOptions& options) {
  weight = register_parameter("weight", torch::empty({num_embeddings, dim}, options));
}

torch::Tensor EmbeddingImpl::forward(const torch::Tensor& ids) {
  return at::embedding(weight, ids);
}

RMSNormImpl::RMSNormImpl(int64_t dim, double eps_, const torch::TensorOptions& options)
    : eps(eps_) {
  weight = register_parameter("weight", torch::empty({dim}, options));
}

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) {
  return kernels::rms_norm(x, weight, eps, fused);
}

// ---------------------------------------------------------------------------------------------
// Rotary embedding

std::pair<torch::Tensor, torch::Tensor> rotary_tables(int64_t seq_len, int64_t head_dim,
                                                      double theta, torch::Dtype dtype,
                                                      torch::Device device) {
  auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  // inv_freq = 1 / theta^(2i/d), in fp32 as transformers computes it.
  auto exponent =
      torch::arange(0, head_dim, 2, torch::TensorOptions().dtype(torch::kLong).device(device))
          .to(torch::kFloat32) /
      static_cast<double>(head_dim);
  auto inv_freq = 1.0 / torch::pow(theta, exponent);            // (d/2)
  auto positions = torch::arange(seq_len, f32);                 // (T)
  auto freqs = positions.unsqueeze(1) * inv_freq.unsqueeze(0);  // (T, d/2)
  auto emb = torch::cat({freqs, freqs}, -1);                    // (T, d)
  return {emb.cos().to(dtype), emb.sin().to(dtype)};
}

// ---------------------------------------------------------------------------------------------
// Attention

AttentionImpl::AttentionImpl(const ModelConfig& c, const torch::TensorOptions& o)
    : n_heads_(c.num_attention_heads),
      n_kv_heads_(c.num_key_value_heads),
      head_dim_(c.head_dim),
      sliding_window_(c.sliding_window) {
  q_proj = register_module("q_proj", Linear(c.hidden_size, c.q_width(), o));
  k_proj = register_module("k_proj", Linear(c.hidden_size, c.kv_width(), o));
  v_proj = register_module("v_proj", Linear(c.hidden_size, c.kv_width(), o));
  o_proj = register_module("o_proj", Linear(c.q_width(), c.hidden_size, o));
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x_BTD, const torch::Tensor& cos_Td,
                                     const torch::Tensor& sin_Td) {
  const int64_t B = x_BTD.size(0), T = x_BTD.size(1);
  auto q = q_proj(x_BTD).view({B, T, n_heads_, head_dim_}).transpose(1, 2);     // (B, H, T, d)
  auto k = k_proj(x_BTD).view({B, T, n_kv_heads_, head_dim_}).transpose(1, 2);  // (B, K, T, d)
  auto v = v_proj(x_BTD).view({B, T, n_kv_heads_, head_dim_}).transpose(1, 2);  // (B, K, T, d)
  q = kernels::rotary(q, cos_Td, sin_Td, fused_rope);
  k = kernels::rotary(k, cos_Td, sin_Td, fused_rope);
  // (B, H, T, d)
  auto y = kernels::causal_attention(q, k, v, fused_attention, sliding_window_);
  y = y.transpose(1, 2).reshape({B, T, n_heads_ * head_dim_});  // (B, T, H*d)
  return o_proj(y);
}

// ---------------------------------------------------------------------------------------------
// MLP, decoder layer, stack

MlpImpl::MlpImpl(const ModelConfig& c, const torch::TensorOptions& o) {
  gate_proj = register_module("gate_proj", Linear(c.hidden_size, c.intermediate_size, o));
  up_proj = register_module("up_proj", Linear(c.hidden_size, c.intermediate_size, o));
  down_proj = register_module("down_proj", Linear(c.intermediate_size, c.hidden_size, o));
}

torch::Tensor MlpImpl::forward(const torch::Tensor& x_BTD) {
  auto gate = gate_proj(x_BTD), up = up_proj(x_BTD);          // (B, T, F)
  return down_proj(kernels::swiglu(gate, up, fused_swiglu));  // (B, T, D)
}

DecoderLayerImpl::DecoderLayerImpl(const ModelConfig& c, const torch::TensorOptions& o) {
  self_attn = register_module("self_attn", Attention(c, o));
  mlp = register_module("mlp", Mlp(c, o));
  input_layernorm = register_module("input_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps, o));
  post_attention_layernorm =
      register_module("post_attention_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps, o));
}

torch::Tensor DecoderLayerImpl::forward(const torch::Tensor& x_BTD, const torch::Tensor& cos_Td,
                                        const torch::Tensor& sin_Td) {
  auto h = x_BTD + self_attn(input_layernorm(x_BTD), cos_Td, sin_Td);
  return h + mlp(post_attention_layernorm(h));
}

DecoderStackImpl::DecoderStackImpl(const ModelConfig& c, const torch::TensorOptions& o) {
  embed_tokens = register_module("embed_tokens", Embedding(c.vocab_size, c.hidden_size, o));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) layers->push_back(DecoderLayer(c, o));
  norm = register_module("norm", RMSNorm(c.hidden_size, c.rms_norm_eps, o));
}

// ---------------------------------------------------------------------------------------------
// Transformer

TransformerImpl::TransformerImpl(const ModelConfig& c, const ModelInit& init) : config_(c) {
  auto o = torch::TensorOptions().dtype(init.dtype).device(init.device);
  model = register_module("model", DecoderStack(c, o));
  if (!c.tie_word_embeddings)
    lm_head = register_module("lm_head", Linear(c.hidden_size, c.vocab_size, o));
  if (!init.random) return;
  // transformers' _init_weights: normal(0, initializer_range) for Linear and Embedding, ones
  // for RMSNorm. Drawn in module order so a seed gives the same model every time.
  torch::NoGradGuard no_grad;
  for (auto& p : named_parameters()) {
    if (p.value().dim() == 1)
      p.value().fill_(1.0);  // RMSNorm weights
    else
      torch::nn::init::normal_(p.value(), 0.0, c.initializer_range);
  }
}

DecoderLayer TransformerImpl::layer(int64_t i) const {
  return model->layers->ptr<DecoderLayerImpl>(static_cast<size_t>(i));
}

void TransformerImpl::set_kernels(const kernels::KernelSet& k) {
  kernels_ = k;
  for (int64_t i = 0; i < num_layers(); ++i) {
    auto l = layer(i);
    l->input_layernorm->fused = l->post_attention_layernorm->fused = k.rmsnorm;
    l->self_attn->fused_rope = k.rope;
    l->self_attn->fused_attention = k.attention;
    l->mlp->fused_swiglu = k.swiglu;
  }
  model->norm->fused = k.rmsnorm;
}

torch::Tensor TransformerImpl::lm_head_weight() const {
  return lm_head ? lm_head->weight : model->embed_tokens->weight;
}

torch::Tensor TransformerImpl::hidden_states(const torch::Tensor& input_ids_BT) {
  auto x = model->embed_tokens(input_ids_BT);  // (B, T, D)
  auto [cos, sin] = rotary_tables(input_ids_BT.size(1), config_.head_dim, config_.rope_theta,
                                  x.scalar_type(), x.device());
  const bool recompute = activation_checkpointing && is_training() && torch::GradMode::is_enabled();
  for (int64_t i = 0; i < num_layers(); ++i)
    x = recompute ? checkpointed_layer_forward(*layer(i), x, cos, sin)
                  : layer(i)->forward(x, cos, sin);
  return model->norm(x);
}

torch::Tensor TransformerImpl::logits_from_hidden(const torch::Tensor& hidden) {
  return at::linear(hidden, lm_head_weight());
}

torch::Tensor TransformerImpl::forward(const torch::Tensor& input_ids_BT) {
  return logits_from_hidden(hidden_states(input_ids_BT));
}

}  // namespace dus
