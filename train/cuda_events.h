// CUDA event timing and device facts behind a header with no CUDA types: the trainer's g++
// translation units include this, never the CUDA runtime. cuda_events.cpp implements it in
// builds with CUDA (DUS_WITH_CUDA); cuda_events_stub.cpp otherwise, where constructing a
// CudaIntervals or asking a device name throws dus::Error (callers check device.is_cuda() first,
// and a build without CUDA never has a CUDA device to hand them).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace dus {

/// True when this build has the CUDA implementation (not the stub).
bool cuda_events_built();

/// Time between pairs of events recorded on the current CUDA stream of one device. Recording
/// costs the host nothing (no wait); only take_seconds() waits, once, for the events to pass.
/// The times are device time from begin() to end() on the stream, idle gaps included: a phase
/// the host cannot launch fast enough shows its full length, as the wall clock would.
class CudaIntervals {
 public:
  /// device_index: the CUDA device; -1: the current one.
  explicit CudaIntervals(int device_index);
  ~CudaIntervals();
  CudaIntervals(const CudaIntervals&) = delete;
  CudaIntervals& operator=(const CudaIntervals&) = delete;

  void begin();  ///< records a start event on the device's current stream
  void end();    ///< records the matching stop event; throws without a begin()
  /// Waits for the recorded events and returns the sum of the intervals recorded since the
  /// last call, in seconds; the events are then reused, so steady state creates none.
  /// Throws while an interval is open.
  double take_seconds();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// The name CUDA reports for a device (cudaDeviceProp::name), e.g. "NVIDIA H100 80GB HBM3".
std::string cuda_device_name(int device_index);

/// The CUDA caching allocator's bytes on one device: what tensors hold (allocated) and what it
/// took from the driver (reserved), now and at their peaks (torch.cuda.max_memory_allocated and
/// max_memory_reserved).
struct CudaMemory {
  int64_t allocated = 0, peak_allocated = 0, reserved = 0, peak_reserved = 0;
};
CudaMemory cuda_memory(int device_index);
/// Starts the peaks afresh from what is allocated now (torch.cuda.reset_peak_memory_stats).
void reset_cuda_peak_memory(int device_index);

}  // namespace dus
