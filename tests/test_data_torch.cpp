// Batch -> int64 input/target tensors: shapes, shift by one, values.
#include <catch2/catch.hpp>

#include "train/torch_batch.h"

TEST_CASE("a batch becomes int64 input and target tensors shifted by one", "[unit]") {
  dus::Batch b;
  b.rows = 2;
  b.cols = 4;
  b.tokens = {1, 10, 11, 2, 1, 20, 21, 22};
  dus::TokenTensors t = dus::batch_to_tensors(b);
  REQUIRE(t.input_BT.sizes() == at::IntArrayRef({2, 3}));
  REQUIRE(t.target_BT.sizes() == at::IntArrayRef({2, 3}));
  CHECK(t.input_BT.scalar_type() == at::kLong);
  CHECK(t.input_BT[1][2].item<int64_t>() == 21);
  CHECK(t.target_BT[0][0].item<int64_t>() == 10);
  CHECK(t.target_BT[1][2].item<int64_t>() == 22);
}
