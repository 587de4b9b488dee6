#include "data/byte_source.h"

#include <zlib.h>
#include <zstd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include <fmt/format.h>

#include "core/error.h"

namespace dus {

namespace {

bool ends_with(const std::string& s, const char* suffix) {
  const size_t n = std::strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

// zlib's gz* interface: .gz files, and plain files passed through unchanged.
class GzSource : public ByteSource {
 public:
  explicit GzSource(const std::string& path) : path_(path) {
    handle_ = gzopen(path.c_str(), "rb");
    if (!handle_) throw Error(path, "cannot open file", "check that it exists and is readable");
    gzbuffer(handle_, 1 << 20);
  }
  ~GzSource() override { gzclose(handle_); }

  size_t read(char* out, size_t n) override {
    int got = gzread(handle_, out, static_cast<unsigned>(n));
    int errnum = Z_OK;
    const char* msg = gzerror(handle_, &errnum);
    if (got < 0)
      throw Error(path_, std::string("read error: ") + (msg ? msg : "?"),
                  "is the .gz file truncated or corrupt?");
    // zlib returns the data up to a cut and reports the cut only as Z_BUF_ERROR ("unexpected
    // end of file"), because gzread also serves files still being written. A corpus file is
    // complete, so a cut is an error.
    if (got == 0 && errnum == Z_BUF_ERROR)
      throw Error(path_, "truncated .gz file: the gzip stream ends before its end marker",
                  "the file was cut short (interrupted download or copy?); fetch it again");
    return static_cast<size_t>(got);
  }
  int64_t disk_offset() const override { return static_cast<int64_t>(gzoffset(handle_)); }

 private:
  std::string path_;
  gzFile handle_ = nullptr;
};

class ZstdSource : public ByteSource {
 public:
  explicit ZstdSource(const std::string& path) : path_(path) {
    file_ = std::fopen(path.c_str(), "rb");
    if (!file_)
      throw Error(path, std::string("cannot open file: ") + std::strerror(errno),
                  "check that it exists and is readable");
    dctx_ = ZSTD_createDCtx();
    if (!dctx_) throw Error(path, "out of memory creating a zstd decompression context");
    // Corpora compressed with `zstd --long` (RedPajama, Dolma use up to 2^27+) need a window
    // above zstd's default decoding limit of 2^27 bytes; the memory is only taken when a frame
    // asks for it.
    ZSTD_DCtx_setParameter(dctx_, ZSTD_d_windowLogMax, 31);
    in_.resize(ZSTD_DStreamInSize());
  }
  ~ZstdSource() override {
    ZSTD_freeDCtx(dctx_);
    std::fclose(file_);
  }

  size_t read(char* out, size_t n) override {
    ZSTD_outBuffer output{out, n, 0};
    while (output.pos == 0) {
      if (input_.pos == input_.size && !file_eof_) {
        size_t got = std::fread(in_.data(), 1, in_.size(), file_);
        if (got < in_.size()) {
          if (std::ferror(file_))
            throw Error(path_, std::string("read error: ") + std::strerror(errno));
          file_eof_ = true;
        }
        consumed_ += static_cast<int64_t>(input_.pos);
        input_ = ZSTD_inBuffer{in_.data(), got, 0};
        any_input_ = any_input_ || got > 0;
      }
      // Called even with no input left: the decoder may still hold decoded bytes to flush.
      // ZSTD_decompressStream moves from one frame to the next by itself (the zstd tool's
      // concatenated output) and skips skippable frames; it returns 0 exactly when a frame has
      // been fully decoded and flushed.
      const size_t in_before = input_.pos;
      const size_t ret = ZSTD_decompressStream(dctx_, &output, &input_);
      if (ZSTD_isError(ret))
        throw Error(path_,
                    fmt::format("corrupt .zst data: {} (near byte {})", ZSTD_getErrorName(ret),
                                disk_offset()),
                    "is this a zstd file? `zstd -t FILE` checks it");
      if (input_.pos != in_before || output.pos != 0)
        frame_open_ = ret != 0;
      else if (file_eof_)
        break;  // no input left and nothing more to flush
    }
    if (output.pos == 0 && (frame_open_ || !any_input_))
      // End of file is clean only between frames. An empty file is no zstd stream either (the
      // zstd tool rejects it too).
      throw Error(path_,
                  any_input_ ? "truncated .zst file: it ends inside a zstd frame"
                             : "empty .zst file: not a zstd stream",
                  "the file was cut short (interrupted download or copy?); fetch it again; "
                  "`zstd -t FILE` checks it");
    return output.pos;
  }
  int64_t disk_offset() const override { return consumed_ + static_cast<int64_t>(input_.pos); }

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
  ZSTD_DCtx* dctx_ = nullptr;
  std::vector<char> in_;
  ZSTD_inBuffer input_{nullptr, 0, 0};
  int64_t consumed_ = 0;  // bytes of earlier input buffers
  bool file_eof_ = false, frame_open_ = false, any_input_ = false;
};

}  // namespace

bool is_zstd_name(const std::string& path) {
  return ends_with(path, ".zst");
}
bool is_gzip_name(const std::string& path) {
  return ends_with(path, ".gz");
}

std::unique_ptr<ByteSource> open_byte_source(const std::string& path) {
  if (is_zstd_name(path)) return std::make_unique<ZstdSource>(path);
  return std::make_unique<GzSource>(path);
}

}  // namespace dus
