// Safetensors files as torch tensors: a memory-mapped reader (zero-copy where the bytes are
// usable in place), a sharded reader through model.safetensors.index.json, and a writer that
// shards at a size limit and writes the index. The header rules live in safetensors_header.h.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "model/safetensors_header.h"

namespace dus {

class MappedFile;

/// One safetensors file, mapped into memory. Tensors it returns keep the mapping alive.
class SafetensorsFile {
 public:
  /// Maps and validates `path`; throws dus::Error naming the file on any defect.
  static SafetensorsFile open(const std::string& path);

  const std::string& path() const { return path_; }
  const std::vector<StTensorEntry>& entries() const { return header_.tensors; }
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  bool contains(const std::string& name) const;
  const StTensorEntry& entry(const std::string& name) const;

  /// A CPU tensor over the mapped bytes (copy-on-write private mapping: writing to it never
  /// touches the file). Copied only when the bytes are not aligned for the dtype.
  at::Tensor tensor(const std::string& name) const;
  /// True when `t`'s bytes lie inside this file's mapping (a zero-copy read).
  bool is_mapped(const at::Tensor& t) const;

 private:
  std::string path_;
  std::shared_ptr<MappedFile> mapping_;
  StHeader header_;
  std::map<std::string, size_t> by_name_;
};

/// All tensors of a Hugging Face model directory: `model.safetensors`, or the shards listed by
/// `model.safetensors.index.json`. Remembers which file each tensor came from, for errors.
class SafetensorsCheckpoint {
 public:
  static SafetensorsCheckpoint open_dir(const std::string& dir);

  std::vector<std::string> names() const;  // sorted
  bool contains(const std::string& name) const { return file_of_.count(name) != 0; }
  const StTensorEntry& entry(const std::string& name) const;
  at::Tensor tensor(const std::string& name) const;
  const std::string& file_of(const std::string& name) const;
  const std::vector<SafetensorsFile>& files() const { return files_; }

 private:
  std::vector<SafetensorsFile> files_;
  std::map<std::string, size_t> file_of_;  // tensor name -> index into files_
};

/// at::ScalarType for a safetensors dtype, and back. Throws for types torch lacks.
at::ScalarType to_scalar_type(StDtype dtype, const std::string& where);
StDtype to_st_dtype(at::ScalarType type, const std::string& where);

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

/// Writes one safetensors file atomically (to PATH.tmp, fsync, rename). Tensors are written in
/// the given order; metadata always includes {"format": "pt"}. Deterministic: the same tensors
/// give the same bytes.
void write_safetensors(const std::string& path, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata = {});

struct ShardOptions {
  /// Largest shard in bytes before a new one starts (a single larger tensor gets its own).
  int64_t max_shard_bytes = int64_t{5} * 1000 * 1000 * 1000;
  /// Extra __metadata__ entries written into every shard.
  std::map<std::string, std::string> metadata;
};

/// Writes `model.safetensors` (one shard) or `model-0000i-of-0000n.safetensors` plus
/// `model.safetensors.index.json` into `dir` (which must exist). Returns the files written.
std::vector<std::string> write_safetensors_sharded(const std::string& dir,
                                                   const NamedTensors& tensors,
                                                   const ShardOptions& options = {});

}  // namespace dus
