// SIGTERM and SIGINT as a request to stop, for the one part of a process that owns them: the
// trainer (checkpoint after the current step, then exit) or the supervisor of `dus launch` and
// `dus sweep` (forward the signal to its children). The handler only records the signal and,
// when given one, writes a byte to a wake-up descriptor so a poll() sleeping elsewhere returns at
// once; everything else happens at a safe point of the owner's loop.
#pragma once

#include <signal.h>

namespace dus {

class StopSignals {
 public:
  /// Installs the handlers (SA_RESTART) and forgets any earlier signal. `wake_fd`: the write
  /// end of a non-blocking pipe, or -1. Throws dus::Error while another StopSignals is alive:
  /// a signal reaches one owner per process.
  explicit StopSignals(int wake_fd = -1);
  /// Restores the handlers that were installed before.
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  /// The signal received since installation or the last take(); 0 when none.
  int pending() const;
  /// pending(), and forget it.
  int take();

 private:
  struct sigaction old_term_ {};
  struct sigaction old_int_ {};
};

}  // namespace dus
