// libFuzzer target: the "zero1" manifest of a sharded-optimizer checkpoint (state.json) read
// the way open_checkpoint (train/checkpoint.cpp) reads it: json::parse, then
// zero1_manifest_from_json (train/zero1_manifest.h). Every input must give a manifest or a
// dus::Error; an accepted one must satisfy what the resume then relies on without checking
// again (offsets contiguous from 0, sizes non-negative and within the flat space, shards
// covering it exactly, file names of this directory), and write back to a layout that reads
// equal (flat_layout_to_json, as the sharded optimizer saves it).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/error.h"
#include "core/json.h"
#include "train/zero1_manifest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const std::string where = "step_00000012/state.json: zero1";
  dus::Zero1Manifest m;
  try {
    m = dus::zero1_manifest_from_json(dus::json::parse(text, where), where);
  } catch (const dus::Error&) {
    return 0;
  }
  int64_t expect = 0;
  for (const auto& p : m.params) {
    if (p.offset != expect || p.numel < 0) __builtin_trap();
    int64_t n = 1;
    for (int64_t d : p.shape) {
      if (d < 0) __builtin_trap();
      n *= d;  // cannot overflow: the parser refused any product past int64
    }
    if (n != p.numel) __builtin_trap();
    expect += p.numel;
  }
  const int64_t total = dus::flat_layout_total(m.params);
  if (total != expect || m.params.empty()) __builtin_trap();
  if (static_cast<int64_t>(m.shards.size()) != m.world_size) __builtin_trap();
  int64_t covered = 0;
  for (size_t i = 0; i < m.shards.size(); ++i) {
    const auto& s = m.shards[i];
    if (s.begin != covered || s.end < s.begin || s.end > total) __builtin_trap();
    if (s.file != dus::zero1_shard_file(static_cast<int>(i))) __builtin_trap();
    covered = s.end;
  }
  if (covered != total) __builtin_trap();
  try {
    const dus::FlatLayout back =
        dus::flat_layout_from_json(dus::flat_layout_to_json(m.params), where + ".params");
    if (back.size() != m.params.size()) __builtin_trap();
    for (size_t i = 0; i < back.size(); ++i)
      if (back[i].name != m.params[i].name || back[i].shape != m.params[i].shape ||
          back[i].offset != m.params[i].offset || back[i].numel != m.params[i].numel)
        __builtin_trap();
  } catch (const dus::Error&) {
    __builtin_trap();  // what the trainer wrote, it must read back
  }
  return 0;
}
