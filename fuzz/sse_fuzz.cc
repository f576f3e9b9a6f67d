// libFuzzer target: the SSE relay framing (gateway/sse.h). The input is split at two points
// taken from its first bytes; the scanner must give the same event count and boundary state as
// for the input in one piece, whatever the split. Build with `make fuzz`; run e.g.
//   build-fuzz/sse_fuzz -max_total_time=60 fuzz/corpus/sse
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "gateway/sse.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  std::string_view in(reinterpret_cast<const char*>(data) + 2, size - 2);
  const size_t a = in.empty() ? 0 : data[0] % (in.size() + 1);
  const size_t b = a + (in.size() - a == 0 ? 0 : data[1] % (in.size() - a + 1));
  tidegate::gateway::SseScanner whole, split;
  whole.Feed(in);
  split.Feed(in.substr(0, a));
  split.Feed(in.substr(a, b - a));
  split.Feed(in.substr(b));
  if (whole.DataEvents() != split.DataEvents()) std::abort();
  if (whole.TrailingNewlines() != split.TrailingNewlines()) std::abort();
  if (whole.DataEvents() < 0 || whole.TrailingNewlines() < 0 || whole.TrailingNewlines() > 2)
    std::abort();
  return 0;
}
