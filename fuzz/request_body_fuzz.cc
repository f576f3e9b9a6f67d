// libFuzzer target: the gateway's request-body inspection (JSON validation and the fields routing
// reads). Build with `make fuzz`; run e.g.
//   build-fuzz/request_body_fuzz -max_total_time=60 fuzz/corpus/request_body
// Properties checked: no crash or sanitizer report on any input; a body that passes inspection
// has a non-empty model; errors always come with a stable code.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "gateway/request.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string body(reinterpret_cast<const char*>(data), size);
  auto info = tidegate::gateway::InspectBody(body);
  if (info.error.empty()) {
    if (info.model.empty()) std::abort();
  } else if (info.code.empty()) {
    std::abort();
  }
  if (body != std::string(reinterpret_cast<const char*>(data), size)) std::abort();  // untouched
  return 0;
}
