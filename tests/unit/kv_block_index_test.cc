// The precise block index (sched/kv_block_index.h) and precise-prefix-cache-scorer on hand-built
// events and pools.
#include "sched/kv_block_index.h"

#include <gtest/gtest.h>

#include "sched/framework.h"
#include "sched/picker.h"
#include "tokenizer/standin.h"

namespace tidegate::sched {
namespace {

constexpr size_t kBs = 4;

std::vector<uint32_t> Tokens(size_t n, uint32_t base = 1000) {
  std::vector<uint32_t> t;
  for (size_t i = 0; i < n; ++i) t.push_back(base + static_cast<uint32_t>(i));
  return t;
}

std::vector<uint64_t> Keys(const std::vector<uint32_t>& t, std::string_view adapter = "") {
  std::vector<uint64_t> k;
  KvBlockIndex::ChainKeys(KvBlockIndex::RootKey(adapter), t, kBs, 1 << 20, &k);
  return k;
}

// Match() for one prompt: endpoint → weighted run.
std::map<uint32_t, double> MatchAll(const KvBlockIndex& idx, const std::vector<uint64_t>& keys) {
  std::vector<double> m(16, 0);
  std::vector<uint32_t> touched;
  idx.Match(keys, m, &touched);
  std::map<uint32_t, double> out;
  for (uint32_t t : touched) out[t] = m[t];
  return out;
}

TEST(KvBlockIndex, MapsEngineHashesToOwnKeysThroughTheParentChain) {
  KvBlockIndex idx;
  const auto t = Tokens(16);  // 4 blocks
  // The engine stores blocks 0-1 (prefill chunk 1), then 2-3 with block 1 as parent. Its hashes
  // are arbitrary: the index never needs to compute them.
  ASSERT_EQ(idx.Store(2, std::vector<uint64_t>{901, 902}, std::nullopt, std::span(t).subspan(0, 8),
                      kBs, "", "")
                .stored,
            2u);
  ASSERT_EQ(
      idx.Store(2, std::vector<uint64_t>{903, 904}, 902, std::span(t).subspan(8, 8), kBs, "", "")
          .stored,
      2u);
  EXPECT_EQ(idx.Blocks(2), 4u);
  EXPECT_EQ(idx.block_size(), kBs);
  EXPECT_EQ(MatchAll(idx, Keys(t)), (std::map<uint32_t, double>{{2, 4.0}}));
  // A prompt sharing the first 2 blocks only.
  auto other = t;
  other[9] = 7;
  EXPECT_EQ(MatchAll(idx, Keys(other)), (std::map<uint32_t, double>{{2, 2.0}}));
  // Another adapter's KV is not this one's.
  EXPECT_TRUE(MatchAll(idx, Keys(t, "sql")).empty());
  // An orphan (its parent unknown) cannot be keyed and is refused, not guessed.
  auto r = idx.Store(2, std::vector<uint64_t>{999}, 12345, std::span(t).subspan(0, 4), kBs, "", "");
  EXPECT_EQ(r.stored, 0u);
  EXPECT_EQ(r.orphaned, 1u);
  // Another block size is refused.
  EXPECT_EQ(idx.Store(3, std::vector<uint64_t>{1}, std::nullopt, t, 8, "", "").refused, 1u);
}

TEST(KvBlockIndex, RemovalsTiersAndClear) {
  KvBlockIndex idx;
  const auto t = Tokens(12);  // 3 blocks
  idx.Store(0, std::vector<uint64_t>{1, 2, 3}, std::nullopt, t, kBs, "", "GPU");
  idx.Store(1, std::vector<uint64_t>{11, 12, 13}, std::nullopt, t, kBs, "", "");
  idx.Store(1, std::vector<uint64_t>{11, 12, 13}, std::nullopt, t, kBs, "", "CPU");  // offloaded
  EXPECT_EQ(MatchAll(idx, Keys(t)), (std::map<uint32_t, double>{{0, 3.0}, {1, 3.0}}));
  // The tail evicted first (as engines do): the run shrinks.
  EXPECT_EQ(idx.Remove(0, std::vector<uint64_t>{3}, ""), 1u);
  EXPECT_EQ(MatchAll(idx, Keys(t))[0], 2.0);
  // Endpoint 1 drops the GPU copies; the CPU copies remain and weigh 0.8.
  idx.Remove(1, std::vector<uint64_t>{11, 12, 13}, "GPU");
  EXPECT_DOUBLE_EQ(MatchAll(idx, Keys(t))[1], 3 * 0.8);
  idx.Remove(1, std::vector<uint64_t>{11, 12, 13}, "CPU");
  EXPECT_EQ(idx.Blocks(1), 0u);
  EXPECT_EQ(MatchAll(idx, Keys(t)).count(1), 0u);
  // Unknown hashes are ignored.
  EXPECT_EQ(idx.Remove(1, std::vector<uint64_t>{77}, ""), 0u);
  idx.Clear(0);
  EXPECT_TRUE(MatchAll(idx, Keys(t)).empty());
  EXPECT_EQ(idx.TotalBlocks(), 0u);
  EXPECT_TRUE(idx.EngineHashes(0).empty());
}

// Two engine blocks with the same tokens (one key): the key's tier is the best one still held.
TEST(KvBlockIndex, TiersAreCountedPerEngineBlockOfAKey) {
  KvBlockIndex idx;
  const auto t = Tokens(4);
  idx.Store(0, std::vector<uint64_t>{1}, std::nullopt, t, kBs, "", "GPU");
  idx.Store(0, std::vector<uint64_t>{1}, std::nullopt, t, kBs, "", "CPU");
  idx.Store(0, std::vector<uint64_t>{2}, std::nullopt, t, kBs, "", "GPU");  // same key
  idx.Remove(0, std::vector<uint64_t>{1}, "GPU");
  EXPECT_DOUBLE_EQ(MatchAll(idx, Keys(t))[0], 1.0);  // block 2 is still on the GPU
  idx.Remove(0, std::vector<uint64_t>{2}, "GPU");
  EXPECT_DOUBLE_EQ(MatchAll(idx, Keys(t))[0], 0.8);               // only block 1's CPU copy is left
  EXPECT_EQ(idx.Remove(0, std::vector<uint64_t>{1}, "GPU"), 0u);  // not in that tier any more
  idx.Remove(0, std::vector<uint64_t>{1}, "CPU");
  EXPECT_TRUE(MatchAll(idx, Keys(t)).empty());
  EXPECT_EQ(idx.Blocks(0), 0u);
}

TEST(KvBlockIndex, OnlyAStoredBlockSetsTheBlockSize) {
  KvBlockIndex idx;
  const auto t = Tokens(16);
  EXPECT_EQ(idx.Store(0, std::vector<uint64_t>{1}, 99, t, 8, "", "").orphaned, 1u);
  EXPECT_EQ(idx.block_size(), 0u);  // an orphan does not pin it
  EXPECT_EQ(idx.Store(0, std::vector<uint64_t>{1}, std::nullopt, t, kBs, "", "").stored, 1u);
  EXPECT_EQ(idx.block_size(), kBs);
}

TEST(KvBlockIndex, CapsBlocksPerEndpoint) {
  KvBlockIndex idx(/*max_blocks_per_endpoint=*/2);
  const auto t = Tokens(12);
  auto r = idx.Store(0, std::vector<uint64_t>{1, 2, 3}, std::nullopt, t, kBs, "", "");
  EXPECT_EQ(r.stored, 2u);
  EXPECT_EQ(r.refused, 1u);
  EXPECT_EQ(idx.Blocks(0), 2u);
  EXPECT_EQ(idx.EngineHashes(0), (std::vector<uint64_t>{1, 2}));
}

TEST(KvBlockIndex, LiveFlagIsPerEndpointAndSurvivesClear) {
  KvBlockIndex idx;
  EXPECT_FALSE(idx.Live(5));
  idx.SetLive(5, true);
  idx.Clear(5);
  EXPECT_TRUE(idx.Live(5));
  EXPECT_FALSE(idx.Live(KvBlockIndex::kMaxEndpoints));  // out of range: never live
}

// The prompt's tokens and keys: the stand-in by default, the model's tokenizer when one is set
// (also giving the latency predictor exact counts).
TEST(SchedContextTokens, StandInByDefaultTheModelsTokenizerWhenSet) {
  std::vector<pool::EndpointConfig> one = {{"127.0.0.1", 9000}};
  pool::Pool pool(one);
  const std::string prompt(160, 'k');
  RequestInfo r;
  r.id = 1;
  r.prompt = prompt;
  SchedContext ctx;
  ctx.Reset(r, pool, Nanos(0));
  EXPECT_EQ(ctx.PromptTokens().size(), 40u);
  EXPECT_EQ(ctx.PromptTokenCount(), 40);
  EXPECT_EQ(ctx.PromptTokenKeys(16, 100).size(), 2u);  // 40 tokens: 2 full blocks of 16
  SetPromptTokenizer([](const RequestInfo& req, std::vector<uint32_t>* out) {
    for (size_t i = 0; i < req.prompt.size() / 2; ++i) out->push_back(7);  // 2 bytes a token
  });
  r.id = 2;
  ctx.Reset(r, pool, Nanos(0));
  EXPECT_EQ(ctx.PromptTokens().size(), 80u);
  EXPECT_EQ(ctx.PromptTokenCount(), 80);
  EXPECT_EQ(ctx.PromptTokenKeys(16, 100).size(), 5u);
  EXPECT_EQ(ctx.PromptTokenKeys(16, 3).size(), 3u);  // at most max_blocks
  // Keys depend on the adapter: another adapter's KV is not this one's.
  const uint64_t base = ctx.PromptTokenKeys(16, 3)[0];
  r.id = 3;
  r.adapter = "sql";
  ctx.Reset(r, pool, Nanos(0));
  EXPECT_NE(ctx.PromptTokenKeys(16, 3)[0], base);
  SetPromptTokenizer(nullptr);
  EXPECT_FALSE(HasPromptTokenizer());
}

// A policy that needs no token ids does not tokenize: gie-default's pick with a tokenizer set
// (its approximate prefix index hashes characters; the prefix check counts tokens as estimated).
TEST(SchedContextTokens, APickThatNeedsNoTokenIdsDoesNotTokenize) {
  std::vector<pool::EndpointConfig> two = {{"127.0.0.1", 9000}, {"127.0.0.1", 9001}};
  pool::Pool pool(two);
  static int calls = 0;
  calls = 0;
  SetPromptTokenizer([](const RequestInfo& req, std::vector<uint32_t>* out) {
    ++calls;
    out->assign(req.prompt.size() / 2, 7);
  });
  auto picker = MakePicker("gie-default");
  ASSERT_TRUE(picker);
  const std::string prompt(4000, 'p');
  RequestInfo r;
  r.id = 1;
  r.prompt = prompt;
  EXPECT_FALSE(picker->Pick(r, pool, Nanos(0)).empty());
  EXPECT_EQ(calls, 0);
  // The latency-predicting default counts tokens exactly, so it does tokenize (once).
  auto predicting = MakePicker("tidegate-default");
  r.id = 2;
  EXPECT_FALSE(predicting->Pick(r, pool, Nanos(0)).empty());
  EXPECT_EQ(calls, 1);
  SetPromptTokenizer(nullptr);
}

// The scorer reads the shared index: precise where the feed is live, approximate elsewhere.
class PreciseScorerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < 3; ++i) {
      pool::EndpointConfig c;
      c.host = "127.0.0.1";
      c.port = static_cast<uint16_t>(9100 + i);
      cfgs_.push_back(c);
    }
    pool_ = std::make_unique<pool::Pool>(cfgs_);
    for (uint32_t i = 0; i < 3; ++i) {
      SharedKvBlockIndex().Clear(i);
      SharedKvBlockIndex().SetLive(i, false);
    }
    std::unique_ptr<Plugin> p;
    ASSERT_EQ(PluginRegistry::Default().Create("precise-prefix-cache-scorer", "p", Params(), &p),
              "");
    scorer_.reset(static_cast<Scorer*>(p.release()));
  }
  void TearDown() override {
    for (uint32_t i = 0; i < 3; ++i) {
      SharedKvBlockIndex().Clear(i);
      SharedKvBlockIndex().SetLive(i, false);
    }
  }
  std::vector<double> Score(const RequestInfo& r) {
    SchedContext ctx;
    ctx.Reset(r, *pool_, Nanos(0));
    std::vector<Candidate> cands(3);
    for (uint32_t i = 0; i < 3; ++i) {
      cands[i].index = i;
      cands[i].endpoint = &pool_->at(i);
    }
    std::vector<double> out(3, 0);
    scorer_->Score(ctx, cands, out);
    return out;
  }
  std::vector<pool::EndpointConfig> cfgs_;
  std::unique_ptr<pool::Pool> pool_;
  std::unique_ptr<Scorer> scorer_;
};

