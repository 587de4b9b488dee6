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

/// Training: keeps freed memory in the heap for the next step's tensors of the same sizes.
/// glibc otherwise serves every block above its mmap threshold (at most 32 MiB: logits, the
/// embedding gradients, AdamW temporaries) with fresh pages from the kernel and unmaps it on
/// free, so each step pays a page fault and a kernel zeroing per 4 KiB of them (README, "Speed
/// on CPU", has the counts). Raises the mmap and
/// trim thresholds to 1 GiB; the peak resident memory grows by a little fragmentation.
void keep_freed_memory_for_reuse();

}  // namespace dus
