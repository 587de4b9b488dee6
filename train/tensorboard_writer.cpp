#include "train/tensorboard_writer.h"

#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "core/error.h"

namespace dus {

namespace {

// --- CRC32C: reflected polynomial 0x82F63B78, byte-wise table (speed is irrelevant here: a
// few records per log interval).
std::array<uint32_t, 256> make_crc32c_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    table[i] = c;
  }
  return table;
}

// --- Protobuf wire format, just what Event needs. A field key is (number << 3) | wire type;
// wire types: 0 varint, 1 fixed 64-bit, 2 length-delimited, 5 fixed 32-bit.
void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out += static_cast<char>((v & 0x7F) | 0x80);
    v >>= 7;
  }
  out += static_cast<char>(v);
}

void put_key(std::string& out, int field, int wire_type) {
  put_varint(out, (static_cast<uint64_t>(field) << 3) | static_cast<uint64_t>(wire_type));
}

template <typename T>
void put_fixed(std::string& out, T value) {  // little-endian, as protobuf and TFRecord want
  unsigned char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));
  static_assert(sizeof(T) == 4 || sizeof(T) == 8);
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "TensorBoardWriter assumes a little-endian host"
#endif
  out.append(reinterpret_cast<const char*>(bytes), sizeof(T));
}

void put_bytes(std::string& out, int field, std::string_view bytes) {
  put_key(out, field, 2);
  put_varint(out, bytes.size());
  out.append(bytes.data(), bytes.size());
}

// tensorflow.Event: wall_time = 1 (double), step = 2 (int64), file_version = 3 (string),
// summary = 5 (Summary), session_log = 7 (SessionLog; 6 is the deprecated log_message).
std::string event_header(double wall_time, int64_t step) {
  std::string event;
  put_key(event, 1, 1);
  put_fixed(event, wall_time);
  if (step != 0) {  // proto3 leaves default values out; so do we (canonical encoding)
    put_key(event, 2, 0);
    put_varint(event, static_cast<uint64_t>(step));  // int64: negative values take 10 bytes
  }
  return event;
}

double now_seconds() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

}  // namespace

uint32_t crc32c(std::string_view data) {
  static const std::array<uint32_t, 256> table = make_crc32c_table();
  uint32_t crc = 0xFFFFFFFFu;
  for (unsigned char b : data) crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFu;
}

uint32_t masked_crc32c(std::string_view data) {
  const uint32_t crc = crc32c(data);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

TensorBoardWriter::TensorBoardWriter(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec)
    throw Error(dir, "cannot create the TensorBoard directory: " + ec.message(),
                "check the run directory is writable");
  const double wall_time = now_seconds();
  const std::string base = fmt::format("{}/events.out.tfevents.{:010}.{}", dir,
                                       static_cast<long long>(wall_time), host_name());
  for (int suffix = 0; !file_.is_open(); ++suffix) {
    path_ = suffix == 0 ? base : base + "." + std::to_string(suffix);
    if (std::filesystem::exists(path_)) continue;  // never reuse another's file
    file_ = AppendFile(path_, true);
  }
  std::string event = event_header(wall_time, 0);
  put_bytes(event, 3, "brain.Event:2");
  write_record(event);
  flush();
}

TensorBoardWriter::~TensorBoardWriter() {
  try {
    flush();
  } catch (...) {  // a destructor reports nothing; flush itself only warns
  }
}

void TensorBoardWriter::add_scalar(const std::string& tag, double value, int64_t step,
                                   std::optional<double> wall_time) {
  // Summary.Value: tag = 1 (string), simple_value = 2 (float).
  std::string summary_value;
  put_bytes(summary_value, 1, tag);
  put_key(summary_value, 2, 5);
  put_fixed(summary_value, static_cast<float>(value));
  // Summary: value = 1 (repeated Summary.Value).
  std::string summary;
  put_bytes(summary, 1, summary_value);
  std::string event = event_header(wall_time.value_or(now_seconds()), step);
  put_bytes(event, 5, summary);
  write_record(event);
}

void TensorBoardWriter::mark_restart(int64_t step, std::optional<double> wall_time) {
  // SessionLog: status = 1 (enum; START = 1).
  std::string session_log;
  put_key(session_log, 1, 0);
  put_varint(session_log, 1);
  std::string event = event_header(wall_time.value_or(now_seconds()), step);
  put_bytes(event, 7, session_log);
  write_record(event);
}

void TensorBoardWriter::write_record(std::string_view data) {
  std::string record;
  record.reserve(data.size() + 16);
  put_fixed(record, static_cast<uint64_t>(data.size()));
  put_fixed(record, masked_crc32c(record));  // CRC of the 8 length bytes
  record.append(data.data(), data.size());
  put_fixed(record, masked_crc32c(data));
  buffered_ += record;
}

void TensorBoardWriter::flush() {
  if (buffered_.empty()) return;
  const bool written = file_.append(buffered_);
  if (!written && !failing_)
    fmt::print(stderr,
               "warning: cannot write the TensorBoard event file {}: {}; its records are "
               "dropped until the disk takes them again (metrics.jsonl keeps every value)\n",
               path_, std::strerror(errno));
  failing_ = !written;
  buffered_.clear();
}

}  // namespace dus
