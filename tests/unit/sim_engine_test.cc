#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include "sim/engine.h"
#include "sim/profiles.h"
#include "sim/scaled_clock.h"
#include "sim/text.h"
#include "tokenizer/standin.h"

namespace tidegate::sim {
namespace {

// The block hashes of a text's stand-in token ids (as the simulator's server computes them).
std::vector<uint64_t> TextHashes(std::string_view text, int block_size, uint64_t seed) {
  std::vector<uint32_t> ids;
  tokenizer::StandInTokenIds(text, &ids);
  return BlockHashes(ids, block_size, seed);
}

// Drives an engine on virtual time and records when each request saw its tokens.
class Harness {
 public:
  explicit Harness(EngineConfig cfg) : engine(std::move(cfg), clock) {
    engine.set_sinks({&ttft_hist, nullptr, nullptr});
  }

  uint64_t Add(int prompt_tokens, int max_tokens, int priority = 0, std::string lora = {},
               std::vector<uint64_t> hashes = {}) {
    RequestSpec spec;
    spec.prompt_tokens = prompt_tokens;
    spec.max_tokens = max_tokens;
    spec.priority = priority;
    spec.lora = std::move(lora);
    spec.block_hashes = std::move(hashes);
    std::string err;
    uint64_t id = engine.Add(std::move(spec), &err);
    EXPECT_NE(id, 0u) << err;
    added[id] = clock.Now();
    return id;
  }

  // One step; the clock moves by its duration (plus 1 ms when idle).
  const StepResult& Step() {
    const StepResult& r = engine.Step();
    clock.Advance(r.duration.count() > 0 ? r.duration : std::chrono::milliseconds(1));
    for (const auto& e : r.events) {
      if (e.index == 0) first_token[e.id] = clock.Now();
      if (e.finished) finished[e.id] = clock.Now();
      ++tokens[e.id];
    }
    return r;
  }

  void RunUntilIdle(int max_steps = 100000) {
    for (int i = 0; i < max_steps && engine.HasWork(); ++i) Step();
    ASSERT_FALSE(engine.HasWork());
  }

  double Ttft(uint64_t id) { return ToSeconds(first_token.at(id) - added.at(id)); }

