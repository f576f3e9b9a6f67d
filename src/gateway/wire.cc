#include "gateway/wire.h"

#include <algorithm>
#include <cstdint>

#include "sched/picker.h"

namespace tidegate::gateway {

namespace {
// The two hex digits of every byte value.
struct HexPairs {
  char pair[256][2];
  constexpr HexPairs() : pair() {
    constexpr char kHex[] = "0123456789abcdef";
    for (int i = 0; i < 256; ++i) {
      pair[i][0] = kHex[i >> 4];
      pair[i][1] = kHex[i & 15];
    }
  }
};
constexpr HexPairs kHexPairs;
}  // namespace

void NewRequestId(char (&out)[36]) {
  uint64_t a = sched::FastRandom(), b = sched::FastRandom();
  a = (a & 0xffffffffffff0fffULL) | 0x4000ULL;              // version 4
  b = (b & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;  // variant 1
  // 8-4-4-4-12 hex digits: bytes of a (most significant first), then of b.
  static constexpr int kDashAfter[] = {4, 6, 8, 10};  // after these many bytes
  char* p = out;
  int dash = 0;
  for (int i = 0; i < 16; ++i) {
    if (dash < 4 && i == kDashAfter[dash]) {
      *p++ = '-';
      ++dash;
    }
    const uint64_t word = i < 8 ? a : b;
    const unsigned byte = static_cast<unsigned>((word >> (56 - 8 * (i % 8))) & 0xff);
    *p++ = kHexPairs.pair[byte][0];
    *p++ = kHexPairs.pair[byte][1];
  }
}

std::string NewRequestId() {
  char buf[36];
  NewRequestId(buf);
  return std::string(buf, sizeof buf);
}

}  // namespace tidegate::gateway
