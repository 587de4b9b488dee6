#include "model/layer_checkpoint.h"

#include <torch/autograd.h>

namespace dus {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct CheckpointedLayer : public torch::autograd::Function<CheckpointedLayer> {
  // Parameters are inputs so the autograd graph routes their gradients (computed here in
  // backward) to their .grad like any other use of them.
  // `params` is a TensorList (not a std::vector) so autograd counts each one as an input.
  static variable_list forward(AutogradContext* ctx, torch::Tensor x, torch::Tensor cos,
                               torch::Tensor sin, at::TensorList params, DecoderLayerImpl* layer) {
    ctx->saved_data["layer"] = reinterpret_cast<int64_t>(layer);
    ctx->saved_data["num_params"] = static_cast<int64_t>(params.size());
    ctx->save_for_backward({x, cos, sin});
    torch::NoGradGuard no_grad;
    return {layer->forward(x, cos, sin)};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto saved = ctx->get_saved_variables();
    auto* layer = reinterpret_cast<DecoderLayerImpl*>(ctx->saved_data["layer"].toInt());
    torch::AutoGradMode enable(true);
    auto x = saved[0].detach().requires_grad_(true);
    auto y = layer->forward(x, saved[1], saved[2]);
    variable_list inputs = {x};
    for (const auto& p : layer->parameters()) inputs.push_back(p);
    auto grads = torch::autograd::grad({y}, inputs, {grad_outputs[0]}, /*retain_graph=*/false,
                                       /*create_graph=*/false, /*allow_unused=*/true);
    // One gradient per input of forward: x, cos, sin, each parameter, and the layer pointer.
    variable_list out = {grads[0], torch::Tensor(), torch::Tensor()};
    for (size_t i = 1; i < grads.size(); ++i) out.push_back(grads[i]);
    out.emplace_back();
    return out;
  }
};

}  // namespace

torch::Tensor checkpointed_layer_forward(DecoderLayerImpl& layer, const torch::Tensor& x_BTD,
                                         const torch::Tensor& cos_Td, const torch::Tensor& sin_Td) {
  std::vector<torch::Tensor> params = layer.parameters();
  return CheckpointedLayer::apply(x_BTD, cos_Td, sin_Td, at::TensorList(params), &layer)[0];
}

}  // namespace dus
