// Small file helpers shared by every writer in the project: whole-file reads, and atomic
// writes (temporary file, fsync, rename, fsync of the directory) so that a crash or `kill -9`
// never leaves a half-written file under the final name.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace dus {

/// Reads a whole file; throws dus::Error naming the path when it cannot.
std::string read_file(const std::string& path);

/// Writes `bytes` to `path` atomically: PATH.tmp, fsync, rename over PATH, fsync the directory.
void write_file_atomic(const std::string& path, std::string_view bytes);

/// fsyncs a file or directory by path (errors are reported, not ignored).
void fsync_path(const std::string& path);

/// Removes a file or a directory tree; missing is fine. Use this, not
/// std::filesystem::remove_all: libtorch.so exports its own copy of that symbol, which wins at
/// link time and crashes (null call) in this build of the wheel.
void remove_tree(const std::string& path);

/// The directory part of a path ("." when none).
std::string parent_dir(const std::string& path);

/// A file only ever appended to (logs), written with one write(2) per record: a record is in the
/// file whole or not at all. A write that fails part-way (disk full, I/O error) is cut back off,
/// so the file always ends at a record boundary and the caller may retry it later.
class AppendFile {
 public:
  AppendFile() = default;
  /// Opens `path` for appending (created when absent; `exclusive`: must not exist yet). Throws
  /// dus::Error naming the path.
  AppendFile(const std::string& path, bool exclusive);
  ~AppendFile();
  AppendFile(AppendFile&& other) noexcept;
  AppendFile& operator=(AppendFile&& other) noexcept;
  AppendFile(const AppendFile&) = delete;
  AppendFile& operator=(const AppendFile&) = delete;

  /// Appends `bytes` whole; false (errno set, nothing of it left in the file) when it cannot.
  bool append(std::string_view bytes);
  /// fsync; false (errno set) when it fails.
  bool sync();
  bool is_open() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
  int64_t size_ = 0;  // bytes in the file: the end of the last whole record
};

}  // namespace dus
