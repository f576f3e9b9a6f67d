// libFuzzer target: the async processor's message format (request messages in both formats,
// result messages, the submit line builder). Build with `make fuzz`; run e.g.
//   build-fuzz/async_message_fuzz -max_total_time=60 fuzz/corpus/async_message
// Properties checked (abort on violation): no crash or sanitizer report on any input; a parse
// failure always carries INVALID_REQUEST, a message and a non-empty id; an accepted request has
// a non-empty id, a supported path, an object payload and deadline >= created, and survives
// render → parse unchanged; an accepted result survives render → parse unchanged; a line the
// submit builder accepts yields a message that parses to the same id.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "async/message.h"

namespace {

using namespace tidegate::async;

void Check(bool ok) {
  if (!ok) std::abort();
}

void CheckRequest(std::string_view data) {
  ParsedRequest p = ParseRequestMessage(data, "fallback-id");
  if (!p.ok()) {
    Check(p.error == ErrorCode::kInvalidRequest);
    Check(!p.error_message.empty());
    Check(!p.request.id.empty());
    return;
  }
  const Request& r = p.request;
  Check(!r.id.empty());
  const auto& paths = SupportedPaths();
  Check(std::find(paths.begin(), paths.end(), r.path) != paths.end());
  Check(!r.payload.empty() && r.payload.front() == '{');
  Check(r.created == 0 || r.deadline == 0 || r.deadline >= r.created);
  ParsedRequest again = ParseRequestMessage(RenderRequestMessage(r), "other-id");
  Check(again.ok());
  Check(again.request.id == r.id && again.request.path == r.path &&
        again.request.payload == r.payload && again.request.created == r.created &&
        again.request.deadline == r.deadline && again.request.metadata == r.metadata &&
        again.request.headers == r.headers);
}

void CheckResult(std::string_view data) {
  Result r;
  std::string error;
  if (!ParseResultMessage(data, &r, &error)) {
    Check(!error.empty());
    return;
  }
  Result again;
  Check(ParseResultMessage(RenderResultMessage(r), &again, &error));
  Check(again.id == r.id && again.status_code == r.status_code && again.payload == r.payload &&
        again.error_code == r.error_code &&
        (r.error_code == ErrorCode::kNone || again.error_message == r.error_message));
}

void CheckSubmit(std::string_view line) {
  std::string message, id, error;
  const auto now = std::chrono::system_clock::time_point(std::chrono::seconds(1700000000));
  if (!BuildRequestMessage(line, now, std::chrono::hours(1), "line-1", &message, &id, &error)) {
    Check(!error.empty());
    return;
  }
  ParsedRequest p = ParseRequestMessage(message, "other-id");
  Check(p.ok() && p.request.id == id);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  CheckRequest(input);
  CheckResult(input);
  CheckSubmit(input);
  return 0;
}
