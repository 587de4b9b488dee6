#include "model/safetensors.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "core/file_util.h"
#include "core/json.h"

namespace dus {

// A private, writable (copy-on-write) mapping of a whole file. Tensors built over it hold a
// shared_ptr so the mapping lives as long as any of them.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY);
    if (fd < 0) throw Error(path, std::string("cannot open: ") + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      ::close(fd);
      throw Error(path, std::string("cannot stat: ") + std::strerror(errno));
    }
    size_ = static_cast<uint64_t>(st.st_size);
    if (size_ > 0) {
      void* p = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        int err = errno;
        ::close(fd);
        throw Error(path, std::string("mmap failed: ") + std::strerror(err));
      }
      data_ = static_cast<uint8_t*>(p);
    }
    ::close(fd);
  }
  ~MappedFile() {
    if (data_) ::munmap(data_, size_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }

 private:
  uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

at::ScalarType to_scalar_type(StDtype dtype, const std::string& where) {
  switch (dtype) {
    case StDtype::BOOL: return at::kBool;
    case StDtype::U8: return at::kByte;
    case StDtype::I8: return at::kChar;
    case StDtype::I16: return at::kShort;
    case StDtype::U16: return at::kUInt16;
    case StDtype::F16: return at::kHalf;
    case StDtype::BF16: return at::kBFloat16;
    case StDtype::I32: return at::kInt;
    case StDtype::U32: return at::kUInt32;
    case StDtype::F32: return at::kFloat;
    case StDtype::I64: return at::kLong;
    case StDtype::U64: return at::kUInt64;
    case StDtype::F64: return at::kDouble;
    case StDtype::F8_E4M3: return at::kFloat8_e4m3fn;
    case StDtype::F8_E5M2: return at::kFloat8_e5m2;
  }
  throw Error(where, "unsupported dtype");
}

StDtype to_st_dtype(at::ScalarType type, const std::string& where) {
  switch (type) {
    case at::kBool: return StDtype::BOOL;
    case at::kByte: return StDtype::U8;
    case at::kChar: return StDtype::I8;
    case at::kShort: return StDtype::I16;
    case at::kUInt16: return StDtype::U16;
    case at::kHalf: return StDtype::F16;
    case at::kBFloat16: return StDtype::BF16;
    case at::kInt: return StDtype::I32;
    case at::kUInt32: return StDtype::U32;
    case at::kFloat: return StDtype::F32;
    case at::kLong: return StDtype::I64;
    case at::kUInt64: return StDtype::U64;
    case at::kDouble: return StDtype::F64;
    case at::kFloat8_e4m3fn: return StDtype::F8_E4M3;
    case at::kFloat8_e5m2: return StDtype::F8_E5M2;
    default: break;
  }
  throw Error(where, std::string("dtype ") + c10::toString(type) + " cannot be stored in safetensors");
}

// ---------------------------------------------------------------------------------------------
// SafetensorsFile

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  SafetensorsFile f;
  f.path_ = path;
  f.mapping_ = std::make_shared<MappedFile>(path);
  f.header_ = parse_safetensors_header(f.mapping_->data(), f.mapping_->size(), path);
  for (size_t i = 0; i < f.header_.tensors.size(); ++i) f.by_name_[f.header_.tensors[i].name] = i;
  return f;
}

bool SafetensorsFile::contains(const std::string& name) const { return by_name_.count(name) != 0; }

const StTensorEntry& SafetensorsFile::entry(const std::string& name) const {
  auto it = by_name_.find(name);
  if (it == by_name_.end()) throw Error(path_, "no tensor named '" + name + "'");
  return header_.tensors[it->second];
}

at::Tensor SafetensorsFile::tensor(const std::string& name) const {
  const StTensorEntry& e = entry(name);
  const std::string where = path_ + ": tensor '" + name + "'";
  at::ScalarType type = to_scalar_type(e.dtype, where);
  auto options = at::TensorOptions().dtype(type).device(at::kCPU);
  uint8_t* ptr = mapping_->data() + header_.data_start + e.begin;
  const int64_t itemsize = st_dtype_size(e.dtype);
  if (e.end == e.begin) return at::empty(e.shape, options);
  if (reinterpret_cast<uintptr_t>(ptr) % static_cast<uintptr_t>(itemsize) == 0) {
    std::shared_ptr<MappedFile> keep = mapping_;
    return at::from_blob(ptr, e.shape, [keep](void*) {}, options);
  }
  // Misaligned for its dtype (a writer that did not pad the header): copy once.
  at::Tensor out = at::empty(e.shape, options);
  std::memcpy(out.data_ptr(), ptr, e.end - e.begin);
  return out;
}

