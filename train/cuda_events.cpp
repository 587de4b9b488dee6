// Compiled only when the build has CUDA (train/CMakeLists.txt): the CUDA runtime and ATen's
// CUDA headers are needed here and nowhere else in the trainer.
#include "train/cuda_events.h"

#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>

#include <deque>

#include "core/error.h"

namespace dus {

bool cuda_events_built() {
  return true;
}

struct CudaIntervals::Impl {
  c10::DeviceIndex device = 0;
  // Timing events (ATen's default flag is cudaEventDisableTiming), created on first use and
  // reused after each take_seconds(); a deque, so growing it never moves a recorded event.
  std::deque<at::cuda::CUDAEvent> starts, stops;
  size_t used = 0;  // intervals recorded since the last take_seconds()
  bool open = false;
};

CudaIntervals::CudaIntervals(int device_index) : impl_(std::make_unique<Impl>()) {
  impl_->device =
      device_index < 0 ? c10::cuda::current_device() : static_cast<c10::DeviceIndex>(device_index);
}

CudaIntervals::~CudaIntervals() = default;

void CudaIntervals::begin() {
  Impl& m = *impl_;
  if (m.open) throw Error("CudaIntervals", "begin() while an interval is open");
  if (m.used == m.starts.size()) {
    m.starts.emplace_back(cudaEventDefault);
    m.stops.emplace_back(cudaEventDefault);
  }
  m.starts[m.used].record(at::cuda::getCurrentCUDAStream(m.device));
  m.open = true;
}

void CudaIntervals::end() {
  Impl& m = *impl_;
  if (!m.open) throw Error("CudaIntervals", "end() without begin()");
  m.stops[m.used].record(at::cuda::getCurrentCUDAStream(m.device));
  ++m.used;
  m.open = false;
}

double CudaIntervals::take_seconds() {
  Impl& m = *impl_;
  if (m.open) throw Error("CudaIntervals", "take_seconds() while an interval is open");
  double ms = 0;
  for (size_t i = 0; i < m.used; ++i) {
    // The first wait blocks until the stream reaches the event; those after it (recorded
    // earlier or on the same stream) have passed already and return at once.
    m.stops[i].synchronize();
    m.starts[i].synchronize();
    ms += m.starts[i].elapsed_time(m.stops[i]);
  }
  m.used = 0;
  return ms / 1e3;
}

CudaMemory cuda_memory(int device_index) {
  const auto stats =
      c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(device_index));
  const auto all = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
  CudaMemory m;
  m.allocated = stats.allocated_bytes[all].current;
  m.peak_allocated = stats.allocated_bytes[all].peak;
  m.reserved = stats.reserved_bytes[all].current;
  m.peak_reserved = stats.reserved_bytes[all].peak;
  return m;
}

void reset_cuda_peak_memory(int device_index) {
  c10::cuda::CUDACachingAllocator::resetPeakStats(static_cast<c10::DeviceIndex>(device_index));
}

std::string cuda_device_name(int device_index) {
  return at::cuda::getDeviceProperties(static_cast<c10::DeviceIndex>(device_index))->name;
}

}  // namespace dus
