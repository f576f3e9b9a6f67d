// Engine step cost with a full batch: 256 running sequences decoding (plus the prefill of
// replacements as sequences finish), on a ManualClock. Reports engine tokens per second of CPU.
#include <benchmark/benchmark.h>

#include "sim/engine.h"
#include "sim/text.h"
#include "tokenizer/standin.h"

namespace tidegate::sim {
namespace {

void BM_SimEngineStep256(benchmark::State& state) {
  ManualClock clock;
  EngineConfig cfg;  // llama-3.1-8b-h100 defaults: 256 seqs, 8192 tokens/step, 25k blocks
  Engine engine(cfg, clock);
  const int seqs = static_cast<int>(state.range(0));
  std::string prompt(4 * 512, 'p');
  int n = 0;
  auto add = [&] {
    RequestSpec spec;
    spec.prompt_tokens = 512;
    // Half the requests share a system prompt (prefix hits), half are unique.
    prompt[prompt.size() - 1] = static_cast<char>('a' + (n % 2 ? n % 26 : 0));
    prompt[100] = static_cast<char>('a' + (n % 2 ? (n / 26) % 26 : 0));
    std::vector<uint32_t> ids;
    tokenizer::StandInTokenIds(prompt, &ids);
    spec.block_hashes = BlockHashes(ids, cfg.block_size, 1);
    spec.max_tokens = 256 + (n % 64);
    ++n;
    engine.Add(std::move(spec), nullptr);
  };
  for (int i = 0; i < seqs; ++i) add();
  int64_t tokens = 0;
  for (auto _ : state) {
    const StepResult& r = engine.Step();
    clock.Advance(r.duration);
    tokens += static_cast<int64_t>(r.events.size());
    for (const auto& e : r.events)
      if (e.finished) add();
  }
  state.counters["tokens/s"] =
      benchmark::Counter(static_cast<double>(tokens), benchmark::Counter::kIsRate);
  state.counters["running"] = engine.num_running();
}
BENCHMARK(BM_SimEngineStep256)->Arg(256);

}  // namespace
}  // namespace tidegate::sim