bool SafetensorsFile::is_mapped(const at::Tensor& t) const {
  auto p = static_cast<const uint8_t*>(t.data_ptr());
  return p >= mapping_->data() && p < mapping_->data() + mapping_->size();
}

// ---------------------------------------------------------------------------------------------
// SafetensorsCheckpoint

SafetensorsCheckpoint SafetensorsCheckpoint::open_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  SafetensorsCheckpoint ckpt;
  const std::string index_path = dir + "/model.safetensors.index.json";
  const std::string single_path = dir + "/model.safetensors";
  if (fs::exists(index_path)) {
    json::Value index = json::parse_file(index_path);
    const json::Value* weight_map = index.find("weight_map");
    if (!weight_map || !weight_map->is_object())
      throw Error(index_path, "missing \"weight_map\" object");
    std::map<std::string, size_t> file_index;  // shard file name -> index into files_
    for (const auto& [name, file] : weight_map->as_object()) {
      const std::string& fname = file.as_string(index_path + ": weight_map[\"" + name + "\"]");
      if (fname.find('/') != std::string::npos || fname == ".." || fname.empty())
        throw Error(index_path, "weight_map[\"" + name + "\"] names '" + fname +
                                    "', which is not a plain file name in the directory");
      if (!file_index.count(fname)) {
        const std::string shard = dir + "/" + fname;
        if (!fs::exists(shard))
          throw Error(index_path, "shard '" + fname + "' listed for tensor '" + name +
                                      "' does not exist in " + dir);
        file_index[fname] = ckpt.files_.size();
        ckpt.files_.push_back(SafetensorsFile::open(shard));
      }
      size_t fi = file_index[fname];
      if (!ckpt.files_[fi].contains(name))
        throw Error(ckpt.files_[fi].path(), "index lists tensor '" + name +
                                                "' in this shard, but the shard does not hold it");
      ckpt.file_of_[name] = fi;
    }
    // A tensor present in a shard but missing from the index would be silently ignored.
    for (size_t fi = 0; fi < ckpt.files_.size(); ++fi)
      for (const auto& e : ckpt.files_[fi].entries())
        if (!ckpt.file_of_.count(e.name))
          throw Error(ckpt.files_[fi].path(),
                      "tensor '" + e.name + "' is in the shard but not in " + index_path);
  } else if (fs::exists(single_path)) {
    ckpt.files_.push_back(SafetensorsFile::open(single_path));
    for (const auto& e : ckpt.files_[0].entries()) ckpt.file_of_[e.name] = 0;
  } else {
    throw Error(dir, "no model.safetensors or model.safetensors.index.json",
                "point at a Hugging Face model directory (pickle .bin checkpoints are not read)");
  }
  return ckpt;
}

std::vector<std::string> SafetensorsCheckpoint::names() const {
  std::vector<std::string> out;
  for (const auto& kv : file_of_) out.push_back(kv.first);
  return out;
}

const std::string& SafetensorsCheckpoint::file_of(const std::string& name) const {
  auto it = file_of_.find(name);
  if (it == file_of_.end()) throw Error("checkpoint", "no tensor named '" + name + "'");
  return files_[it->second].path();
}

const StTensorEntry& SafetensorsCheckpoint::entry(const std::string& name) const {
  auto it = file_of_.find(name);
  if (it == file_of_.end()) throw Error("checkpoint", "no tensor named '" + name + "'");
  return files_[it->second].entry(name);
}

at::Tensor SafetensorsCheckpoint::tensor(const std::string& name) const {
  auto it = file_of_.find(name);
  if (it == file_of_.end()) throw Error("checkpoint", "no tensor named '" + name + "'");
  return files_[it->second].tensor(name);
}

// ---------------------------------------------------------------------------------------------
// Writer

namespace {

void write_all(int fd, const void* data, size_t size, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error(path, std::string("write failed: ") + std::strerror(errno), "is the disk full?");
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
}

}  // namespace