TEST_F(PreciseScorerTest, ScoresTheCachedShareOnLiveEndpoints) {
  const std::string prompt(16 * 4 * 8, 'q');  // 8 blocks of 16 stand-in tokens
  std::vector<uint32_t> ids;
  tokenizer::StandInTokenIds(prompt, &ids);
  // Endpoint 1's engine holds the first 6 blocks, endpoint 2's the first 2.
  std::vector<uint64_t> h1 = {1, 2, 3, 4, 5, 6}, h2 = {21, 22};
  KvBlockIndex& idx = SharedKvBlockIndex();
  idx.Store(1, h1, std::nullopt, std::span(ids).subspan(0, 96), 16, "", "");
  idx.Store(2, h2, std::nullopt, std::span(ids).subspan(0, 32), 16, "", "");
  RequestInfo r;
  r.id = 1;
  r.prompt = prompt;
  // No feed live yet: the approximate fallback, which has seen nothing: all zero.
  EXPECT_EQ(Score(r), (std::vector<double>{0, 0, 0}));
  for (uint32_t i = 0; i < 3; ++i) idx.SetLive(i, true);
  r.id = 2;
  auto s = Score(r);
  EXPECT_DOUBLE_EQ(s[0], 0);
  EXPECT_DOUBLE_EQ(s[1], 6.0 / 8.0);
  EXPECT_DOUBLE_EQ(s[2], 2.0 / 8.0);
  // Endpoint 1's feed goes down: it is scored by the approximate index (which never saw this
  // prompt sent there), the others stay precise.
  idx.SetLive(1, false);
  r.id = 3;
  s = Score(r);
  EXPECT_DOUBLE_EQ(s[1], 0);
  EXPECT_DOUBLE_EQ(s[2], 2.0 / 8.0);
}

