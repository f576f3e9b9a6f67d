#include "queue/uri.h"

#include <charconv>

namespace tidegate::queue {

namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

bool PercentDecode(std::string_view in, std::string* out) {
  out->clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out->push_back(in[i]);
      continue;
    }
    if (i + 2 >= in.size()) return false;
    const int hi = HexValue(in[i + 1]), lo = HexValue(in[i + 2]);
    if (hi < 0 || lo < 0) return false;
    out->push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out->find('\0') == std::string::npos;
}

std::vector<std::string_view> SplitView(std::string_view s, char sep) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    const size_t pos = s.find(sep, start);
    parts.push_back(s.substr(start, pos == std::string_view::npos ? s.npos : pos - start));
    if (pos == std::string_view::npos) break;
    start = pos + 1;
  }
  return parts;
}

bool ParseDottedPair(std::string_view s, uint64_t* a, uint64_t* b) {
  const size_t dot = s.find('.');
  if (dot == std::string_view::npos) return false;
  auto parse = [](std::string_view p, uint64_t* v) {
    if (p.empty()) return false;
    auto [ptr, ec] = std::from_chars(p.data(), p.data() + p.size(), *v);
    return ec == std::errc() && ptr == p.data() + p.size() && *v > 0;
  };
  return parse(s.substr(0, dot), a) && parse(s.substr(dot + 1), b);
}

std::string CheckDeadLetter(bool have_max_attempts, const std::string& dead_letter,
                            const std::string& source, std::string_view unit, int* max_attempts) {
  std::string upper(unit);
  for (char& c : upper) c = static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
  if (have_max_attempts && dead_letter.empty())
    return "max_attempts needs dead_letter=" + upper + " (without a dead-letter " +
           std::string(unit) + " messages are redelivered indefinitely, never dropped)";
  if (!dead_letter.empty()) {
    if (dead_letter == source) return "dead_letter must differ from the " + std::string(unit);
    if (!have_max_attempts) *max_attempts = kDefaultDeadLetterAttempts;
  }
  return "";
}

}  // namespace tidegate::queue
