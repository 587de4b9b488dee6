// The CUDA device a rank trains on, with injected visible-device counts (no GPU needed): one GPU
// bound per task, one process per GPU, opted-in sharing, and the errors that replace CUDA's
// "invalid device ordinal".
#include <torch/cuda.h>
#undef CHECK  // in case a c10 header brought glog's CHECK (tests/torch_test.h)
#include <catch2/catch.hpp>

#include <cstdlib>

#include "core/error.h"
#include "train/device_choice.h"

using dus::choose_cuda_device;

namespace {
// The dus::Error that choose_cuda_device throws for these numbers (fails the test if none).
dus::Error error_for(int local_rank, int visible, const std::string& cvd, bool share) {
  try {
    choose_cuda_device(local_rank, visible, cvd, share);
  } catch (const dus::Error& e) {
    return e;
  }
  FAIL("no dus::Error for LOCAL_RANK " << local_rank << " of " << visible << " visible");
  return dus::Error("", "");
}
}  // namespace

TEST_CASE("one visible GPU is every rank's device (SLURM one GPU per task)", "[unit]") {
  // srun --gpus-per-task=1: each task sees one device as index 0 while LOCAL_RANK runs to 7.
  for (int rank : {0, 1, 7}) {
    auto c = choose_cuda_device(rank, 1, "5", false);
    CHECK(c.index == 0);
  }
  CHECK(choose_cuda_device(0, 1, "", false).reason == "the one visible GPU");
  CHECK_THAT(choose_cuda_device(7, 1, "3", false).reason,
             Catch::Contains("one GPU bound per task") && Catch::Contains("LOCAL_RANK 7"));
}

TEST_CASE("a rank below the visible count takes device LOCAL_RANK", "[unit]") {
  for (int rank = 0; rank < 8; ++rank) {
    auto c = choose_cuda_device(rank, 8, "", false);
    CHECK(c.index == rank);
    CHECK(c.reason == "LOCAL_RANK " + std::to_string(rank) + " of 8 visible GPUs");
  }
  CHECK(choose_cuda_device(1, 2, "2,3", true).index == 1);  // sharing changes nothing here
}

TEST_CASE("ranks beyond the visible GPUs share them only when asked", "[unit]") {
  // --nproc 8 on a 2-GPU node with DUS_SHARE_GPUS=1: ranks 0,2,4,6 on GPU 0, 1,3,5,7 on GPU 1.
  const int expected[] = {0, 1, 0, 1, 0, 1, 0, 1};
  for (int rank = 0; rank < 8; ++rank)
    CHECK(choose_cuda_device(rank, 2, "0,1", true).index == expected[rank]);
  CHECK_THAT(choose_cuda_device(5, 2, "0,1", true).reason,
             Catch::Contains("shares GPU 1 of 2") && Catch::Contains("DUS_SHARE_GPUS=1"));
  CHECK(choose_cuda_device(7, 3, "", true).index == 1);
}

TEST_CASE("a rank without a GPU of its own is an error naming rank, devices and count", "[unit]") {
  auto e = error_for(5, 2, "0,1", false);
  CHECK_THAT(e.where(),
             Catch::Contains("LOCAL_RANK 5") && Catch::Contains("CUDA_VISIBLE_DEVICES \"0,1\""));
  CHECK_THAT(e.problem(), Catch::Contains("sees 2 CUDA devices (0..1)"));
  CHECK_THAT(e.hint(), Catch::Contains("--gpus-per-task=1") && Catch::Contains("--nproc") &&
                           Catch::Contains("at most 2 processes") &&
                           Catch::Contains("DUS_SHARE_GPUS=1"));
  // The boundary: LOCAL_RANK == count has no device either.
  CHECK_THAT(error_for(2, 2, "", false).where(),
             Catch::Contains("LOCAL_RANK 2") && Catch::Contains("CUDA_VISIBLE_DEVICES unset"));
  CHECK_THAT(error_for(8, 4, "", false).problem(), Catch::Contains("sees 4 CUDA devices (0..3)"));
}

TEST_CASE("no visible device or a negative LOCAL_RANK is an error even when sharing", "[unit]") {
  for (bool share : {false, true}) {
    auto e = error_for(0, 0, "", share);
    CHECK_THAT(e.problem(), Catch::Contains("no CUDA device") && Catch::Contains("count 0"));
    CHECK_THAT(e.where(), Catch::Contains("CUDA_VISIBLE_DEVICES unset"));
    CHECK_THAT(error_for(1, 0, "(empty)", share).where(),
               Catch::Contains("CUDA_VISIBLE_DEVICES \"(empty)\""));
    CHECK_THAT(error_for(-1, 4, "", share).problem(), Catch::Contains("LOCAL_RANK must be 0"));
  }
}

TEST_CASE("cuda_device_for_rank reads the count, CUDA_VISIBLE_DEVICES and DUS_SHARE_GPUS",
          "[unit][gpu]") {
  const int count = static_cast<int>(torch::cuda::device_count());
  if (count == 0) {
    // No GPU: the wrapper reports that this process sees none, with the variable's value.
    const char* cvd = std::getenv("CUDA_VISIBLE_DEVICES");
    const std::string shown =
        cvd ? (*cvd ? "\"" + std::string(cvd) + "\"" : "\"(empty)\"") : std::string("unset");
    try {
      dus::cuda_device_for_rank(0);
      FAIL("no error without a CUDA device");
    } catch (const dus::Error& e) {
      CHECK_THAT(e.where(), Catch::Contains("CUDA_VISIBLE_DEVICES " + shown));
      CHECK_THAT(e.problem(), Catch::Contains("no CUDA device"));
    }
    WARN("skipped the device cases: no CUDA device");
    return;
  }
  ::unsetenv("DUS_SHARE_GPUS");
  CHECK(dus::cuda_device_for_rank(count - 1).index == (count == 1 ? 0 : count - 1));
  if (count > 1) CHECK_THROWS_AS(dus::cuda_device_for_rank(count), dus::Error);
  ::setenv("DUS_SHARE_GPUS", "1", 1);
  CHECK(dus::cuda_device_for_rank(count).index == 0);
  CHECK(dus::cuda_device_for_rank(count + 1).index == (count == 1 ? 0 : 1));
  ::unsetenv("DUS_SHARE_GPUS");
}