TEST_F(PreciseScorerTest, FallbackLearnsFromWhatWasSent) {
  const std::string prompt(16 * 4 * 8, 'z');
  RequestInfo r;
  r.id = 10;
  r.prompt = prompt;
  SchedContext ctx;
  ctx.Reset(r, *pool_, Nanos(0));
  scorer_->OnSent(ctx, 0);  // the request went to endpoint 0 (no feed is live)
  r.id = 11;
  auto s = Score(r);
  EXPECT_GT(s[0], 0.9);
  EXPECT_EQ(s[1], 0);
}

// What an engine reports lags what it was sent by a prefill: a live endpoint that was just sent a
// prompt already scores for it (the recent-sends index), before any event says it holds it.
TEST_F(PreciseScorerTest, ALiveEndpointScoresWhatItWasJustSent) {
  for (uint32_t i = 0; i < 3; ++i) SharedKvBlockIndex().SetLive(i, true);
  const std::string prompt(4096, 'r');  // 64 blocks of 16 stand-in tokens: 4 coarse ones
  RequestInfo r;
  r.id = 20;
  r.prompt = prompt;
  EXPECT_EQ(Score(r), (std::vector<double>{0, 0, 0}));
  SchedContext ctx;
  ctx.Reset(r, *pool_, Nanos(0));
  scorer_->OnSent(ctx, 2);
  r.id = 21;
  auto s = Score(r);
  EXPECT_GT(s[2], 0.9);
  EXPECT_EQ(s[0], 0);
  // A request that never reached it is taken back.
  ctx.Reset(r, *pool_, Nanos(0));
  scorer_->OnNotServed(ctx, 2);
  r.id = 22;
  EXPECT_EQ(Score(r)[2], 0);
}

}  // namespace
}  // namespace tidegate::sched
