// SHA-256 (FIPS 180-4) of bytes and of files: the tokenizer fingerprint that index.json records
// so a dataset is never trained with a tokenizer other than the one that made it. Written here
// because the project links no crypto library; checked against the FIPS test vectors.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace dus {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t size);
  void update(std::string_view bytes) { update(bytes.data(), bytes.size()); }
  /// The digest as 64 lowercase hex characters; the object is spent afterwards.
  std::string hex_digest();

 private:
  void block(const uint8_t* p);
  uint32_t h_[8];
  uint8_t buffer_[64];
  size_t buffered_ = 0;
  uint64_t total_bytes_ = 0;
};

std::string sha256_hex(std::string_view bytes);
/// Streams the file; throws dus::Error naming the path when it cannot be read.
std::string sha256_file(const std::string& path);

}  // namespace dus