  ManualClock clock;
  metrics::Histogram ttft_hist{metrics::LatencyBuckets()};
  Engine engine;
  std::map<uint64_t, Nanos> added, first_token, finished;
  std::map<uint64_t, int> tokens;
};

EngineConfig SmallConfig() {
  EngineConfig c;
  c.max_num_seqs = 8;
  c.max_num_batched_tokens = 2048;
  c.block_size = 16;
  c.num_gpu_blocks = 1000;
  return c;
}

TEST(SimLatencyModel, MatchesPublishedFits) {
  LatencyModel m;
  // Prefill of 1000 tokens: 4.21e-7·1e6 + 15.2 + 16.5 = 32.12 ms.
  EXPECT_NEAR(m.StepMs(1000, 0, 0, 0), 32.121, 1e-3);
  // Decode of 100 sequences with short contexts: 6 + 35 ms.
  EXPECT_NEAR(m.StepMs(0, 100, 100 * 200, 0), 41.0, 1e-9);
  // Memory-bound decode: 400k context tokens × 128 KiB / 3.35 TB/s ≈ 15.6 ms > 0.35 ms × 10.
  EXPECT_NEAR(m.StepMs(0, 10, 400000, 0), 6.0 + 400000.0 * 131072 / 3.35e12 * 1e3, 1e-6);
}

TEST(SimEngine, GeneratesExactlyMaxTokensAndFrees) {
  Harness h(SmallConfig());
  uint64_t id = h.Add(100, 5);
  h.RunUntilIdle();
  EXPECT_EQ(h.tokens[id], 5);
  EXPECT_EQ(h.engine.num_free_blocks(), 1000);
  EXPECT_EQ(h.engine.stats().generation_tokens, 5u);
  EXPECT_EQ(h.engine.stats().finished, 1u);
  EXPECT_EQ(h.ttft_hist.Count(), 1u);
}

TEST(SimEngine, TtftGrowsWithQueueDepth) {
  // Each step prefills at most 2048 tokens; requests of 2000 tokens queue behind each other.
  std::vector<double> ttfts;
  for (int depth : {0, 4, 16}) {
    Harness h(SmallConfig());
    for (int i = 0; i < depth; ++i) h.Add(2000, 4);
    uint64_t probe = h.Add(2000, 4);
    h.RunUntilIdle();
    ttfts.push_back(h.Ttft(probe));
  }
  EXPECT_LT(ttfts[0], ttfts[1]);
  EXPECT_LT(ttfts[1], ttfts[2]);
  // Alone: one prefill step of 2000 tokens.
  EXPECT_NEAR(ttfts[0], LatencyModel().StepMs(2000, 0, 0, 0) / 1e3, 1e-6);
}

TEST(SimEngine, PrefixHitLowersTtftAndCountsHits) {
  Harness h(SmallConfig());
  std::string prompt(4 * 1600, 'x');
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<char>('a' + (i * 7) % 26);
  auto hashes = TextHashes(prompt, 16, 42);
  ASSERT_EQ(hashes.size(), 100u);
  uint64_t cold = h.Add(1600, 2, 0, {}, hashes);
  h.RunUntilIdle();
  EXPECT_EQ(h.engine.stats().prefix_hits, 0u);
  EXPECT_EQ(h.engine.stats().prefix_queries, 1600u);

  uint64_t warm = h.Add(1600, 2, 0, {}, hashes);
  h.Step();
  auto view = h.engine.Get(warm);
  ASSERT_TRUE(view);
  // All blocks but the last one (the last token must be recomputed).
  EXPECT_EQ(view->cached_tokens, 99 * 16);
  h.RunUntilIdle();
  EXPECT_EQ(h.engine.stats().prefix_hits, 99u * 16);
  EXPECT_LT(h.Ttft(warm), h.Ttft(cold) / 2);

  // A different prompt of the same length gets no hit.
  uint64_t other = h.Add(1600, 2, 0, {}, TextHashes(std::string(6400, 'z'), 16, 42));
  h.RunUntilIdle();
  EXPECT_EQ(h.engine.stats().prefix_hits, 99u * 16);
  EXPECT_GT(h.Ttft(other), h.Ttft(warm));
}

TEST(SimEngine, KvUsageRisesWithContextAndFallsAfterCompletion) {
  Harness h(SmallConfig());
  EXPECT_EQ(h.engine.KvUsage(), 0.0);
  h.Add(800, 50);
  h.Step();
  double one = h.engine.KvUsage();
  EXPECT_NEAR(one, 50.0 / 1000, 1e-9);  // 800 tokens = 50 blocks
  h.Add(800, 50);
  h.Add(800, 50);
  h.Step();
  double three = h.engine.KvUsage();
  EXPECT_GT(three, one * 2.5);
  h.RunUntilIdle();
  EXPECT_EQ(h.engine.KvUsage(), 0.0);
}

TEST(SimEngine, MaxNumSeqsCapsRunning) {
  auto cfg = SmallConfig();
  cfg.max_num_seqs = 3;
  Harness h(cfg);
  for (int i = 0; i < 10; ++i) h.Add(20, 10);
  h.Step();
  EXPECT_EQ(h.engine.num_running(), 3);
  EXPECT_EQ(h.engine.num_waiting(), 7);
  int max_running = 0;
  while (h.engine.HasWork()) {
    h.Step();
    max_running = std::max(max_running, h.engine.num_running());
  }
  EXPECT_EQ(max_running, 3);
  EXPECT_EQ(h.engine.stats().finished, 10u);
}

TEST(SimEngine, PriorityPolicyServesLowerValueFirst) {
  auto cfg = SmallConfig();
  cfg.max_num_seqs = 1;
  cfg.policy = SchedulingPolicy::kPriority;
  Harness h(cfg);
  uint64_t first = h.Add(20, 5, 10);
  h.Step();  // `first` is running
  uint64_t low = h.Add(20, 5, 10);
  uint64_t high = h.Add(20, 5, 0);
  h.RunUntilIdle();
  EXPECT_LT(h.first_token[first], h.first_token[high]);
  EXPECT_LT(h.first_token[high], h.first_token[low]);
}

TEST(SimEngine, PriorityPolicyPreemptsLowerPriorityWhenTheBatchIsFull) {
  auto cfg = SmallConfig();
  cfg.max_num_seqs = 2;
  cfg.policy = SchedulingPolicy::kPriority;
  Harness h(cfg);
  uint64_t bg1 = h.Add(20, 200, 1);  // sheddable work fills the batch
  uint64_t bg2 = h.Add(20, 200, 1);
  h.Step();
  h.Step();
  ASSERT_EQ(h.engine.num_running(), 2);
  uint64_t rt = h.Add(20, 5, 0);  // real-time arrives
  h.Step();
  // It runs at once (its prefill and first token in this step), not after 200 decode steps.
  EXPECT_EQ(h.tokens[rt], 1);
  EXPECT_EQ(h.engine.num_running(), 2);
  EXPECT_EQ(h.engine.num_waiting(), 1);
  EXPECT_EQ(h.engine.stats().preemptions, 1u);
  h.RunUntilIdle();
  // The victim was recomputed and still finished with all its tokens.
  EXPECT_EQ(h.engine.stats().finished, 3u);
  EXPECT_LT(h.finished[rt], h.finished[bg1]);
  EXPECT_LT(h.finished[rt], h.finished[bg2]);

  // Equal priorities never preempt each other.
  Harness same(cfg);
  same.Add(20, 50, 1);
  same.Add(20, 50, 1);
  same.Step();
  same.Add(20, 5, 1);
  same.Step();
  EXPECT_EQ(same.engine.stats().preemptions, 0u);
}

TEST(SimEngine, FcfsServesInArrivalOrder) {
  auto cfg = SmallConfig();
  cfg.max_num_seqs = 1;
  Harness h(cfg);
  h.Add(20, 5, 10);
  h.Step();
  uint64_t a = h.Add(20, 5, 10);
  uint64_t b = h.Add(20, 5, 0);
  h.RunUntilIdle();
  EXPECT_LT(h.first_token[a], h.first_token[b]);
}

TEST(SimEngine, PreemptsUnderKvPressureAndStillFinishes) {
  auto cfg = SmallConfig();
  cfg.num_gpu_blocks = 40;  // 640 tokens
  Harness h(cfg);
  // Four requests of 100 prompt + 100 output tokens need 13 blocks each at the end: 52 > 40.
  std::vector<uint64_t> ids;
  for (int i = 0; i < 4; ++i) ids.push_back(h.Add(100, 100));
  int max_preempted_step = 0;
  while (h.engine.HasWork()) max_preempted_step = std::max(max_preempted_step, h.Step().preempted);
  EXPECT_GT(h.engine.stats().preemptions, 0u);
  EXPECT_GE(max_preempted_step, 1);
  for (uint64_t id : ids) EXPECT_EQ(h.tokens[id], 100);
  EXPECT_EQ(h.engine.num_free_blocks(), 40);
}

TEST(SimEngine, RejectsRequestsLargerThanTheCache) {
  auto cfg = SmallConfig();
  cfg.num_gpu_blocks = 10;
  ManualClock clock;
  Engine e(cfg, clock);
  std::string err;
  RequestSpec spec;
  spec.prompt_tokens = 150;
  spec.max_tokens = 20;
  EXPECT_EQ(e.Add(spec, &err), 0u);
  EXPECT_NE(err.find("maximum context length is 160"), std::string::npos) << err;
}

TEST(SimEngine, LoraAdapterWaitsForASlot) {
  auto cfg = SmallConfig();
  cfg.max_loras = 1;
  Harness h(cfg);
  uint64_t a = h.Add(20, 20, 0, "alpha");
  const auto& r1 = h.Step();
  EXPECT_EQ(r1.lora_loads, 1);
  uint64_t b = h.Add(20, 5, 0, "beta");
  uint64_t base = h.Add(20, 5);
  h.Step();
  EXPECT_EQ(h.engine.RunningLoras(), std::vector<std::string>{"alpha"});
  EXPECT_EQ(h.engine.WaitingLoras(), std::vector<std::string>{"beta"});
  EXPECT_TRUE(h.engine.Get(base)->running);  // the base model does not need a slot
  EXPECT_FALSE(h.engine.Get(b)->running);
  h.RunUntilIdle();
  EXPECT_LT(h.finished[a], h.first_token[b]);
  EXPECT_EQ(h.tokens[b], 5);
}

TEST(SimEngine, LoraLoadCostsTime) {
  auto cfg = SmallConfig();
  Harness with(cfg), without(cfg);
  uint64_t x = with.Add(20, 1, 0, "alpha");
  uint64_t y = without.Add(20, 1);
  with.RunUntilIdle();
  without.RunUntilIdle();
  EXPECT_NEAR(with.Ttft(x) - without.Ttft(y), cfg.latency.lora_load_ms / 1e3, 1e-6);
}

TEST(SimEngine, AbortFreesBlocksAndStopsTokens) {
  Harness h(SmallConfig());
  uint64_t a = h.Add(800, 1000);
  uint64_t b = h.Add(800, 1000);
  h.Step();
  h.Step();
  EXPECT_LT(h.engine.num_free_blocks(), 1000);
  EXPECT_TRUE(h.engine.Abort(a));
  EXPECT_FALSE(h.engine.Abort(a));
  EXPECT_EQ(h.engine.num_running(), 1);
  int before = h.tokens[a];
  EXPECT_TRUE(h.engine.Abort(b));
  h.Step();
  EXPECT_EQ(h.tokens[a], before);
  EXPECT_EQ(h.engine.num_free_blocks(), 1000);
  EXPECT_FALSE(h.engine.HasWork());
}

TEST(SimEngine, ChunkedPrefillLetsDecodesProceed) {
  Harness h(SmallConfig());  // budget 2048 tokens per step
  uint64_t small = h.Add(10, 100);
  h.Step();
  uint64_t big = h.Add(10000, 1);
  // While the big prompt is prefilled in chunks, the small request keeps decoding each step.
  int steps = 0;
  while (!h.first_token.count(big)) {
    const auto& r = h.Step();
    EXPECT_LE(r.prefill_tokens, 2048 - 1);
    EXPECT_EQ(r.decode_seqs, 1);
    ++steps;
  }
  EXPECT_GE(steps, 5);
  EXPECT_GT(h.tokens[small], 5);
}

TEST(SimText, TokensAndChainedHashes) {
  EXPECT_EQ(CountTokens(""), 1);
  EXPECT_EQ(CountTokens("abcd"), 1);
  EXPECT_EQ(CountTokens("abcde"), 2);
  std::string a(200, 'a'), b = a;
  b[150] = 'b';
  auto ha = TextHashes(a, 16, 1), hb = TextHashes(b, 16, 1);
  ASSERT_EQ(ha.size(), 3u);  // 64 bytes per block
  EXPECT_EQ(ha[0], hb[0]);
  EXPECT_EQ(ha[1], hb[1]);
  EXPECT_NE(ha[2], hb[2]);
  EXPECT_NE(TextHashes(a, 16, 2)[0], ha[0]);  // seeded (model / adapter)
  EXPECT_EQ(FillerToken(7, 3), FillerToken(7, 3));
  EXPECT_EQ(EchoToken("hello world", 1), "o wo");
  EXPECT_EQ(EchoToken("hello world", 3), "");
  std::string utf8 = "ab\xc3\xa9\xc3\xa9xyz";  // "abééxyz": é is 2 bytes
  EXPECT_EQ(EchoToken(utf8, 0), "ab\xc3\xa9");
  EXPECT_EQ(EchoToken(utf8, 1), "\xc3\xa9xy");
  EXPECT_EQ(EchoToken(utf8, 2), "z");
}

TEST(SimScaledClock, RunsFasterThanItsBase) {
  ManualClock base(std::chrono::seconds(5));
  ScaledClock sim(base, 10);
  EXPECT_EQ(sim.Now(), Nanos{0});
  base.Advance(std::chrono::milliseconds(100));
  EXPECT_EQ(sim.Now(), std::chrono::milliseconds(1000));
  EXPECT_EQ(sim.ToBase(std::chrono::milliseconds(50)), std::chrono::milliseconds(5));
}

TEST(SimProfiles, DefaultIsTheCalibratedH100Preset) {
  const Profile* p = FindProfile("llama-3.1-8b-h100");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->engine.num_gpu_blocks, 25000);
  EXPECT_EQ(p->engine.max_num_seqs, 256);
  EXPECT_EQ(p->engine.max_num_batched_tokens, 8192);
  EXPECT_EQ(p->engine.block_size, 16);
  EXPECT_NE(FindProfile("tiny"), nullptr);
  EXPECT_EQ(FindProfile("nope"), nullptr);
}

// The calibrated presets reproduce the published figures they were fitted to (profiles.cc):
// decode step times at a small and a full batch, and a prefill under the measured TTFT.
TEST(SimProfiles, CalibratedPresetsReproduceTheirPublishedFigures) {
  struct Case {
    const char* name;
    double small_lo, small_hi;  // ms a decode step at 5 sequences
    double full_lo, full_hi;    // at 256 sequences of ~400 tokens
    double ttft_1369_max;       // one prefill step of 1,369 tokens stays under the measured TTFT
  };
  for (const Case& c : {Case{"llama-3.1-70b-fp8-h100-tp4", 11.8, 13.0, 22.5, 24.5, 125},
                        Case{"llama-3.1-8b-a100", 11.0, 12.0, 25.0, 29.0, 127}}) {
    SCOPED_TRACE(c.name);
    const Profile* p = FindProfile(c.name);
    ASSERT_NE(p, nullptr);
    const LatencyModel& m = p->engine.latency;
    EXPECT_GE(m.StepMs(0, 5, 5 * 400, 0), c.small_lo);
    EXPECT_LE(m.StepMs(0, 5, 5 * 400, 0), c.small_hi);
    EXPECT_GE(m.StepMs(0, 256, 256 * 400, 0), c.full_lo);
    EXPECT_LE(m.StepMs(0, 256, 256 * 400, 0), c.full_hi);
    EXPECT_LT(m.StepMs(1369, 0, 0, 0), c.ttft_1369_max);
    EXPECT_GT(m.StepMs(1369, 0, 0, 0), 0.5 * c.ttft_1369_max);
  }
}

}  // namespace
}  // namespace tidegate::sim

