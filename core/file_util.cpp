#include "core/file_util.h"

#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "core/error.h"

namespace dus {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path, "cannot open file", "check that the path exists and is readable");
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

void remove_tree(const std::string& path) {
  auto remove_one = [](const char* p, const struct stat*, int, struct FTW*) -> int {
    return ::remove(p) == 0 || errno == ENOENT ? 0 : -1;
  };
  // Depth-first (FTW_DEPTH) so directories are empty when removed; links are not followed.
  if (::nftw(path.c_str(), remove_one, 16, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT)
    throw Error(path, std::string("cannot remove: ") + std::strerror(errno));
}

std::string parent_dir(const std::string& path) {
  auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

void fsync_path(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw Error(path, std::string("cannot open for fsync: ") + std::strerror(errno));
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  // Some filesystems refuse fsync on directories (EINVAL); that is not data loss.
  if (rc != 0 && err != EINVAL)
    throw Error(path, std::string("fsync failed: ") + std::strerror(err));
}

void write_file_atomic(const std::string& path, std::string_view bytes) {
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) throw Error(tmp, std::string("cannot create file: ") + std::strerror(errno));
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      throw Error(tmp, std::string("write failed: ") + std::strerror(err), "is the disk full?");
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    throw Error(tmp, std::string("fsync/close failed: ") + std::strerror(err));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    throw Error(path, std::string("rename from .tmp failed: ") + std::strerror(err));
  }
  fsync_path(parent_dir(path));
}

AppendFile::AppendFile(const std::string& path, bool exclusive) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (exclusive ? O_EXCL : 0),
               0644);
  if (fd_ < 0) {
    const int err = errno;
    throw Error(path, std::string("cannot open for appending: ") + std::strerror(err),
                err == EEXIST ? "" : "check the directory is writable");
  }
  struct stat st {};
  if (::fstat(fd_, &st) != 0) {
    const int err = errno;
    ::close(fd_);
    fd_ = -1;
    throw Error(path, std::string("cannot stat: ") + std::strerror(err));
  }
  size_ = static_cast<int64_t>(st.st_size);
}

AppendFile::~AppendFile() {
  if (fd_ >= 0) ::close(fd_);
}

AppendFile::AppendFile(AppendFile&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), size_(other.size_) {}

AppendFile& AppendFile::operator=(AppendFile&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    size_ = other.size_;
  }
  return *this;
}

bool AppendFile::append(std::string_view bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd_, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = n < 0 ? errno : ENOSPC;
      // Cut the torn part back off: the file keeps ending at a whole record. (Shrinking a file
      // needs no space; should even that fail, readers skip a line that does not parse.)
      if (done > 0) {
        const int cut = ::ftruncate(fd_, static_cast<off_t>(size_));
        (void)cut;
      }
      errno = err;
      return false;
    }
    done += static_cast<size_t>(n);
  }
  size_ += static_cast<int64_t>(done);
  return true;
}

bool AppendFile::sync() {
  return ::fsync(fd_) == 0;
}

}  // namespace dus
