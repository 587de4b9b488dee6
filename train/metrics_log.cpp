#include "train/metrics_log.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <utility>

#include <fmt/format.h>

#include "core/error.h"
#include "core/file_util.h"

namespace dus {

namespace {

struct Line {
  std::string_view text;
  int number = 0;  // 1-based, for error messages
};

/// The complete lines of a JSONL file; a last line without '\n' is torn and left out.
std::vector<Line> complete_lines(std::string_view bytes) {
  std::vector<Line> lines;
  size_t begin = 0;
  int number = 1;
  for (size_t nl; (nl = bytes.find('\n', begin)) != std::string_view::npos; begin = nl + 1)
    lines.push_back({bytes.substr(begin, nl - begin), number++});
  return lines;
}

bool blank(std::string_view s) {
  return s.find_first_not_of(" \t\r") == std::string_view::npos;
}

json::Value parse_line(const Line& line, const std::string& path) {
  const std::string where = fmt::format("{}:{}", path, line.number);
  json::Value record = json::parse(line.text, where);
  if (!record.is_object()) throw Error(where, "a metrics record must be a JSON object");
  return record;
}

}  // namespace

MetricsLog::MetricsLog(const std::string& path) : path_(path) {
  open_append();
}

void MetricsLog::open_append() {
  const std::string dir = parent_dir(path_);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw Error(dir, "cannot create the directory of the metrics log: " + ec.message());
  file_ = AppendFile(path_, false);
}

MetricsLog MetricsLog::open_for_resume(const std::string& path, int64_t last_step) {
  if (std::filesystem::exists(path)) {
    const std::string bytes = read_file(path);
    std::string kept;
    for (const Line& line : complete_lines(bytes)) {
      if (blank(line.text)) continue;
      const json::Value record = parse_line(line, path);
      const json::Value* step = record.find("step");
      // Steps only grow within one run (and earlier resumes already cut the file), so the
      // first record past the checkpoint starts the killed run's orphaned tail.
      if (step && step->as_int(fmt::format("{}:{} \"step\"", path, line.number)) > last_step) break;
      kept.append(line.text.data(), line.text.size());
      kept += '\n';
    }
    if (kept.size() != bytes.size()) write_file_atomic(path, kept);
  }
  MetricsLog log;
  log.path_ = path;
  log.open_append();
  return log;
}

std::vector<json::Value> MetricsLog::read(const std::string& path) {
  const std::string bytes = read_file(path);
  std::vector<json::Value> records;
  for (const Line& line : complete_lines(bytes))
    if (!blank(line.text)) records.push_back(parse_line(line, path));
  return records;
}

bool MetricsLog::write_held() {
  if (held_.empty()) return true;
  if (!file_.append(held_)) return false;
  held_.clear();
  return true;
}

void MetricsLog::append(const json::Value& record) {
  if (!record.is_object()) throw Error(path_, "a metrics record must be a JSON object");
  const bool was_holding = !held_.empty();
  held_ += json::dump(record);
  held_ += '\n';
  // One write per batch of whole lines: a reader (or a kill -9) sees whole lines, except at
  // worst a torn last one, which read() and open_for_resume() skip.
  if (!write_held() && !was_holding)
    fmt::print(stderr,
               "warning: cannot write the metrics log {}: {}; holding its lines in memory and "
               "retrying (training goes on)\n",
               path_, std::strerror(errno));
}

void MetricsLog::sync() {
  if (!write_held())
    throw Error(path_,
                fmt::format("cannot write the metrics log: {} ({} lines held in memory)",
                            std::strerror(errno), std::count(held_.begin(), held_.end(), '\n')),
                "is the disk full?");
  if (!file_.sync())
    throw Error(path_, std::string("cannot sync the metrics log: ") + std::strerror(errno));
}

}  // namespace dus
