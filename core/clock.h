// Elapsed and remaining wall time for the progress lines and timing tables the commands print.
// steady_clock, not system_clock: an NTP adjustment during a run must not make a step take
// negative time.
#pragma once

#include <chrono>
#include <string>

namespace dus {

/// Seconds from `start` (a steady_clock reading) to now.
double seconds_since(std::chrono::steady_clock::time_point start);

/// A remaining time, whole seconds (truncated): 75 -> "1m15s"; from an hour on, hours and
/// minutes: 7260 -> "2h01m". "?" when there is no estimate yet (negative, NaN, infinite) or it
/// is beyond 10^7 s (about 116 days: a rate measured on too little progress).
std::string fmt_eta(double seconds);

}  // namespace dus
