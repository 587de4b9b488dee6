#include "core/stop_signals.h"

#include <unistd.h>

#include <atomic>

#include "core/error.h"

namespace dus {

namespace {

// What the handler can reach: only lock-free atomics (async-signal-safe).
std::atomic<int> g_signal{0};
std::atomic<int> g_wake_fd{-1};
std::atomic<bool> g_installed{false};

extern "C" void on_stop_signal(int sig) {
  g_signal.store(sig);
  const int fd = g_wake_fd.load();
  if (fd >= 0) {
    const char c = 1;
    ssize_t ignored = ::write(fd, &c, 1);
    (void)ignored;
  }
}

}  // namespace

StopSignals::StopSignals(int wake_fd) {
  if (g_installed.exchange(true))
    throw Error("signals", "SIGTERM / SIGINT already have an owner in this process",
                "one trainer or one supervisor per process");
  g_signal.store(0);
  g_wake_fd.store(wake_fd);
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &sa, &old_term_);
  sigaction(SIGINT, &sa, &old_int_);
}

StopSignals::~StopSignals() {
  sigaction(SIGTERM, &old_term_, nullptr);
  sigaction(SIGINT, &old_int_, nullptr);
  g_wake_fd.store(-1);
  g_installed = false;
}

int StopSignals::pending() const {
  return g_signal.load();
}

int StopSignals::take() {
  return g_signal.exchange(0);
}

}  // namespace dus
