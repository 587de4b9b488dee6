// Faults on purpose, for the tests of what a fault must not break (exact resume after kill -9,
// the named dead or hung rank, the skipped non-finite step). Read once from the environment;
// inert unless a DUS_TEST_* variable is set, and consulted at the points where a real fault
// would strike: inside a step, between forward and backward.
//
// Named kill points reach the moments a random kill rarely lands on: DUS_TEST_KILL_AT=NAME:N
// (e.g. save:2) sends this process DUS_TEST_KILL_SIGNAL (KILL, the default, or TERM) the Nth
// time (1-based, counted per process) the code passes fault_point("NAME"). The points:
//   save    a checkpoint's files are written and fsynced under step_N.tmp, not yet renamed
//   rename  step_N.tmp was just renamed to step_N; the directory fsync, `latest` and the
//           pruning of older checkpoints are still to come
//   eval    an evaluation's loss is computed, not yet logged
#pragma once

#include <cstdint>
#include <vector>

namespace dus {

struct FaultInjection {
  int64_t kill_at_step = 0;  ///< DUS_TEST_KILL_AT_STEP: SIGKILL inside this (1-based) step
  int64_t hang_at_step = 0;  ///< DUS_TEST_HANG_AT_STEP: hang forever inside this step
  int kill_rank = -1;        ///< DUS_TEST_KILL_RANK: only this rank dies or hangs (-1: all)
  std::vector<int64_t> nonfinite_steps;  ///< DUS_TEST_NONFINITE_STEPS=3,4: report a NaN loss
  std::vector<int64_t> spike_steps;      ///< DUS_TEST_SPIKE_STEPS=7: report the loss x 1000

  static FaultInjection from_environment();

  /// Between the forward and the backward of step `step` (1-based) on `rank`: dies or hangs
  /// when asked to (never returns then).
  void inside_step(int64_t step, int rank) const;
  /// Whether step `step`'s loss is to be reported as NaN.
  bool nonfinite_at(int64_t step) const;
  /// Whether step `step`'s loss is to be reported 1000 times too large (a loss spike).
  bool spike_at(int64_t step) const;
};

/// A named kill point (see the top of this file): inert unless DUS_TEST_KILL_AT names it.
/// Reads the environment once; with SIGKILL it never returns, with SIGTERM the process's own
/// handler runs and it returns.
void fault_point(const char* name);

}  // namespace dus