namespace tidegate::sim {
namespace {

// KV events mirror the cache: stored as prefill completes (chunk by chunk, chained to the block
// before), removed when a cached block is reallocated, all cleared on reset.
TEST(SimEngineKvEvents, StoredOnPrefillRemovedOnEvictionClearedOnReset) {
  EngineConfig cfg = SmallConfig();
  cfg.num_gpu_blocks = 12;
  cfg.max_num_batched_tokens = 64;  // 4 blocks a step: a 160-token prompt prefills in chunks
  ManualClock clock;
  Engine engine(cfg, clock);
  engine.EnableKvEvents();
  auto add = [&](const std::string& text) {
    RequestSpec spec;
    tokenizer::StandInTokenIds(text, &spec.token_ids);
    spec.prompt_tokens = static_cast<int>(spec.token_ids.size());
    spec.block_hashes = BlockHashes(spec.token_ids, 16, 1);
    spec.max_tokens = 1;
    std::string err;
    EXPECT_NE(engine.Add(std::move(spec), &err), 0u) << err;
  };
  add(std::string(640, 'a'));  // 160 tokens: 10 blocks
  std::vector<kvevents::Event> events;
  while (engine.HasWork()) {
    engine.Step();
    for (auto& e : engine.TakeKvEvents()) events.push_back(std::move(e));
  }
  // Three prefill chunks of 64, 64 and 32 tokens: 4, 4 and 2 full blocks.
  ASSERT_EQ(events.size(), 3u);
  const auto& first = std::get<kvevents::BlockStored>(events[0]);
  EXPECT_EQ(first.block_hashes.size(), 4u);
  EXPECT_FALSE(first.parent_block_hash);
  EXPECT_EQ(first.token_ids.size(), 64u);
  EXPECT_EQ(first.block_size, 16);
  const auto& second = std::get<kvevents::BlockStored>(events[1]);
  EXPECT_EQ(std::get<kvevents::BlockStored>(events[2]).block_hashes.size(), 2u);
  ASSERT_TRUE(second.parent_block_hash);
  EXPECT_EQ(*second.parent_block_hash, first.block_hashes.back());
  std::vector<uint64_t> stored;
  for (const auto& e : events)
    for (uint64_t h : std::get<kvevents::BlockStored>(e).block_hashes) stored.push_back(h);
  std::sort(stored.begin(), stored.end());
  EXPECT_EQ(stored, engine.CachedBlockHashes());
  // A different prompt needs the blocks: cached ones are evicted and reported.
  add(std::string(640, 'b'));
  std::vector<uint64_t> removed;
  while (engine.HasWork()) {
    engine.Step();
    for (auto& e : engine.TakeKvEvents())
      if (auto* r = std::get_if<kvevents::BlockRemoved>(&e))
        removed.insert(removed.end(), r->block_hashes.begin(), r->block_hashes.end());
  }
  EXPECT_FALSE(removed.empty());
  const std::vector<uint64_t> cached = engine.CachedBlockHashes();
  for (uint64_t h : removed) {
    EXPECT_TRUE(std::binary_search(stored.begin(), stored.end(), h));
    EXPECT_FALSE(std::binary_search(cached.begin(), cached.end(), h));
  }
  ASSERT_TRUE(engine.ResetPrefixCache());
  auto last = engine.TakeKvEvents();
  ASSERT_EQ(last.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<kvevents::AllBlocksCleared>(last[0]));
  EXPECT_TRUE(engine.CachedBlockHashes().empty());
  // Refused while a request waits, as vLLM refuses while blocks are in use.
  add(std::string(64, 'c'));
  EXPECT_FALSE(engine.ResetPrefixCache());
}

}  // namespace
}  // namespace tidegate::sim
