#include "data/bpe.h"

#include <algorithm>
#include <queue>

namespace dus {

BytePairEncoder::BytePairEncoder(const std::array<int32_t, 256>& byte_ids, int32_t unk_id,
                                 bool fuse_unk)
    : byte_ids_(byte_ids), unk_id_(unk_id), fuse_unk_(fuse_unk) {}

void BytePairEncoder::add_merge(int32_t left, int32_t right, int32_t rank, int32_t merged) {
  pairs_[key(left, right)] = Merge{rank, merged};
}

namespace {

struct Symbol {
  int32_t id;
  int32_t prev, next;  // doubly linked list over the live symbols; -1 at the ends
  bool alive;
};

// A candidate merge of the symbol at `pos` with its right neighbour.
struct Candidate {
  int32_t rank, pos, merged;
  // std::priority_queue pops the largest: invert so the lowest rank, then leftmost, comes first.
  bool operator<(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
};

struct Scratch {
  std::vector<Symbol> symbols;
  std::vector<Candidate> heap;
};

}  // namespace

void BytePairEncoder::encode(std::string_view piece, std::vector<int32_t>* out) const {
  thread_local Scratch scratch;
  std::vector<Symbol>& sym = scratch.symbols;
  sym.clear();
  for (unsigned char b : piece) {
    int32_t id = byte_ids_[b];
    if (id < 0) {
      if (unk_id_ < 0) continue;
      if (fuse_unk_ && !sym.empty() && sym.back().id == unk_id_) continue;
      id = unk_id_;
    }
    sym.push_back(
        {id, static_cast<int32_t>(sym.size()) - 1, static_cast<int32_t>(sym.size()) + 1, true});
  }
  if (sym.empty()) return;
  sym.back().next = -1;
  const int32_t n = static_cast<int32_t>(sym.size());
  if (n == 1) {
    out->push_back(sym[0].id);
    return;
  }

  // Every live adjacent pair with a rank is in the heap; an entry is stale when its left symbol
  // died or when the pair now at its position merges into something else. A pair's merged id
  // fixes the bytes it spans, and spans only grow, so "same merged id" means "same pair":
  // this pops exactly what a rescan for the lowest-ranked leftmost pair would find.
  std::vector<Candidate>& heap = scratch.heap;
  heap.clear();
  for (int32_t i = 0; i + 1 < n; ++i)
    if (const Merge* m = find(sym[i].id, sym[i + 1].id)) heap.push_back({m->rank, i, m->merged});
  std::make_heap(heap.begin(), heap.end());
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end());
    Candidate top = heap.back();
    heap.pop_back();
    Symbol& left = sym[top.pos];
    if (!left.alive || left.next < 0) continue;
    Symbol& right = sym[left.next];
    const Merge* now = find(left.id, right.id);
    if (!now || now->merged != top.merged) continue;
    left.id = top.merged;
    right.alive = false;
    left.next = right.next;
    if (right.next >= 0) sym[right.next].prev = top.pos;
    if (left.prev >= 0) {
      if (const Merge* m = find(sym[left.prev].id, left.id)) {
        heap.push_back({m->rank, left.prev, m->merged});
        std::push_heap(heap.begin(), heap.end());
      }
    }
    if (left.next >= 0) {
      if (const Merge* m = find(left.id, sym[left.next].id)) {
        heap.push_back({m->rank, top.pos, m->merged});
        std::push_heap(heap.begin(), heap.end());
      }
    }
  }
  for (int32_t i = 0; i >= 0; i = sym[i].next) out->push_back(sym[i].id);
}

}  // namespace dus
