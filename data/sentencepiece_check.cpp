#include "data/sentencepiece_check.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "core/error.h"

namespace dus {

namespace {

// The protobuf wire types a field may carry.
enum Wire : int { kVarint = 0, kFixed64 = 1, kLen = 2, kFixed32 = 5 };

struct Field {
  uint32_t number = 0;
  int wire = 0;
  uint64_t varint = 0;    // kVarint
  std::string_view body;  // kLen: the bytes; kFixed32 / kFixed64: the raw value
  size_t at = 0;          // byte offset of the tag in the whole file
};

// Reads the fields of one message, each checked to lie wholly inside it.
class FieldReader {
 public:
  FieldReader(std::string_view buf, size_t base, const std::string& where)
      : buf_(buf), base_(base), where_(where) {}
  bool done() const { return pos_ >= buf_.size(); }

  Field next() {
    Field f;
    f.at = base_ + pos_;
    const uint64_t tag = varint("a field tag");
    if (tag > 0xFFFFFFFFu || (tag >> 3) == 0)
      fail(f.at, fmt::format("field tag {} (field numbers run from 1 to 2^29 - 1)", tag));
    f.number = static_cast<uint32_t>(tag >> 3);
    f.wire = static_cast<int>(tag & 7);
    switch (f.wire) {
      case kVarint:
        f.varint = varint("a varint value");
        break;
      case kFixed64:
        f.body = take(8, f.number);
        break;
      case kFixed32:
        f.body = take(4, f.number);
        break;
      case kLen: {
        const uint64_t n = varint("a length");
        if (n > buf_.size() - pos_)
          fail(f.at,
               fmt::format("field {} claims {} bytes, {} remain", f.number, n, buf_.size() - pos_));
        f.body = take(static_cast<size_t>(n), f.number);
        break;
      }
      default:  // 3 and 4 are the deprecated groups, which sentencepiece never writes; 6, 7 none
        fail(f.at, fmt::format("field {} has wire type {} (not varint, fixed32, fixed64 or length)",
                               f.number, f.wire));
    }
    return f;
  }

  [[noreturn]] void fail(size_t at, const std::string& what) const {
    throw Error(fmt::format("{}: byte {}", where_, at), what,
                "the tokenizer.model file is damaged or not a sentencepiece model");
  }

 private:
  uint64_t varint(const char* what) {
    const size_t start = base_ + pos_;
    uint64_t v = 0;
    for (int i = 0; i < 10; ++i) {
      if (pos_ >= buf_.size()) fail(start, std::string(what) + " runs past the end of its message");
      const uint8_t b = static_cast<uint8_t>(buf_[pos_++]);
      if (i == 9 && b > 1) fail(start, std::string(what) + " overflows 64 bits");
      v |= static_cast<uint64_t>(b & 0x7F) << (7 * i);
      if (!(b & 0x80)) return v;
    }
    fail(start, std::string(what) + " longer than 10 bytes");
  }
  std::string_view take(size_t n, uint32_t number) {
    if (n > buf_.size() - pos_)
      fail(base_ + pos_, fmt::format("field {} runs past the end of its message", number));
    const std::string_view out = buf_.substr(pos_, n);
    pos_ += n;
    return out;
  }

