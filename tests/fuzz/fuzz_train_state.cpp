// libFuzzer target: a checkpoint's state.json restored the way open_checkpoint
// (train/checkpoint.cpp) checks it: json::parse, TrainState::from_json, then
// LoaderState::from_json on its "loader", RecoveryTracker::from_json on its "recovery" and, in a
// sharded checkpoint, zero1_manifest_from_json on its "zero1".
// Every input must be accepted or rejected with a dus::Error (any other exception escapes and
// aborts, which libFuzzer reports as a crash); an accepted state must write back (to_json) to
// one that restores equal. Torch-free: built from the sources alone by scripts/fuzz.sh.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/error.h"
#include "core/json.h"
#include "data/packed_loader.h"
#include "train/recovery_tracker.h"
#include "train/train_state.h"
#include "train/zero1_manifest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const std::string where = "step_00000012/state.json";
  dus::TrainState train;
  dus::LoaderState loader;
  dus::RecoveryTracker recovery;
  try {
    train = dus::TrainState::from_json(dus::json::parse(text, where), where);
    loader = dus::LoaderState::from_json(train.loader, where + ": loader");
    recovery = dus::RecoveryTracker::from_json(train.recovery, where + ": recovery");
    if (!train.zero1.is_null()) dus::zero1_manifest_from_json(train.zero1, where + ": zero1");
  } catch (const dus::Error&) {
    return 0;
  }
  try {
    const dus::TrainState again = dus::TrainState::from_json(train.to_json(), where);
    if (again.step != train.step || again.tokens != train.tokens ||
        again.strategy != train.strategy || again.world_size != train.world_size)
      __builtin_trap();
    if (!(dus::LoaderState::from_json(loader.to_json(), where) == loader)) __builtin_trap();
    const dus::RecoveryTracker r2 = dus::RecoveryTracker::from_json(recovery.to_json(), where);
    if (r2.history().size() != recovery.history().size() ||
        r2.labels().layers != recovery.labels().layers)
      __builtin_trap();
  } catch (const dus::Error&) {
    __builtin_trap();  // what the trainer wrote, it must read back
  }
  return 0;
}
