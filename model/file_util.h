// Small file helpers shared by every writer in the project: whole-file reads, and atomic
// writes (temporary file, fsync, rename, fsync of the directory) so that a crash or `kill -9`
// never leaves a half-written file under the final name.
#pragma once

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

}  // namespace dus
