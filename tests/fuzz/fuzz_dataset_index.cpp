// libFuzzer target: a prepared dataset (index.json + one train shard .bin/.idx) opened with
// TokenDataset::open and every document read in full. Input layout: 2 bytes little-endian n,
// then n bytes of index.json, then the .idx bytes up to a 0xFF 0xFE 0xFD marker (or the end),
// then the .bin bytes. The files go to a per-process directory under /dev/shm (tmpfs: no disk
// I/O per execution). Any input must open-and-read or give a dus::Error; a read out of the
// mapped shard is an ASan report (mmap'd pages are not poisoned, so the fuzzer also checks
// every accepted document range lies inside its shard).
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "data/token_dataset.h"

namespace {

const std::string& work_dir() {
  static const std::string dir = [] {
    const char* base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    std::string d = std::string(base) + "/dus-fuzz-dataset-" + std::to_string(getpid());
    mkdir(d.c_str(), 0700);
    return d;
  }();
  // Registered after `dir` is complete, so it runs before `dir` is destroyed at exit.
  static const bool cleanup =
      std::atexit([] {
        for (const char* f : {"/index.json", "/train-00000.idx", "/train-00000.bin"})
          unlink((work_dir() + f).c_str());
        rmdir(work_dir().c_str());
      }) == 0;
  (void)cleanup;
  return dir;
}

void write(const std::string& path, std::string_view bytes) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) __builtin_trap();
  if (!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size())
    __builtin_trap();
  std::fclose(f);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const size_t n = std::min<size_t>(data[0] | (data[1] << 8), size - 2);
  std::string_view rest(reinterpret_cast<const char*>(data) + 2 + n, size - 2 - n);
  const std::string_view index(reinterpret_cast<const char*>(data) + 2, n);
  const size_t marker = rest.find("\xff\xfe\xfd");
  const std::string_view idx = rest.substr(0, marker);
  const std::string_view bin =
      marker == std::string_view::npos ? std::string_view() : rest.substr(marker + 3);
  const std::string& dir = work_dir();
  write(dir + "/index.json", index);
  write(dir + "/train-00000.idx", idx);
  write(dir + "/train-00000.bin", bin);
  try {
    const dus::TokenDataset ds = dus::TokenDataset::open(dir, "train");
    // Read every document in full, in chunks, as the packed loader does.
    std::vector<int32_t> buf(64);
    int64_t total = 0;
    for (int64_t d = 0; d < ds.num_documents(); ++d) {
      const int64_t length = ds.document_length(d);
      if (length < 0 || ds.document_start(d) < 0 || ds.document_start(d) + length > ds.num_tokens())
        __builtin_trap();
      for (int64_t off = 0; off < length; off += 64) {
        const int64_t count = std::min<int64_t>(64, length - off);
        ds.read(d, off, count, buf.data());
        for (int64_t i = 0; i < count; ++i)
          if (buf[i] < 0 || buf[i] >= ds.vocab_size()) __builtin_trap();
      }
      total += length;
    }
    if (total != ds.num_tokens()) __builtin_trap();
  } catch (const dus::Error&) {
  }
  return 0;
}
