#include "trainer/fault_injection.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

namespace dus {

FaultInjection FaultInjection::from_environment() {
  FaultInjection f;
  if (const char* k = std::getenv("DUS_TEST_KILL_AT_STEP")) f.kill_at_step = std::atoll(k);
  if (const char* k = std::getenv("DUS_TEST_HANG_AT_STEP")) f.hang_at_step = std::atoll(k);
  if (const char* k = std::getenv("DUS_TEST_KILL_RANK")) f.kill_rank = std::atoi(k);
  auto steps = [](const char* list, std::vector<int64_t>* out) {
    for (const char* p = list; p && *p;) {
      out->push_back(std::atoll(p));
      while (*p && *p != ',') ++p;
      if (*p == ',') ++p;
    }
  };
  steps(std::getenv("DUS_TEST_NONFINITE_STEPS"), &f.nonfinite_steps);
  steps(std::getenv("DUS_TEST_SPIKE_STEPS"), &f.spike_steps);
  return f;
}

void FaultInjection::inside_step(int64_t step, int rank) const {
  const bool this_rank = kill_rank < 0 || kill_rank == rank;
  if (kill_at_step == step && this_rank) {
    std::fflush(stdout);
    ::kill(::getpid(), SIGKILL);  // as kill -9 would, in the middle of the step
  }
  if (hang_at_step == step && this_rank) {
    std::fflush(stdout);
    while (true) ::pause();  // alive, never reaching the next collective
  }
}

bool FaultInjection::nonfinite_at(int64_t step) const {
  return std::find(nonfinite_steps.begin(), nonfinite_steps.end(), step) != nonfinite_steps.end();
}

bool FaultInjection::spike_at(int64_t step) const {
  return std::find(spike_steps.begin(), spike_steps.end(), step) != spike_steps.end();
}

}  // namespace dus
