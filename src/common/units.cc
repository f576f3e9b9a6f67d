#include "common/units.h"

#include <cctype>
#include <charconv>
#include <cmath>

namespace tidegate {
namespace {

// Splits "12.5ms" into 12.5 and "ms". Returns false when there is no leading number.
bool SplitNumber(std::string_view text, double* number, std::string_view* suffix) {
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.'))
    ++i;
  if (i == 0) return false;
  std::string digits(text.substr(0, i));
  char* end = nullptr;
  *number = std::strtod(digits.c_str(), &end);
  if (end != digits.c_str() + digits.size()) return false;
  *suffix = text.substr(i);
  while (!suffix->empty() && suffix->front() == ' ') suffix->remove_prefix(1);
  return std::isfinite(*number) && *number >= 0;
}

}  // namespace

std::optional<std::chrono::milliseconds> ParseDuration(std::string_view text) {
  double n = 0;
  std::string_view unit;
  if (!SplitNumber(text, &n, &unit)) return std::nullopt;
  double ms;
  if (unit == "ms") {
    ms = n;
  } else if (unit == "s" || unit.empty()) {
    ms = n * 1000;
  } else if (unit == "m") {
    ms = n * 60'000;
  } else if (unit == "h") {
    ms = n * 3'600'000;
  } else if (unit == "us") {
    ms = n / 1000;
  } else {
    return std::nullopt;
  }
  if (ms > 1e15) return std::nullopt;
  return std::chrono::milliseconds(static_cast<int64_t>(std::llround(ms)));
}

std::optional<uint64_t> ParseBytes(std::string_view text) {
  double n = 0;
  std::string_view unit;
  if (!SplitNumber(text, &n, &unit)) return std::nullopt;
  double mult;
  if (unit.empty() || unit == "B") {
    mult = 1;
  } else if (unit == "k" || unit == "K" || unit == "KiB" || unit == "kib") {
    mult = 1024;
  } else if (unit == "M" || unit == "MiB" || unit == "mib" || unit == "m") {
    mult = 1024.0 * 1024;
  } else if (unit == "G" || unit == "GiB" || unit == "gib" || unit == "g") {
    mult = 1024.0 * 1024 * 1024;
  } else {
    return std::nullopt;
  }
  double v = n * mult;
  if (v > 1e18) return std::nullopt;
  return static_cast<uint64_t>(v);
}

std::string FormatDuration(std::chrono::milliseconds d) {
  auto ms = d.count();
  if (ms % 3'600'000 == 0 && ms) return std::to_string(ms / 3'600'000) + "h";
  if (ms % 60'000 == 0 && ms) return std::to_string(ms / 60'000) + "m";
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

}  // namespace tidegate
