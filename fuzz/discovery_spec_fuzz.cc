// libFuzzer target: the --discovery spec parser (discovery/source.h ParseSourceSpec) and the
// endpoint text lists (discovery/endpoint_list.h ParseEndpointText). Build with `make fuzz`;
// run e.g.
//   build-fuzz/discovery_spec_fuzz -max_total_time=60 fuzz/corpus/discovery_spec
// Properties checked (abort on violation): no crash, hang or sanitizer report; a rejection comes
// with a message and leaves the output untouched; an accepted spec names a registered source,
// its keys are non-empty and hold no '=' or ',', its values no ','; written back out as
// "type:key=value,..." it parses to the same spec; every endpoint of an accepted list has a host
// and a port from 1 to 65535, and the list written back out parses to the same endpoints.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "discovery/endpoint_list.h"
#include "discovery/source.h"

namespace {

using namespace tidegate;

void Check(bool ok) {
  if (!ok) std::abort();
}

void CheckSpec(const std::string& text) {
  discovery::SourceSpec spec;
  spec.type = "untouched";
  const std::string err = discovery::ParseSourceSpec(text, &spec);
  if (!err.empty()) {
    Check(spec.type == "untouched" && spec.params.empty());
    return;
  }
  bool registered = false;
  for (const auto& t : discovery::RegisteredSources()) registered |= t == spec.type;
  Check(registered);
  std::string again = spec.type;
  bool first = true;
  for (const auto& [k, v] : spec.params) {
    Check(!k.empty() && k.find('=') == std::string::npos && k.find(',') == std::string::npos);
    Check(v.find(',') == std::string::npos);
    again += (first ? ":" : ",") + k + "=" + v;
    first = false;
  }
  discovery::SourceSpec reparsed;
  const std::string err2 = discovery::ParseSourceSpec(again, &reparsed);
  // Values are trimmed on parse, so a value that is empty or space-only stays as it was.
  Check(err2.empty());
  Check(reparsed.type == spec.type && reparsed.params == spec.params);
}

void CheckList(const std::string& text) {
  std::vector<pool::EndpointConfig> eps(1);
  eps[0].host = "untouched";
  const std::string err = discovery::ParseEndpointText(text, &eps);
  if (!err.empty()) {
    Check(eps.size() == 1 && eps[0].host == "untouched");
    return;
  }
  std::string again;
  for (const auto& e : eps) {
    Check(!e.host.empty() && e.port >= 1);
    const bool v6 = e.host.find(':') != std::string::npos;
    again += std::string(e.tls ? "https://" : "") + (v6 ? "[" + e.host + "]" : e.host) + ":" +
             std::to_string(e.port) + " ";
  }
  std::vector<pool::EndpointConfig> reparsed;
  Check(discovery::ParseEndpointText(again, &reparsed).empty());
  Check(reparsed.size() == eps.size());
  for (size_t i = 0; i < eps.size(); ++i)
    Check(reparsed[i].host == eps[i].host && reparsed[i].port == eps[i].port &&
          reparsed[i].tls == eps[i].tls);
}

}  // namespace

// The corpus replay test includes this file and calls the body under its own name.
#ifndef TIDEGATE_FUZZ_ENTRY
#define TIDEGATE_FUZZ_ENTRY LLVMFuzzerTestOneInput
#endif
extern "C" int TIDEGATE_FUZZ_ENTRY(const uint8_t* data, size_t size) {
  if (size > 4096) return 0;
  const std::string text(reinterpret_cast<const char*>(data), size);
  CheckSpec(text);
  CheckList(text);
  return 0;
}
