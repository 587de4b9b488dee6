// Time of the phases of a training step (forward, backward, optimizer) on the device that runs
// them. On a CPU the phases run on the host, so the host clock (steady_clock) is their time. On
// CUDA the host only queues work: a host clock would time the launches, and a synchronize per
// phase would stall the stream every micro-batch. There each start/stop records an event on the
// current stream instead, and collect() waits once for them, at the step's logging point.
#pragma once

#include <c10/core/Device.h>

#include <array>
#include <chrono>
#include <memory>
#include <optional>

namespace dus {

class CudaIntervals;

/// The phases of one training step. Phases do not nest: one is open at a time.
enum class Phase { forward = 0, backward = 1, optimizer = 2 };
constexpr size_t kPhaseCount = 3;
const char* phase_name(Phase p);  ///< "forward", "backward", "optimizer"

class DeviceTimer {
 public:
  /// device: where the timed work runs; CUDA uses events on that device's current stream.
  explicit DeviceTimer(c10::Device device);
  ~DeviceTimer();
  DeviceTimer(const DeviceTimer&) = delete;
  DeviceTimer& operator=(const DeviceTimer&) = delete;

  /// Opens phase p; throws dus::Error when a phase is already open (phases do not nest).
  void start(Phase p);
  /// Closes phase p, adding its time to p's total; throws dus::Error unless p is the open phase.
  void stop(Phase p);
  /// Seconds per phase (indexed by Phase) since the last collect(), then resets the totals.
  /// On CUDA this is the one host wait (for the last recorded event). Throws dus::Error while a
  /// phase is open.
  std::array<double, kPhaseCount> collect();

 private:
  bool cuda_ = false;
  std::optional<Phase> open_;
  // CPU: totals and the open phase's start on the host clock.
  std::array<double, kPhaseCount> host_seconds_{};
  std::chrono::steady_clock::time_point started_;
  // CUDA: one event-pair list per phase.
  std::array<std::unique_ptr<CudaIntervals>, kPhaseCount> device_;
};

}  // namespace dus
