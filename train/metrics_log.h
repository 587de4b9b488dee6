// metrics.jsonl: one JSON object per line per event ({"kind":"train","step":..,"loss":..},
// {"kind":"eval",..}), appended and flushed line by line so `tail -f` and a crash both see
// whole records. Doubles are written in the shortest form that round-trips (core/json.h), so
// a float loss read back is bit-identical. On resume the records the killed run wrote past the
// checkpoint are cut off first, so the file never shows a step twice.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/file_util.h"
#include "core/json.h"

namespace dus {

class MetricsLog {
 public:
  /// Opens `path` for appending, creating it (and its directory) when absent.
  explicit MetricsLog(const std::string& path);
  /// Resume from a checkpoint at `last_step`: rewrites `path` atomically keeping the records
  /// up to the first one with "step" > last_step (records without a "step" before that point
  /// are kept too), drops a torn last line (no newline: the process died mid-write), then
  /// opens it for appending. A missing file is created empty.
  static MetricsLog open_for_resume(const std::string& path, int64_t last_step);
  /// Every record of a metrics.jsonl (a torn last line is skipped). Errors name path:line.
  static std::vector<json::Value> read(const std::string& path);

  /// Appends one record (a JSON object) as one compact line, written to the OS at once. When
  /// the write fails (disk full) the line is kept in memory, a warning printed, and the lines
  /// held are written, in order, at the next append or sync: training goes on.
  void append(const json::Value& record);
  /// Writes the lines held and fsyncs: call before a checkpoint is declared complete, so the
  /// log is on disk up to it. Throws dus::Error when it cannot (the checkpoint then fails).
  void sync();

  const std::string& path() const { return path_; }

 private:
  MetricsLog() = default;
  void open_append();

  bool write_held();

  std::string path_;
  AppendFile file_;
  std::string held_;  // whole lines the disk refused, oldest first
};

}  // namespace dus
