// The bytes of one corpus file, decompressed by its name: plain, `.gz` (zlib) or `.zst`
// (zstd, several frames and skippable frames as the zstd tool reads them). A truncated or
// corrupt compressed file is an error naming the file, never silently short data: a cut
// download would otherwise shrink a training set without a word.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace dus {

class ByteSource {
 public:
  virtual ~ByteSource() = default;
  /// Up to `n` decompressed bytes into `out`; 0 only at the clean end of the file. Throws
  /// dus::Error naming the file for a read error, corrupt data or a truncated stream.
  virtual size_t read(char* out, size_t n) = 0;
  /// Bytes of the file on disk consumed so far (compressed bytes for .gz/.zst), for progress.
  virtual int64_t disk_offset() const = 0;
};

/// True for names ending in ".zst" (case-sensitive, as the zstd tool names its output).
bool is_zstd_name(const std::string& path);
/// True for names ending in ".gz".
bool is_gzip_name(const std::string& path);

/// Opens `path` for reading by its name: `.zst` through libzstd, anything else through zlib
/// (which reads `.gz` and passes plain files through). Throws dus::Error when it cannot open.
std::unique_ptr<ByteSource> open_byte_source(const std::string& path);

}  // namespace dus
