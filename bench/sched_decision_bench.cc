// One scheduling decision with the "gie-default" policy (stale filter, queue 2, KV 2, prefix 3),
// prefix matching and index update included, for pools of 16, 128 and 1,000 endpoints and a
// 4,000-token (~16,000-character) prompt. Targets (DESIGN.md): ≤ 5 µs at 16, ≤ 50 µs at 1,000.
//   build-sched/micro_bench --benchmark_filter=Sched
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "pool/endpoint.h"
#include "sched/framework.h"
#include "sched/kv_block_index.h"
#include "sched/picker.h"
#include "tokenizer/standin.h"

namespace tidegate::sched {
namespace {

constexpr size_t kPromptChars = 16000;
constexpr int kPrompts = 64;  // distinct conversations in rotation

std::string MakePrompt(int seed) {
  // A shared 2,000-character system prompt, then per-conversation text.
  std::string s;
  s.reserve(kPromptChars);
  uint64_t x = 0x12345;
  for (size_t i = 0; i < kPromptChars; ++i) {
    if (i == 2000) x = 0x9E3779B97F4A7C15ULL * (seed + 1);
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    s.push_back(static_cast<char>('a' + (x >> 59) % 26));
  }
  return s;
}

struct Fixture {
  explicit Fixture(int n) : pool(Endpoints(n)) {
    for (int i = 0; i < n; ++i) {
      pool::EndpointMetrics m;
      m.waiting = i % 7;
      m.running = 10 + i % 13;
      m.kv_usage = (i % 10) / 10.0;
      m.has_kv = true;
      m.scrape_time = now;
      pool.at(i).PublishMetrics(std::move(m));
    }
    for (int p = 0; p < kPrompts; ++p) prompts.push_back(MakePrompt(p));
    picker = MakePicker(policy);
    // Warm the prefix index: every conversation has been seen once.
    for (int p = 0; p < kPrompts; ++p) picker->Pick(Req(p), pool, now);
  }
  static std::vector<pool::EndpointConfig> Endpoints(int n) {
    std::vector<pool::EndpointConfig> v;
    for (int i = 0; i < n; ++i)
      v.push_back({"10.0." + std::to_string(i / 256) + "." + std::to_string(i % 256), 8000});
    return v;
  }
  RequestInfo Req(int p) const {
    RequestInfo r;
    r.path = "/v1/chat/completions";
    r.model = "meta-llama/Llama-3.1-8B-Instruct";
    r.prompt = prompts[p % kPrompts];
    return r;
  }
  const char* policy = "gie-default";
  Nanos now = std::chrono::seconds(100);
  pool::Pool pool;
  std::vector<std::string> prompts;
  std::unique_ptr<Picker> picker;
};

void BM_SchedDecisionGieDefault(benchmark::State& state) {
  Fixture f(static_cast<int>(state.range(0)));
  int i = 0;
  for (auto _ : state) {
    PickResult r = f.picker->Pick(f.Req(i++), f.pool, f.now);
    benchmark::DoNotOptimize(r);
  }
  state.SetLabel("4000-token prompt");
}
BENCHMARK(BM_SchedDecisionGieDefault)->Arg(16)->Arg(128)->Arg(1000);

void BM_SchedPromptHashing(benchmark::State& state) {
  std::string p = MakePrompt(1);
  std::vector<uint64_t> out;
  for (auto _ : state) {
    out.clear();
    ChainedBlockHashes("meta-llama/Llama-3.1-8B-Instruct", p, 64, 256, &out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(p.size()));
}
BENCHMARK(BM_SchedPromptHashing);

void BM_SchedDecisionLeastRequest(benchmark::State& state) {
  Fixture f(static_cast<int>(state.range(0)));
  auto picker = MakePicker("least-request");
  int i = 0;
  for (auto _ : state) benchmark::DoNotOptimize(picker->Pick(f.Req(i++), f.pool, f.now));
}
BENCHMARK(BM_SchedDecisionLeastRequest)->Arg(16)->Arg(1000);

void BM_SchedDecisionTidegateDefault(benchmark::State& state) {
  Fixture f(static_cast<int>(state.range(0)));
  auto picker = MakePicker("tidegate-default");
  int i = 0;
  for (auto _ : state) {
    RequestInfo r = f.Req(i);
    std::string session = "s" + std::to_string(i++ % kPrompts);
    r.session_id = session;
    benchmark::DoNotOptimize(picker->Pick(r, f.pool, f.now));
  }
}
BENCHMARK(BM_SchedDecisionTidegateDefault)->Arg(16)->Arg(1000);

// The predicted-latency policy: prefix scorer, the latency predictor (per-candidate TTFT and
// TPOT predictions) and its feedback (the request's features recorded when it is sent, the model
// updated by its outcome), with an SLO on every other request — a whole decision and its
// learning, per iteration.
void BM_SchedDecisionPredictedLatency(benchmark::State& state) {
  Fixture f(static_cast<int>(state.range(0)));
  auto picker = MakePicker("predicted-latency");
  uint64_t i = 0;
  for (auto _ : state) {
    RequestInfo r = f.Req(static_cast<int>(i));
    r.id = ++i;
    if (i % 2 == 0) r.slo_ttft_ms = 200;
    PickResult p = picker->Pick(r, f.pool, f.now);
    Outcome o;
    o.endpoint = p.empty() ? Outcome::kNone : p.order[0];
    o.status = 200;
    o.ttft = std::chrono::milliseconds(40 + static_cast<int>(i % 50));
    o.output_tokens = 32;
    o.duration = o.ttft + std::chrono::milliseconds(300);
    picker->OnOutcome(r, f.pool, o, f.now);
    benchmark::DoNotOptimize(p);
  }
  state.SetLabel("4000-token prompt, pick + outcome");
}
BENCHMARK(BM_SchedDecisionPredictedLatency)->Arg(16)->Arg(1000);

// The tidegate-precise policy: precise-prefix-cache-scorer over a shared block index fed as the
// engines' KV events would feed it (each conversation's blocks held by 2 of the endpoints), every
// feed live. The stand-in token ids (4 bytes a token) and their chained keys are computed in the
// decision; a real tokenizer's cost is BM_Tokenize* (bench/tokenizer_bench.cc), reported apart.
void BM_SchedDecisionPrecisePrefix(benchmark::State& state) {
  Fixture f(static_cast<int>(state.range(0)));
  KvBlockIndex& idx = SharedKvBlockIndex();
  const uint32_t n = static_cast<uint32_t>(state.range(0));
  for (uint32_t e = 0; e < n; ++e) {
    idx.Clear(e);
    idx.SetLive(e, true);
  }
  uint64_t engine_hash = 1;
  for (int p = 0; p < kPrompts; ++p) {
    std::vector<uint32_t> ids;
    tokenizer::StandInTokenIds(f.prompts[p], &ids);
    for (uint32_t copy = 0; copy < 2; ++copy) {
      std::vector<uint64_t> hashes(ids.size() / 16);
      for (auto& h : hashes) h = engine_hash++;
      idx.Store((static_cast<uint32_t>(p) * 7 + copy * 3) % n, hashes, std::nullopt, ids, 16, "",
                "");
    }
  }
  auto picker = MakePicker("tidegate-precise");
  int i = 0;
  for (auto _ : state) {
    RequestInfo r = f.Req(i++);
    benchmark::DoNotOptimize(picker->Pick(r, f.pool, f.now));
  }
  for (uint32_t e = 0; e < n; ++e) {
    idx.Clear(e);
    idx.SetLive(e, false);
  }
  state.SetLabel("4000-token prompt, 250 blocks, index of " + std::to_string(kPrompts * 2) +
                 " prompts");
}
BENCHMARK(BM_SchedDecisionPrecisePrefix)->Arg(16)->Arg(1000);

}  // namespace
}  // namespace tidegate::sched
