// Resident memory of this process, from /proc (Linux).
#pragma once

#include <cstdint>

namespace dus {

/// Peak resident set size (VmHWM) in bytes; 0 when unknown.
int64_t peak_rss_bytes();
/// Current resident set size (VmRSS) in bytes; 0 when unknown.
int64_t current_rss_bytes();
/// Resets the peak to the current value (Linux >= 4.0 via /proc/self/clear_refs), so a phase
/// can be measured on its own; returns false when the kernel does not allow it.
bool reset_peak_rss();

}  // namespace dus
