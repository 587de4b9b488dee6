// The byte-level BPE core shared by the tokenizer.json and Tekken loaders: a pre-token's bytes
// become one symbol each, then the adjacent pair of lowest rank is merged until no pair has a
// rank. Leftmost wins a tie (Hugging Face tokenizers' BinaryHeap order and tiktoken's scan
// agree on it). Loaders only differ in how they fill the pair table.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace dus {

class BytePairEncoder {
 public:
  /// byte_ids[b]: the id of the one-byte symbol b; -1 when the vocabulary lacks it (such a
  /// byte becomes unk_id when there is one, else it is dropped, as Hugging Face BPE does).
  BytePairEncoder(const std::array<int32_t, 256>& byte_ids, int32_t unk_id, bool fuse_unk);
  BytePairEncoder() = default;

  /// Pair (left, right) merges into `merged` with priority `rank` (lower first). A pair given
  /// twice keeps the last one, as Hugging Face's merge map (a HashMap built in order) does.
  void add_merge(int32_t left, int32_t right, int32_t rank, int32_t merged);
  size_t merge_count() const { return pairs_.size(); }

  /// Appends the ids of one pre-token. Const and thread-safe: scratch space is per thread.
  void encode(std::string_view piece, std::vector<int32_t>* out) const;

 private:
  struct Merge {
    int32_t rank, merged;
  };
  static uint64_t key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
           static_cast<uint32_t>(right);
  }
  const Merge* find(int32_t left, int32_t right) const {
    auto it = pairs_.find(key(left, right));
    return it == pairs_.end() ? nullptr : &it->second;
  }
  std::array<int32_t, 256> byte_ids_{};
  int32_t unk_id_ = -1;
  bool fuse_unk_ = false;
  std::unordered_map<uint64_t, Merge> pairs_;
};

}  // namespace dus
