// common/units.h — parsing of human-friendly durations ("250ms", "3s", "2m", "1h") and byte
// sizes ("16MiB", "512k", "1048576").
//
// Contract: pure functions; they return std::nullopt for anything they cannot parse exactly
// (no silent truncation), so callers can report a clear error naming the bad value.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tidegate {

std::optional<std::chrono::milliseconds> ParseDuration(std::string_view text);
std::optional<uint64_t> ParseBytes(std::string_view text);
std::string FormatDuration(std::chrono::milliseconds d);

}  // namespace tidegate
