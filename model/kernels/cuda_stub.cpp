// The CUDA launchers in a build without CUDA (DUS_CUDA=OFF or no toolkit): every op then uses
// its reference, so these are never reached; they exist so that everything links, and throw a
// dus::Error if something calls them anyway.
#include "core/error.h"
#include "model/kernels/cuda_launch.h"

namespace dus::kernels::cuda {
namespace {
[[noreturn]] void not_built(const char* op) {
  throw dus::Error(std::string("kernels/") + op, "this build has no CUDA kernels",
                   "configure with the CUDA toolkit present and -DDUS_CUDA=ON, or set "
                   "`kernels: off`");
}
}  // namespace

std::tuple<at::Tensor, at::Tensor> rmsnorm_forward(const at::Tensor&, const at::Tensor&, double) {
  not_built("rmsnorm");
}
std::tuple<at::Tensor, at::Tensor> rmsnorm_backward(const at::Tensor&, const at::Tensor&,
                                                    const at::Tensor&, const at::Tensor&) {
  not_built("rmsnorm");
}
at::Tensor rope(const at::Tensor&, const at::Tensor&, const at::Tensor&, bool) {
  not_built("rope");
}
at::Tensor swiglu_forward(const at::Tensor&, const at::Tensor&) {
  not_built("swiglu");
}
std::tuple<at::Tensor, at::Tensor> swiglu_backward(const at::Tensor&, const at::Tensor&,
                                                   const at::Tensor&) {
  not_built("swiglu");
}
at::Tensor cross_entropy_chunk(at::Tensor&, const at::Tensor&, const at::Tensor&, bool) {
  not_built("cross_entropy");
}

}  // namespace dus::kernels::cuda
