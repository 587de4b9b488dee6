#include "train/device_choice.h"

#include <torch/cuda.h>

#include <cstdlib>

#include <fmt/format.h>

#include "core/error.h"

namespace dus {

DeviceChoice choose_cuda_device(int local_rank, int visible_count,
                                const std::string& cuda_visible_devices, bool share_devices) {
  const std::string visible_s = cuda_visible_devices.empty()
                                    ? std::string("unset")
                                    : fmt::format("\"{}\"", cuda_visible_devices);
  const std::string where =
      fmt::format("LOCAL_RANK {} (CUDA_VISIBLE_DEVICES {})", local_rank, visible_s);
  if (visible_count < 1)
    throw Error(where,
                fmt::format("this process sees no CUDA device (device count {})", visible_count),
                "check CUDA_VISIBLE_DEVICES and that the job was given a GPU");
  if (local_rank < 0) throw Error(where, "LOCAL_RANK must be 0 or more");
  if (visible_count == 1)
    return {0, local_rank == 0
                   ? std::string("the one visible GPU")
                   : fmt::format("the one visible GPU (one GPU bound per task; LOCAL_RANK {})",
                                 local_rank)};
  if (local_rank < visible_count)
    return {local_rank, fmt::format("LOCAL_RANK {} of {} visible GPUs", local_rank, visible_count)};
  if (share_devices) {
    const int index = local_rank % visible_count;
    return {index, fmt::format("LOCAL_RANK {} shares GPU {} of {} visible (DUS_SHARE_GPUS=1)",
                               local_rank, index, visible_count)};
  }
  throw Error(where,
              fmt::format("LOCAL_RANK {} has no GPU of its own: this process sees {} CUDA "
                          "devices (0..{})",
                          local_rank, visible_count, visible_count - 1),
              fmt::format("bind one GPU per task (e.g. srun --gpus-per-task=1), start at most {} "
                          "processes per node (--nproc), or set DUS_SHARE_GPUS=1 to let ranks "
                          "share GPUs (local_rank % {})",
                          visible_count, visible_count));
}

DeviceChoice cuda_device_for_rank(int local_rank) {
  const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
  const char* share = std::getenv("DUS_SHARE_GPUS");
  // Set but empty hides every GPU; say so rather than "unset".
  const std::string visible_s = visible ? (*visible ? visible : "(empty)") : "";
  return choose_cuda_device(local_rank, static_cast<int>(torch::cuda::device_count()), visible_s,
                            share && std::string(share) == "1");
}

}  // namespace dus