void write_safetensors(const std::string& path, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata) {
  // Tensors are made contiguous on the CPU first; large models are written one tensor at a
  // time, so only one extra CPU copy exists at once.
  json::Object header;
  json::Object meta;
  meta.emplace_back("format", json::Value("pt"));
  for (const auto& [k, v] : metadata)
    if (k != "format") meta.emplace_back(k, json::Value(v));
  header.emplace_back("__metadata__", json::Value(std::move(meta)));
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    const std::string where = path + ": tensor '" + name + "'";
    StDtype dtype = to_st_dtype(t.scalar_type(), where);
    json::Array shape;
    for (int64_t d : t.sizes()) shape.emplace_back(d);
    const uint64_t nbytes = static_cast<uint64_t>(t.numel()) * st_dtype_size(dtype);
    json::Object entry;
    entry.emplace_back("dtype", json::Value(st_dtype_name(dtype)));
    entry.emplace_back("shape", json::Value(std::move(shape)));
    entry.emplace_back("data_offsets",
                       json::Value(json::Array{json::Value(offset), json::Value(offset + nbytes)}));
    header.emplace_back(name, json::Value(std::move(entry)));
    offset += nbytes;
  }
  std::string header_text = json::dump(json::Value(std::move(header)));
  // Pad with spaces so the data buffer starts 8-byte aligned (zero-copy reads of any dtype).
  while ((8 + header_text.size()) % 8 != 0) header_text += ' ';
  uint8_t len_bytes[8];
  uint64_t n = header_text.size();
  for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<uint8_t>(n >> (8 * i));

  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) throw Error(tmp, std::string("cannot create: ") + std::strerror(errno));
  try {
    write_all(fd, len_bytes, 8, tmp);
    write_all(fd, header_text.data(), header_text.size(), tmp);
    for (const auto& [name, t] : tensors) {
      at::Tensor c = t.detach().to(at::kCPU).contiguous();
      if (c.numel() > 0) write_all(fd, c.data_ptr(), c.nbytes(), tmp);
    }
    if (::fsync(fd) != 0) throw Error(tmp, std::string("fsync failed: ") + std::strerror(errno));
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  ::close(fd);
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    throw Error(path, std::string("rename failed: ") + std::strerror(errno));
  fsync_path(parent_dir(path));
}

std::vector<std::string> write_safetensors_sharded(const std::string& dir,
                                                   const NamedTensors& tensors,
                                                   const ShardOptions& options) {
  // Greedy packing in the given order, as transformers does.
  std::vector<NamedTensors> shards(1);
  int64_t current = 0, total = 0;
  for (const auto& nt : tensors) {
    int64_t nbytes = static_cast<int64_t>(nt.second.nbytes());
    if (!shards.back().empty() && current + nbytes > options.max_shard_bytes) {
      shards.emplace_back();
      current = 0;
    }
    shards.back().push_back(nt);
    current += nbytes;
    total += nbytes;
  }
  std::vector<std::string> written;
  namespace fs = std::filesystem;
  const std::string index_path = dir + "/model.safetensors.index.json";
  if (shards.size() == 1) {
    // A single file needs no index; remove a stale one so readers do not follow it.
    write_safetensors(dir + "/model.safetensors", shards[0], options.metadata);
    if (fs::exists(index_path)) fs::remove(index_path);
    written.push_back(dir + "/model.safetensors");
    return written;
  }
  json::Object weight_map;
  const size_t count = shards.size();
  for (size_t i = 0; i < count; ++i) {
    char name[64];
    std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", i + 1, count);
    write_safetensors(dir + "/" + name, shards[i], options.metadata);
    written.push_back(dir + "/" + name);
    for (const auto& nt : shards[i]) weight_map.emplace_back(nt.first, json::Value(name));
  }
  json::Object index;
  index.emplace_back("metadata", json::Value(json::Object{{"total_size", json::Value(total)}}));
  index.emplace_back("weight_map", json::Value(std::move(weight_map)));
  write_file_atomic(index_path, json::dump(json::Value(std::move(index)), 2) + "\n");
  if (fs::exists(dir + "/model.safetensors")) fs::remove(dir + "/model.safetensors");
  written.push_back(index_path);
  return written;
}

}  // namespace dus
