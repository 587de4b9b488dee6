// The Mistral / Llama decoder-only Transformer, written for one device (parallelism is applied
// elsewhere). Module and parameter names mirror Hugging Face's exactly
// ("model.layers.3.self_attn.q_proj.weight"), so loading and saving is a name-for-name copy.
//
// Shape legend: B batch, T sequence, D hidden, H query heads, K key/value heads, d head_dim,
// F intermediate (SwiGLU) width, V vocabulary.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include "model/kernels/kernel_set.h"
#include "model/model_config.h"

namespace dus {

/// How parameters are created. Loading a checkpoint uses random = false: the tensors are
/// allocated but never written (the pages are not touched), so building a 7B model to load
/// into costs no time and no resident memory.
struct ModelInit {
  /// Parameter dtype.
  c10::ScalarType dtype = c10::ScalarType::Float;
  /// Parameter device.
  c10::Device device = c10::Device(c10::DeviceType::CPU);
  /// transformers' initialisation (normal(0, initializer_range), norms at 1) from torch's
  /// default generator (seed it first); false leaves the values undefined.
  bool random = true;
};

/// y = x W^T, W of shape (out, in); named "weight" like nn.Linear without bias.
class LinearImpl : public torch::nn::Module {
 public:
  LinearImpl(int64_t in_features, int64_t out_features, const torch::TensorOptions& options);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;
};
TORCH_MODULE(Linear);

/// Token embedding table (V, D), named "weight" like nn.Embedding.
class EmbeddingImpl : public torch::nn::Module {
 public:
  EmbeddingImpl(int64_t num_embeddings, int64_t dim, const torch::TensorOptions& options);
  torch::Tensor forward(const torch::Tensor& ids);
  torch::Tensor weight;
};
TORCH_MODULE(Embedding);

class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t dim, double eps, const torch::TensorOptions& options);
  /// kernels::rms_norm: normalises in fp32 (as transformers does), then scales in the input
  /// dtype; the formula is kernels::rms_norm_reference.
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;
  double eps;
  /// Use the fused op (CUDA kernel or CPU loop) where it applies; set by
  /// TransformerImpl::set_kernels.
  bool fused = false;
};
TORCH_MODULE(RMSNorm);

/// Rotary tables for positions [0, T): cos and sin of shape (T, d), fp32 frequencies, cast to
/// `dtype`, computed as transformers computes them.
std::pair<torch::Tensor, torch::Tensor> rotary_tables(int64_t seq_len, int64_t head_dim,
                                                      double theta, torch::Dtype dtype,
                                                      torch::Device device);

class AttentionImpl : public torch::nn::Module {
 public:
  AttentionImpl(const ModelConfig& config, const torch::TensorOptions& options);
  /// x_BTD -> (B, T, D). cos/sin from rotary_tables. Rotary is kernels::rotary, attention
  /// kernels::causal_attention (with this layer's sliding window).
  torch::Tensor forward(const torch::Tensor& x_BTD, const torch::Tensor& cos_Td,
                        const torch::Tensor& sin_Td);
  Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  /// Use the fused rotary kernel (kernels::rotary); set by TransformerImpl::set_kernels.
  bool fused_rope = false;
  /// Use the fused CPU causal attention (kernels::causal_attention) where no sliding window
  /// applies; set by TransformerImpl::set_kernels.
  bool fused_attention = false;

 private:
  int64_t n_heads_, n_kv_heads_, head_dim_;
  std::optional<int64_t> sliding_window_;
};
TORCH_MODULE(Attention);

class MlpImpl : public torch::nn::Module {
 public:
  MlpImpl(const ModelConfig& config, const torch::TensorOptions& options);
  /// SwiGLU: down(silu(gate(x)) * up(x)), the gating through kernels::swiglu.
  torch::Tensor forward(const torch::Tensor& x_BTD);
  Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
  /// Use the fused silu(gate) * up kernel (kernels::swiglu); set by TransformerImpl::set_kernels.
  bool fused_swiglu = false;
};
TORCH_MODULE(Mlp);

class DecoderLayerImpl : public torch::nn::Module {
 public:
  DecoderLayerImpl(const ModelConfig& config, const torch::TensorOptions& options);
  /// Pre-norm residual block: h = x + attn(norm(x)); out = h + mlp(norm(h)).
  torch::Tensor forward(const torch::Tensor& x_BTD, const torch::Tensor& cos_Td,
                        const torch::Tensor& sin_Td);
  Attention self_attn{nullptr};
  Mlp mlp{nullptr};
  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
};
TORCH_MODULE(DecoderLayer);

/// The body ("model." in Hugging Face names): embeddings, layers, final norm.
class DecoderStackImpl : public torch::nn::Module {
 public:
  DecoderStackImpl(const ModelConfig& config, const torch::TensorOptions& options);
  Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RMSNorm norm{nullptr};
};
TORCH_MODULE(DecoderStack);

class TransformerImpl : public torch::nn::Module {
 public:
  explicit TransformerImpl(const ModelConfig& config, const ModelInit& init = {});

  /// input_ids_BT (int64) -> logits (B, T, V) in the parameters' dtype.
  torch::Tensor forward(const torch::Tensor& input_ids_BT);
  /// input_ids_BT -> final-norm hidden states (B, T, D); the lm_head is left to the caller
  /// (chunked losses avoid materialising all logits).
  torch::Tensor hidden_states(const torch::Tensor& input_ids_BT);
  /// hidden (…, D) -> logits (…, V) through lm_head (or the tied embedding).
  torch::Tensor logits_from_hidden(const torch::Tensor& hidden);
  /// The lm_head weight (V, D): the embedding matrix when tied.
  torch::Tensor lm_head_weight() const;

  const ModelConfig& config() const { return config_; }
  int64_t num_layers() const { return static_cast<int64_t>(model->layers->size()); }
  DecoderLayer layer(int64_t i) const;

  /// Switches the fused RMSNorm / rotary / SwiGLU ops of every layer (and the final norm) as
  /// `kernels` says; default all off: the plain LibTorch path. Call again after adding layers.
  /// The loss and optimizer switches in `kernels` are read by the trainer, not the model.
  void set_kernels(const kernels::KernelSet& kernels);
  const kernels::KernelSet& kernels() const { return kernels_; }

  DecoderStack model{nullptr};
  Linear lm_head{nullptr};  // null when embeddings are tied

  /// Recompute each decoder layer in backward instead of keeping its activations (training
  /// only; the loss and gradients are the same).
  bool activation_checkpointing = false;

 private:
  ModelConfig config_;
  kernels::KernelSet kernels_;
};
TORCH_MODULE(Transformer);

}  // namespace dus
