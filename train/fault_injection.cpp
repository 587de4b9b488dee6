#include "train/fault_injection.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <fmt/format.h>

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

namespace {

bool listed(const std::vector<int64_t>& steps, int64_t step) {
  return std::find(steps.begin(), steps.end(), step) != steps.end();
}

}  // namespace

bool FaultInjection::nonfinite_at(int64_t step) const {
  return listed(nonfinite_steps, step);
}

bool FaultInjection::spike_at(int64_t step) const {
  return listed(spike_steps, step);
}

namespace {

struct KillPoint {
  std::string name;      ///< "" when DUS_TEST_KILL_AT is unset: every point is inert
  int64_t nth = 0;       ///< 1-based pass at which to fire
  int signal = SIGKILL;  ///< DUS_TEST_KILL_SIGNAL=TERM for a graceful stop instead
  int64_t passes = 0;    ///< times the named point was passed in this process
};

KillPoint& kill_point() {
  static KillPoint k = [] {
    KillPoint p;
    const char* spec = std::getenv("DUS_TEST_KILL_AT");
    const char* colon = spec ? std::strchr(spec, ':') : nullptr;
    if (colon) {
      p.name.assign(spec, colon);
      p.nth = std::atoll(colon + 1);
    }
    const char* sig = std::getenv("DUS_TEST_KILL_SIGNAL");
    if (sig && std::strcmp(sig, "TERM") == 0) p.signal = SIGTERM;
    return p;
  }();
  return k;
}

}  // namespace

void fault_point(const char* name) {
  KillPoint& k = kill_point();
  if (k.name.empty() || k.name != name || ++k.passes != k.nth) return;
  // Marks the moment in the output (the campaign classifies kills by it), then dies as
  // kill -9 would, or receives SIGTERM as `kill` would.
  fmt::print("fault point {}:{}\n", name, k.nth);
  std::fflush(stdout);
  ::kill(::getpid(), k.signal);
}

}  // namespace dus
