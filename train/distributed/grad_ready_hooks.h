// Post-accumulate-grad hooks that tell a gradient synchroniser (ddp's buckets, the zero stages'
// buckets) that parameter i's gradient of this backward is final: autograd runs the hook right
// after it added the gradient into .grad, so a bucket whose parameters have all reported can be
// reduced while backward goes on with the layers below. Included by the .cpp files only (the
// autograd headers are heavy).
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <memory>
#include <vector>

namespace dus::dist {

/// Installs on each of `params` a hook calling owner->on_grad_ready(i) (i its index).
template <typename Owner>
void install_grad_ready_hooks(std::vector<at::Tensor>& params, Owner* owner) {
  struct Hook : torch::autograd::PostAccumulateGradHook {
    Hook(Owner* o, size_t i) : owner(o), index(i) {}
    void operator()(const torch::autograd::Variable& /*param*/) override {
      owner->on_grad_ready(index);
    }
    Owner* owner;
    size_t index;
  };
  for (size_t i = 0; i < params.size(); ++i)
    torch::autograd::impl::set_post_acc_grad_hooks(params[i], std::make_unique<Hook>(owner, i));
}

/// Removes them (the owner is going away; the parameters may live on).
inline void remove_grad_ready_hooks(std::vector<at::Tensor>& params) {
  for (auto& p : params) torch::autograd::impl::set_post_acc_grad_hooks(p, nullptr);
}

}  // namespace dus::dist
