// TensorBoard event files written natively: no protobuf library, no Python. TensorBoard reads a
// directory of `events.out.tfevents.*` files, each a sequence of TFRecords
//   uint64 length (LE) | uint32 masked CRC32C(length) | data | uint32 masked CRC32C(data)
// whose data is a serialized tensorflow.Event. The few Event fields we need (wall_time,
// step, file_version, summary with simple_value scalars, session_log START) are encoded by
// hand below; the field numbers are those of tensorflow/core/util/event.proto and
// tensorflow/core/framework/summary.proto.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/file_util.h"

namespace dus {

class TensorBoardWriter {
 public:
  /// Creates `dir` (and its parents) and a new event file in it,
  /// `events.out.tfevents.<unix time, 10 digits>.<hostname>` (".1", ".2", ... appended when
  /// that name exists, so a resumed process never writes into the killed one's file; the
  /// names still sort in creation order, which is the order TensorBoard reads them in).
  /// The first record carries file_version "brain.Event:2".
  explicit TensorBoardWriter(const std::string& dir);
  ~TensorBoardWriter();
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  /// One scalar (stored as float32, as TensorBoard does). wall_time in seconds since the
  /// epoch; the current time when absent. Buffered until flush().
  void add_scalar(const std::string& tag, double value, int64_t step,
                  std::optional<double> wall_time = std::nullopt);
  /// Call once after a resume, with the first step this process will log: writes a
  /// SessionLog START event at that step, and TensorBoard then drops the events of the killed
  /// run at steps >= `step` (the ones the resumed run is about to write again).
  void mark_restart(int64_t step, std::optional<double> wall_time = std::nullopt);
  /// Writes the buffered records to the file in one write; they survive a later kill -9. When
  /// the disk refuses them (full) they are dropped with a warning, the file still ending at a
  /// whole record: TensorBoard is a view, metrics.jsonl the record, and training goes on.
  void flush();

  /// The event file's path.
  const std::string& path() const { return path_; }

 private:
  void write_record(std::string_view data);

  std::string path_;
  AppendFile file_;
  std::string buffered_;  // whole records not yet written
  bool failing_ = false;  // the last flush was refused: warn once per streak
};

/// CRC32C (Castagnoli), as TFRecord uses; crc32c("123456789") == 0xE3069283.
uint32_t crc32c(std::string_view data);
/// TFRecord's masked CRC: ((crc >> 15) | (crc << 17)) + 0xa282ead8.
uint32_t masked_crc32c(std::string_view data);

}  // namespace dus
