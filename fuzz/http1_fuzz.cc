// libFuzzer target: the gateway's HTTP/1.1 parsers (gateway/http1.h): request heads, response
// heads and the in-place chunked decoder. Build with `make fuzz`; run e.g.
//   build-fuzz/http1_fuzz -max_total_time=60 fuzz/corpus/http1
// The first byte picks the parser; for the chunk decoder the second byte is the size of the
// pieces the input is fed in. Properties checked: no crash or sanitizer report; a parsed head is
// no longer than the input and names a sane status or method; the decoder never produces more
// bytes than it was given, and stops once done or failed.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "gateway/http1.h"

using namespace tidegate::gateway::http1;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t mode = data[0] % 3;
  std::string in(reinterpret_cast<const char*>(data) + 2, size - 2);
  if (mode == 0) {
    RequestHead h;
    if (ParseRequestHead(in, &h) == HeadStatus::kOk) {
      if (h.head_bytes > in.size() || h.method.empty() || h.target.empty()) std::abort();
      ForEachEndToEndHeader(h, [](std::string_view n, std::string_view) {
        if (n.empty()) std::abort();
      });
    }
  } else if (mode == 1) {
    ResponseHead h;
    if (ParseResponseHead(in, data[1] & 1, &h) == HeadStatus::kOk) {
      if (h.head_bytes > in.size() || h.status < 100 || h.status > 999) std::abort();
      ForEachEndToEndHeader(h, [](std::string_view n, std::string_view) {
        if (n.empty()) std::abort();
      });
    }
  } else {
    const size_t step = 1 + data[1] % 64;
    ChunkDecoder d;
    size_t total = 0;
    for (size_t pos = 0; pos < in.size(); pos += step) {
      std::string piece = in.substr(pos, step);
      size_t extra = 0;
      const size_t got = d.Decode(piece.data(), piece.size(), &extra);
      if (got + extra > piece.size()) std::abort();
      total += got;
      if (d.done() || d.failed()) break;
    }
    if (total > in.size()) std::abort();
  }
  return 0;
}
