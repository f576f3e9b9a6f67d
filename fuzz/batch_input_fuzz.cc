// libFuzzer target: Batch API input-file validation (batch/batch.h, ValidateInput). Whatever the
// bytes, validation returns either lines or errors, never both; every line lies inside the file
// and starts a JSON object whose custom_id is unique; every error names a line in the file (or
// none); at most kMaxReportedErrors are kept and all are counted. Build with `make fuzz`; run
//   build-fuzz/batch_input_fuzz -max_total_time=60 fuzz/corpus/batch_input
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>

#include "batch/batch.h"

// The corpus replay test includes this file and calls the body under its own name.
#ifndef TIDEGATE_FUZZ_ENTRY
#define TIDEGATE_FUZZ_ENTRY LLVMFuzzerTestOneInput
#endif
extern "C" int TIDEGATE_FUZZ_ENTRY(const uint8_t* data, size_t size) {
  using namespace tidegate::batch;
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  InputLimits limits;
  limits.max_lines = 64;
  limits.max_bytes = 1 << 20;
  const Validation v = ValidateInput(in, "/v1/chat/completions", limits);
  const int64_t newlines = static_cast<int64_t>(std::count(in.begin(), in.end(), '\n'));
  if (v.ok() != v.errors.empty()) std::abort();
  if (v.error_count < v.errors.size() || v.errors.size() > kMaxReportedErrors) std::abort();
  if (!v.ok() && !v.lines.empty()) std::abort();
  if (v.ok() && (v.lines.empty() || v.lines.size() > limits.max_lines)) std::abort();
  std::set<std::string> ids;
  int64_t last_line = 0;
  for (const auto& l : v.lines) {
    if (l.offset + l.length > in.size() || l.line <= last_line || l.line > newlines + 1)
      std::abort();
    last_line = l.line;
    if (in.substr(l.offset, l.length).find('{') == std::string_view::npos) std::abort();
    if (!ids.insert(l.custom_id).second) std::abort();
  }
  for (const auto& e : v.errors)
    if (e.line < 0 || e.line > newlines + 1 || e.code.empty() || e.message.empty()) std::abort();
  return 0;
}
