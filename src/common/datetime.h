// common/datetime.h — date-times in text: RFC 3339, as Pub/Sub writes its publish times, and the
// looser form request traces use.
//
// Contract: ParseRfc3339() reads "YYYY-MM-DDTHH:MM:SS[.fraction](Z|±hh:mm)" (fractions to the
// nanosecond; more digits are truncated) into a time point, false for anything else (including
// impossible dates). With `lenient` it also takes a space for the "T" and a missing zone, read
// as UTC ("2023-11-16 18:15:46.6805900", as the Azure LLM inference traces write them).
// Thread-safety: a pure function.
#pragma once

#include <chrono>
#include <string_view>

namespace tidegate {

bool ParseRfc3339(std::string_view s, std::chrono::system_clock::time_point* out,
                  bool lenient = false);

}  // namespace tidegate
