// `dus bench train` end to end on a tiny config: it runs and prints the table (a few seconds).
#include "torch_test.h"

#include <cstdio>
#include <string>

namespace {
std::string run_capture(const std::string& cmd, int* status) {
  std::string out;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  REQUIRE(p);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  *status = pclose(p);
  return out;
}
}  // namespace

TEST_CASE("dus bench train prints the speed table for a tiny config", "[unit]") {
  const std::string cmd =
      std::string(DUS_BIN) + " bench train --config " + DUS_SOURCE_DIR +
      "/recipes/tests/tiny_model.json --batch 2 --seq 32 --steps 3 --warmup 1 --threads 2"
      " --precision fp32 --matmul-seconds 0.1";
  int status = 0;
  const std::string out = run_capture(cmd, &status);
  INFO(out);
  REQUIRE(status == 0);
  for (const char* row :
       {"| tokens/s (fwd + bwd + AdamW) |", "| data |", "| forward |", "| backward |",
        "| optimizer |", "| logging |", "| matmul fp32 |", "| matmul bf16 |",
        "| MFU vs fp32 matmul |", "| MFU vs bf16 matmul |", "| peak resident memory |"})
    CHECK_THAT(out, Catch::Contains(row));
  CHECK_THAT(out, Catch::Contains("result tokens_per_s=") && Catch::Contains("precision=fp32"));
}

TEST_CASE("dus bench train --recipe reads the checked-in bench recipes", "[unit]") {
  int status = 0;
  const std::string out =
      run_capture(std::string("cd ") + DUS_SOURCE_DIR + " && " + DUS_BIN +
                      " bench train --recipe recipes/bench/demo.yaml --batch 1 --seq 16"
                      " --steps 1 --warmup 0 --precision fp32 --matmul-seconds 0.05",
                  &status);
  INFO(out);
  REQUIRE(status == 0);
  CHECK_THAT(out, Catch::Contains("4 layers, hidden 256, vocab 4096"));
  CHECK_THAT(out, Catch::Contains("2 threads"));
}
