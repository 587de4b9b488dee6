// Which CUDA device a rank trains on. cuda:LOCAL_RANK is right when every process of a node sees
// all of the node's GPUs (torchrun, dus launch); it is wrong when the scheduler binds one GPU per
// task (SLURM --gpus-per-task=1: each task sees one device, yet LOCAL_RANK runs up to 7) and
// when more processes than GPUs are started. The choice is a pure function of the numbers, so
// every branch is tested without a GPU; cuda_device_for_rank() feeds it from the process.
#pragma once

#include <string>

namespace dus {

/// The device a rank uses and why (one line, for the start-up log).
struct DeviceChoice {
  int index = 0;       ///< CUDA device index among the visible ones
  std::string reason;  ///< e.g. "LOCAL_RANK 3 of 8 visible GPUs"
};

/// local_rank: LOCAL_RANK (0 when unset); visible_count: CUDA devices this process sees;
/// cuda_visible_devices: the CUDA_VISIBLE_DEVICES value, "" when unset (only for messages);
/// share_devices: several ranks may share one GPU (local_rank % visible_count).
/// - visible_count == 1: device 0, whatever local_rank (one GPU bound per task);
/// - local_rank < visible_count: device local_rank;
/// - otherwise, with share_devices: device local_rank % visible_count;
/// - otherwise (and when visible_count < 1 or local_rank < 0): throws dus::Error naming
///   LOCAL_RANK, CUDA_VISIBLE_DEVICES and the count, with what to change.
DeviceChoice choose_cuda_device(int local_rank, int visible_count,
                                const std::string& cuda_visible_devices, bool share_devices);

/// choose_cuda_device() with the visible count from torch::cuda::device_count(),
/// CUDA_VISIBLE_DEVICES from the environment and share_devices from DUS_SHARE_GPUS=1. Call only
/// when torch::cuda::is_available().
DeviceChoice cuda_device_for_rank(int local_rank);

}  // namespace dus
