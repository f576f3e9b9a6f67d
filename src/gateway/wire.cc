#include "gateway/wire.h"

#include <algorithm>
#include <cstdint>

#include "sched/picker.h"

namespace tidegate::gateway {

void NewRequestId(char (&out)[36]) {
  static constexpr char kHex[] = "0123456789abcdef";
  uint64_t a = sched::FastRandom(), b = sched::FastRandom();
  a = (a & 0xffffffffffff0fffULL) | 0x4000ULL;              // version 4
  b = (b & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;  // variant 1
  char* p = out;
  for (int i = 0; i < 32; ++i) {
    if (i == 8 || i == 12 || i == 16 || i == 20) *p++ = '-';
    const uint64_t word = i < 16 ? a : b;
    *p++ = kHex[(word >> (60 - 4 * (i % 16))) & 0xf];
  }
}

std::string NewRequestId() {
  char buf[36];
  NewRequestId(buf);
  return std::string(buf, sizeof buf);
}

bool ChunkedParserCanProgress(std::string_view v) {
  v = v.substr(0, std::min<size_t>(v.size(), 128));
  if (!v.starts_with("\r\n")) return false;
  size_t eol = v.find("\r\n", 2);
  if (eol == std::string_view::npos) return false;
  std::string_view size = v.substr(2, eol - 2);
  if (size == "0" || size.starts_with("0;")) return v.substr(eol + 2).starts_with("\r\n");
  return true;
}

}  // namespace tidegate::gateway
