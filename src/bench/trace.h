// bench/trace.h — request traces to replay: arrival times and sizes from a file with the columns
// of the public Azure LLM inference traces.
//
// Contract: ParseTrace() reads either
//  - CSV with a header row naming (case-insensitively) TIMESTAMP, ContextTokens and
//    GeneratedTokens (other columns are ignored), as the Azure traces are published; or
//  - JSON lines, one object per line with "timestamp" (or "TIMESTAMP"), "context_tokens" (or
//    "ContextTokens") and "generated_tokens" (or "GeneratedTokens").
// A timestamp is a number of seconds, or a date-time "YYYY-MM-DD HH:MM:SS[.fraction]" (also with
// a "T"; read as UTC). Rows come out in time order with `t_s` relative to the earliest row; token
// counts must be integers from 0 to 2^20. A date-time may end in "Z" or a "+HH:MM" offset. Blank
// lines are skipped. Any other defect gives false and an error naming the line. At most kMaxRows
// rows. Thread-safety: pure functions (LoadTrace reads a file).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace tidegate::bench {

struct TraceRow {
  double t_s = 0;  // seconds after the first request
  int context_tokens = 0;
  int generated_tokens = 0;
};

inline constexpr size_t kMaxTraceRows = 10'000'000;

bool ParseTrace(std::string_view text, std::vector<TraceRow>* out, std::string* error);
bool LoadTrace(const std::string& path, std::vector<TraceRow>* out, std::string* error);

}  // namespace tidegate::bench
