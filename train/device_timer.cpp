#include "train/device_timer.h"

#include "core/clock.h"
#include "core/error.h"
#include "train/cuda_events.h"

namespace dus {

const char* phase_name(Phase p) {
  switch (p) {
    case Phase::forward:
      return "forward";
    case Phase::backward:
      return "backward";
    case Phase::optimizer:
      return "optimizer";
  }
  return "?";
}

DeviceTimer::DeviceTimer(c10::Device device) : cuda_(device.is_cuda()) {
  if (cuda_)
    for (auto& d : device_)
      d = std::make_unique<CudaIntervals>(device.has_index() ? device.index() : -1);
}

DeviceTimer::~DeviceTimer() = default;

void DeviceTimer::start(Phase p) {
  if (open_)
    throw Error(
        "DeviceTimer",
        std::string("start(") + phase_name(p) + ") while " + phase_name(*open_) + " is open",
        "stop a phase before starting the next (phases do not nest)");
  open_ = p;
  if (cuda_)
    device_[static_cast<size_t>(p)]->begin();
  else
    started_ = std::chrono::steady_clock::now();
}

void DeviceTimer::stop(Phase p) {
  if (open_ != p)
    throw Error("DeviceTimer", std::string("stop(") + phase_name(p) + ") but " +
                                   (open_ ? std::string(phase_name(*open_)) + " is open"
                                          : std::string("no phase is open")));
  open_.reset();
  const auto i = static_cast<size_t>(p);
  if (cuda_)
    device_[i]->end();
  else
    host_seconds_[i] += seconds_since(started_);
}

std::array<double, kPhaseCount> DeviceTimer::collect() {
  if (open_)
    throw Error("DeviceTimer", std::string("collect() while ") + phase_name(*open_) + " is open");
  std::array<double, kPhaseCount> out{};
  if (cuda_) {
    for (size_t i = 0; i < kPhaseCount; ++i) out[i] = device_[i]->take_seconds();
  } else {
    out = host_seconds_;
    host_seconds_.fill(0);
  }
  return out;
}

}  // namespace dus
