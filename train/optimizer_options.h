// AdamW's hyper-parameters, apart from the optimizer itself so that the recipe (and whatever
// parses one, such as the recipe fuzzer) needs no LibTorch header.
#pragma once

#include <cstdint>

namespace dus {

struct OptimizerOptions {
  double beta1 = 0.9;                       ///< first-moment decay
  double beta2 = 0.95;                      ///< second-moment decay
  double eps = 1e-8;                        ///< denominator floor
  double weight_decay = 0.1;                ///< decoupled decay (multiplied by lr)
  bool decay_norms_and_embeddings = false;  ///< by default none on 1-D params and embeddings
  /// Elements stepped together (the transient bound of AdamW::step): 2^26 = 256 MiB of fp32.
  int64_t chunk_elements = int64_t{1} << 26;
};

}  // namespace dus
