#include "train/device_choice.h"

#include <torch/cuda.h>

#include <cstdlib>

#include "core/error.h"

namespace dus {

DeviceChoice choose_cuda_device(int local_rank, int visible_count,
                                const std::string& cuda_visible_devices, bool share_devices) {
  const std::string rank_s = std::to_string(local_rank);
  const std::string count_s = std::to_string(visible_count);
  const std::string visible_s =
      cuda_visible_devices.empty() ? std::string("unset") : "\"" + cuda_visible_devices + "\"";
  const std::string where = "LOCAL_RANK " + rank_s + " (CUDA_VISIBLE_DEVICES " + visible_s + ")";
  if (visible_count < 1)
    throw Error(where, "this process sees no CUDA device (device count " + count_s + ")",
                "check CUDA_VISIBLE_DEVICES and that the job was given a GPU");
  if (local_rank < 0) throw Error(where, "LOCAL_RANK must be 0 or more");
  if (visible_count == 1)
    return {0, local_rank == 0
                   ? std::string("the one visible GPU")
                   : "the one visible GPU (one GPU bound per task; LOCAL_RANK " + rank_s + ")"};
  if (local_rank < visible_count)
    return {local_rank, "LOCAL_RANK " + rank_s + " of " + count_s + " visible GPUs"};
  if (share_devices) {
    const int index = local_rank % visible_count;
    return {index, "LOCAL_RANK " + rank_s + " shares GPU " + std::to_string(index) + " of " +
                       count_s + " visible (DUS_SHARE_GPUS=1)"};
  }
  throw Error(where,
              "LOCAL_RANK " + rank_s + " has no GPU of its own: this process sees " + count_s +
                  " CUDA devices (0.." + std::to_string(visible_count - 1) + ")",
              "bind one GPU per task (e.g. srun --gpus-per-task=1), start at most " + count_s +
                  " processes per node (--nproc), or set DUS_SHARE_GPUS=1 to let ranks share "
                  "GPUs (local_rank % " +
                  count_s + ")");
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
