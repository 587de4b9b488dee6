// CudaIntervals and cuda_device_name in a build without CUDA (DUS_CUDA=OFF or no toolkit):
// callers reach them only with a CUDA device, which such a build never has; they throw if
// reached anyway, and everything links.
#include "core/error.h"
#include "train/cuda_events.h"

namespace dus {

namespace {
[[noreturn]] void not_built(const char* what) {
  throw Error(what, "this build has no CUDA support",
              "configure with the CUDA toolkit present and -DDUS_CUDA=ON");
}
}  // namespace

bool cuda_events_built() {
  return false;
}

struct CudaIntervals::Impl {};

CudaIntervals::CudaIntervals(int) {
  not_built("CudaIntervals");
}
CudaIntervals::~CudaIntervals() = default;
void CudaIntervals::begin() {
  not_built("CudaIntervals");
}
void CudaIntervals::end() {
  not_built("CudaIntervals");
}
double CudaIntervals::take_seconds() {
  not_built("CudaIntervals");
}

CudaMemory cuda_memory(int) {
  not_built("cuda_memory");
}

void reset_cuda_peak_memory(int) {
  not_built("reset_cuda_peak_memory");
}

std::string cuda_device_name(int) {
  not_built("cuda_device_name");
}

}  // namespace dus