  std::string_view buf_;
  size_t base_ = 0, pos_ = 0;
  const std::string& where_;
};

size_t offset_in(std::string_view whole, std::string_view part) {
  return static_cast<size_t>(part.data() - whole.data());
}

// A message of which only the framing is known (trainer_spec, self_test_data and the fields
// this check does not interpret): every field must parse; length fields are not descended into,
// since a string and a nested message look alike on the wire.
void check_framing(std::string_view whole, std::string_view msg, const std::string& where) {
  FieldReader r(msg, offset_in(whole, msg), where);
  while (!r.done()) r.next();
}

void expect_wire(const FieldReader& r, const Field& f, int wire, const char* name) {
  if (f.wire != wire)
    r.fail(f.at, fmt::format("{} (field {}) has wire type {}, expected {}", name, f.number, f.wire,
                             wire));
}

void check_piece(std::string_view whole, std::string_view msg, size_t index,
                 const std::string& where) {
  const std::string at = fmt::format("{}: pieces[{}]", where, index);
  FieldReader r(msg, offset_in(whole, msg), at);
  std::string_view piece;  // proto2: the last occurrence of a singular field wins
  while (!r.done()) {
    const Field f = r.next();
    if (f.number == 1) {
      expect_wire(r, f, kLen, "piece");
      piece = f.body;
    } else if (f.number == 2) {
      expect_wire(r, f, kFixed32, "score");
    } else if (f.number == 3) {
      expect_wire(r, f, kVarint, "type");
      // NORMAL 1, UNKNOWN 2, CONTROL 3, USER_DEFINED 4, UNUSED 5, BYTE 6.
      if (f.varint < 1 || f.varint > 6) r.fail(f.at, fmt::format("piece type {}", f.varint));
    }
  }
  const size_t msg_at = offset_in(whole, msg);
  // Darts (the library's piece trie) stores NUL-terminated keys: an empty piece, or one with a
  // NUL, makes its builder throw out of the loader.
  if (piece.empty()) r.fail(msg_at, "an empty piece");
  if (piece.find('\0') != std::string_view::npos) r.fail(msg_at, "a piece holding a NUL byte");
  if (piece.size() >= 8000)
    r.fail(msg_at, fmt::format("a piece of {} bytes (at most 7,999)", piece.size()));
}

void check_normalizer(std::string_view whole, std::string_view msg, const std::string& where) {
  FieldReader r(msg, offset_in(whole, msg), where);
  std::string_view charsmap;
  size_t charsmap_at = 0;
  while (!r.done()) {
    const Field f = r.next();
    if (f.number == 1 || f.number == 6) {
      expect_wire(r, f, kLen, f.number == 1 ? "name" : "normalization_rule_tsv");
    } else if (f.number == 2) {
      expect_wire(r, f, kLen, "precompiled_charsmap");
      charsmap = f.body;
      charsmap_at = f.at;
    } else if (f.number >= 3 && f.number <= 5) {
      expect_wire(r, f, kVarint, "a flag");
    }
  }
  if (!charsmap.empty())
    check_precompiled_charsmap(
        charsmap, fmt::format("{}: precompiled_charsmap (field at byte {})", where, charsmap_at));
}

// A darts-clone unit (third_party/darts_clone/darts.h, DoubleArrayUnit).
bool unit_has_leaf(uint32_t u) {
  return (u >> 8) & 1;
}
uint32_t unit_value(uint32_t u) {
  return u & ((1u << 31) - 1);
}
uint32_t unit_label(uint32_t u) {
  return u & ((1u << 31) | 0xFF);
}
uint32_t unit_offset(uint32_t u) {
  return (u >> 10) << ((u & (1u << 9)) >> 6);
}

}  // namespace

void check_precompiled_charsmap(std::string_view blob, const std::string& where) {
  auto fail = [&](const std::string& what) {
    throw Error(where, what, "the tokenizer.model file is damaged or not a sentencepiece model");
  };
  if (blob.size() < 4) fail(fmt::format("{} bytes, shorter than its size field", blob.size()));
  uint32_t trie_bytes = 0;
  std::memcpy(&trie_bytes, blob.data(), 4);  // little-endian, as on every machine we build for
  // The library only checks trie_bytes < blob.size(), which lets the array overrun the blob by
  // up to its own 4-byte size field.
  if (trie_bytes > blob.size() - 4)
    fail(fmt::format("the double array claims {} bytes, {} follow", trie_bytes, blob.size() - 4));
  const size_t n = trie_bytes / 4;
  const std::string_view strings = blob.substr(4 + trie_bytes);
  if (n == 0) fail("an empty double array");
  // A replacement is read as a C string: the strings must end with NUL.
  if (strings.empty() || strings.back() != '\0')
    fail("the replacement strings do not end with a NUL byte");
  std::vector<uint32_t> units(n);
  std::memcpy(units.data(), blob.data() + 4, n * 4);

  // The library's walk (Darts commonPrefixSearch): from node p with unit u, the child for byte c
  // is q = (p ^ offset(u)) ^ c, taken when label(units[q]) == c; a child with a leaf yields
  // units[q ^ offset(units[q])].value(), an offset into the strings. Every node reachable from
  // the root is visited once (the array is a DAG: suffixes are shared), checking that its 256
  // possible children and its leaf lie in the array, that the leaf's string does, that no path
  // loops, and that no path holds more leaves than the library's 32-entry result buffer.
  constexpr int kMaxLeavesOnPath = 32;
  enum : uint8_t { kNew = 0, kOpen = 1, kDone = 2 };
  std::vector<uint8_t> state(n, kNew);
  std::vector<int> leaves_below(n, 0);  // the most leaves on a path from this node down
  auto children_base = [&](uint32_t p) {
    const uint64_t base = p ^ unit_offset(units[p]);
    if ((base | 0xFF) >= n) fail(fmt::format("node {} points outside the {}-unit array", p, n));
    return static_cast<uint32_t>(base);
  };
  auto is_child = [&](uint32_t base, uint32_t c) { return unit_label(units[base ^ c]) == c; };
  struct Frame {
    uint32_t node;
    uint32_t next_c;  // the next byte whose child is to be visited
  };
  std::vector<Frame> stack{{0, 0}};
  state[0] = kOpen;
  while (!stack.empty()) {
    Frame& top = stack.back();
    const uint32_t p = top.node;
    const uint32_t base = children_base(p);
    if (top.next_c < 256) {
      const uint32_t c = top.next_c++;
      if (!is_child(base, c)) continue;
      const uint32_t q = base ^ c;
      if (state[q] == kOpen) fail(fmt::format("the double array loops back to node {}", q));
      if (state[q] == kNew) {
        state[q] = kOpen;
        stack.push_back({q, 0});
      }
      continue;
    }
    // All children done: this node's own leaf, then the deepest count below it.
    int below = 0;
    for (uint32_t c = 0; c < 256; ++c)
      if (is_child(base, c)) below = std::max(below, leaves_below[base ^ c]);
    if (p != 0 && unit_has_leaf(units[p])) {
      const uint32_t value = unit_value(units[base]);
      if (value >= strings.size())
        fail(fmt::format("node {} maps to string offset {}, past the {} bytes of strings", p, value,
                         strings.size()));
      ++below;
    }
    if (below > kMaxLeavesOnPath)
      fail(fmt::format("more than {} rules match one prefix", kMaxLeavesOnPath));
    leaves_below[p] = below;
    state[p] = kDone;
    stack.pop_back();
  }
}

void check_sentencepiece_model(std::string_view bytes, const std::string& where) {
  FieldReader r(bytes, 0, where);
  size_t pieces = 0;
  while (!r.done()) {
    const Field f = r.next();
    switch (f.number) {
      case 1:
        expect_wire(r, f, kLen, "pieces");
        check_piece(bytes, f.body, pieces++, where);
        break;
      case 2:
        expect_wire(r, f, kLen, "trainer_spec");
        check_framing(bytes, f.body, where + ": trainer_spec");
        break;
      case 3:
      case 5:
        expect_wire(r, f, kLen, f.number == 3 ? "normalizer_spec" : "denormalizer_spec");
        check_normalizer(bytes, f.body,
                         where + (f.number == 3 ? ": normalizer_spec" : ": denormalizer_spec"));
        break;
      case 4:
        expect_wire(r, f, kLen, "self_test_data");
        check_framing(bytes, f.body, where + ": self_test_data");
        break;
      default:
        break;  // extensions and fields of newer versions: framing checked by next()
    }
  }
}

}  // namespace dus
