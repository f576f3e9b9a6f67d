#include "common/datetime.h"

#include <cctype>

namespace tidegate {

bool ParseRfc3339(std::string_view s, std::chrono::system_clock::time_point* out, bool lenient) {
  // YYYY-MM-DDTHH:MM:SS[.frac](Z|±hh:mm); lenient: also ' ' for 'T', and no zone (UTC)
  auto num = [&](size_t pos, size_t len, int* v) {
    if (pos + len > s.size()) return false;
    int x = 0;
    for (size_t i = pos; i < pos + len; ++i) {
      if (!std::isdigit(static_cast<unsigned char>(s[i]))) return false;
      x = x * 10 + (s[i] - '0');
    }
    *v = x;
    return true;
  };
  int y, mo, d, h, mi, sec;
  if (s.size() < 19 || !num(0, 4, &y) || s[4] != '-' || !num(5, 2, &mo) || s[7] != '-' ||
      !num(8, 2, &d) || (s[10] != 'T' && s[10] != 't' && !(lenient && s[10] == ' ')) ||
      !num(11, 2, &h) || s[13] != ':' || !num(14, 2, &mi) || s[16] != ':' || !num(17, 2, &sec)) {
    return false;
  }
  size_t pos = 19;
  int64_t nanos = 0;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    int digits = 0;
    while (pos < s.size() && std::isdigit(static_cast<unsigned char>(s[pos]))) {
      if (digits < 9) nanos = nanos * 10 + (s[pos] - '0'), ++digits;
      ++pos;
    }
    if (digits == 0) return false;
    for (; digits < 9; ++digits) nanos *= 10;
  }
  int offset_min = 0;
  if (pos < s.size() && (s[pos] == 'Z' || s[pos] == 'z')) {
    ++pos;
  } else if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) {
    int oh, om;
    if (!num(pos + 1, 2, &oh) || pos + 3 >= s.size() || s[pos + 3] != ':' ||
        !num(pos + 4, 2, &om)) {
      return false;
    }
    offset_min = (s[pos] == '-' ? -1 : 1) * (oh * 60 + om);
    pos += 6;
  } else if (!lenient || pos != s.size()) {
    return false;
  }
  if (pos != s.size()) return false;
  using namespace std::chrono;
  year_month_day ymd{year{y}, month{static_cast<unsigned>(mo)}, day{static_cast<unsigned>(d)}};
  if (!ymd.ok() || h > 23 || mi > 59 || sec > 60) return false;
  auto tp = sys_days{ymd} + hours{h} + minutes{mi} + seconds{sec} - minutes{offset_min} +
            nanoseconds{nanos};
  *out = time_point_cast<system_clock::duration>(tp);
  return true;
}

}  // namespace tidegate
