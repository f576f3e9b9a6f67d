#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <map>
#include <set>
#include <string>

#include "sched/config.h"
#include "sched/framework.h"
#include "sched/picker.h"
#include "sched/prefix_index.h"

namespace tidegate::sched {
namespace {

using std::chrono::seconds;
const Nanos kNow = seconds(1000);

pool::Pool MakePool(int n) {
  std::vector<pool::EndpointConfig> eps;
  for (int i = 0; i < n; ++i) eps.push_back({"10.0.0.1", static_cast<uint16_t>(8000 + i)});
  return pool::Pool(eps);
}

void SetLoad(pool::Pool& pool, size_t i, double waiting, double kv, double running = 0,
             Nanos at = kNow) {
  pool::EndpointMetrics m;
  m.waiting = waiting;
  m.kv_usage = kv;
  m.running = running;
  m.has_kv = true;
  m.scrape_time = at;
  pool.at(i).PublishMetrics(std::move(m));
}

std::unique_ptr<Picker> Only(const std::vector<PluginSpec>& plugins) {
  Profile p;
  EXPECT_EQ(BuildProfile("test", plugins, &p), "");
  return MakeProfilePicker(std::move(p), "test");
}

std::string Prompt(char seed, size_t chars) {
  std::string s;
  for (size_t i = 0; i < chars; ++i) s.push_back(static_cast<char>('a' + (seed * 7 + i * 13) % 26));
  return s;
}

TEST(QueueScorer, PrefersShorterQueue) {
  auto pool = MakePool(3);
  SetLoad(pool, 0, 10, 0);
  SetLoad(pool, 1, 2, 0);
  SetLoad(pool, 2, 6, 0);
  auto picker = Only({{"queue-scorer", 1}});
  auto r = picker->Pick({}, pool, kNow);
  ASSERT_EQ(r.count, 3u);
  EXPECT_EQ(r.order[0], 1u);
  EXPECT_EQ(r.order[1], 2u);
  EXPECT_EQ(r.order[2], 0u);
}

TEST(QueueScorer, CountsRequestsRoutedSinceTheScrape) {
  auto pool = MakePool(2);
  SetLoad(pool, 0, 0, 0);
  SetLoad(pool, 1, 0, 0);
  auto picker = Only({{"queue-scorer", 1}});
  // A burst within one scrape interval alternates instead of piling onto one endpoint.
  std::map<uint32_t, int> n;
  for (int i = 0; i < 10; ++i) n[picker->Pick({}, pool, kNow).order[0]]++;
  EXPECT_EQ(n[0], 5);
  EXPECT_EQ(n[1], 5);
}

TEST(KvCacheScorer, PrefersFreeCache) {
  auto pool = MakePool(3);
  SetLoad(pool, 0, 0, 0.9);
  SetLoad(pool, 1, 0, 0.1);
  SetLoad(pool, 2, 0, 0.5);
  auto r = Only({{"kv-cache-utilization-scorer", 1}})->Pick({}, pool, kNow);
  EXPECT_EQ(r.order[0], 1u);
  EXPECT_EQ(r.order[1], 2u);
}

TEST(RunningAndActiveScorers, PreferLessBusy) {
  auto pool = MakePool(2);
  SetLoad(pool, 0, 0, 0, /*running=*/8);
  SetLoad(pool, 1, 0, 0, /*running=*/1);
  EXPECT_EQ(Only({{"running-requests-scorer", 1}})->Pick({}, pool, kNow).order[0], 1u);
  pool.at(1).AddInFlight(4);
  EXPECT_EQ(Only({{"active-request-scorer", 1}})->Pick({}, pool, kNow).order[0], 0u);
}

TEST(Picker, BreaksTiesRandomly) {
  auto pool = MakePool(4);
  for (int i = 0; i < 4; ++i) SetLoad(pool, i, 1, 0.5);
  auto picker = Only({{"kv-cache-utilization-scorer", 1}});
  std::map<uint32_t, int> firsts;
  for (int i = 0; i < 4000; ++i) firsts[picker->Pick({}, pool, kNow).order[0]]++;
  ASSERT_EQ(firsts.size(), 4u);
  for (auto& [ep, n] : firsts) EXPECT_GT(n, 700) << "endpoint " << ep;
}

TEST(Picker, FallbackListHasDistinctAvailableEndpoints) {
  auto pool = MakePool(6);
  for (int i = 0; i < 6; ++i) SetLoad(pool, i, i, 0);
  pool.at(0).RecordConnectFailure(kNow);  // in back-off
  auto r = Only({{"queue-scorer", 1}})->Pick({}, pool, kNow);
  ASSERT_EQ(r.count, PickResult::kMaxChoices);
  std::set<uint32_t> seen(r.order.begin(), r.order.begin() + r.count);
  EXPECT_EQ(seen.size(), r.count);
  EXPECT_EQ(seen.count(0), 0u);
  EXPECT_EQ(r.order[0], 1u);
}

TEST(Picker, WeightsCombineScores) {
  auto pool = MakePool(2);
  SetLoad(pool, 0, 0, 0.9);  // short queue, full cache
  SetLoad(pool, 1, 4, 0.0);  // long queue, empty cache
  // queue: ep0 1, ep1 0; kv: ep0 0.1, ep1 1.0
  auto q_heavy = Only({{"queue-scorer", 3}, {"kv-cache-utilization-scorer", 1}});
  EXPECT_EQ(q_heavy->Pick({}, pool, kNow).order[0], 0u);
  auto kv_heavy = Only({{"queue-scorer", 1}, {"kv-cache-utilization-scorer", 3}});
  EXPECT_EQ(kv_heavy->Pick({}, pool, kNow).order[0], 1u);
}

TEST(StaleFilter, DropsStaleEndpointsUnlessAllAreStale) {
  auto pool = MakePool(3);
  SetLoad(pool, 0, 0, 0, 0, kNow - seconds(10));  // old
  SetLoad(pool, 1, 50, 0.95);                     // fresh but busy
  pool.at(2).RecordScrapeError(kNow, "timeout");  // never scraped + failing
  auto picker = Only({{"stale-filter", 0}, {"queue-scorer", 1}});
  auto r = picker->Pick({}, pool, kNow);
  ASSERT_EQ(r.count, 1u);
  EXPECT_EQ(r.order[0], 1u);
  // All stale: route blind rather than refuse.
  auto all_stale = MakePool(2);
  EXPECT_EQ(picker->Pick({}, all_stale, kNow).count, 2u);
}

TEST(SaturationFilter, OnlyAffectsSheddableRequests) {
  auto pool = MakePool(2);
  SetLoad(pool, 0, 9, 0);  // saturated: 9/5
  SetLoad(pool, 1, 1, 0.2);
  auto picker = Only({{"saturation-filter", 0}, {"kv-cache-utilization-scorer", 1}});
  RequestInfo shed;
  shed.priority = -1;
  auto r = picker->Pick(shed, pool, kNow);
  ASSERT_EQ(r.count, 1u);
  EXPECT_EQ(r.order[0], 1u);
  SetLoad(pool, 1, 0, 0.85);  // saturated by KV
  EXPECT_TRUE(picker->Pick(shed, pool, kNow).empty());
  EXPECT_EQ(picker->Pick({}, pool, kNow).count, 2u);  // priority 0 is never filtered
}

TEST(ModelFilter, DropsEndpointsThatDoNotServeTheModel) {
  auto pool = MakePool(3);
  auto publish = [&](size_t i, std::vector<std::string> models, int max_lora,
                     std::vector<std::string> running) {
    pool::EndpointMetrics m;
    m.models = std::move(models);
    m.has_lora_info = max_lora >= 0;
    m.max_lora = std::max(0, max_lora);
    m.running_lora_adapters = std::move(running);
    m.scrape_time = kNow;
    pool.at(i).PublishMetrics(std::move(m));
  };
  publish(0, {"llama"}, 0, {});
  publish(1, {"mistral"}, -1, {});
  publish(2, {"llama"}, 2, {"sql"});
  auto picker = Only({{"model-filter", 0}});
  RequestInfo req;
  req.model = "llama";
  auto r = picker->Pick(req, pool, kNow);
  EXPECT_EQ(r.count, 2u);
  for (uint32_t k = 0; k < r.count; ++k) EXPECT_NE(r.order[k], 1u);
  req.model = "mistral";
  r = picker->Pick(req, pool, kNow);
  ASSERT_EQ(r.count, 2u);  // ep1 serves it; ep2 can load LoRA adapters under that name
  req.model = "llama";
  req.adapter = "sql";
  r = picker->Pick(req, pool, kNow);
  ASSERT_EQ(r.count, 1u);  // ep0 has LoRA disabled, ep1 serves another model
  EXPECT_EQ(r.order[0], 2u);
}

TEST(LoraAffinityScorer, LoadedThenFreeSlotThenWaiting) {
  auto pool = MakePool(4);
  auto publish = [&](size_t i, int max_lora, std::vector<std::string> running,
                     std::vector<std::string> waiting) {
    pool::EndpointMetrics m;
    m.has_lora_info = true;
    m.max_lora = max_lora;
    m.running_lora_adapters = std::move(running);
    m.waiting_lora_adapters = std::move(waiting);
    m.scrape_time = kNow;
    pool.at(i).PublishMetrics(std::move(m));
  };
  publish(0, 2, {"c", "b"}, {});     // full, no adapter → 0
  publish(1, 2, {"x", "b"}, {"a"});  // waiting → 0.6
  publish(2, 4, {"b"}, {});          // free slot → 0.8
  publish(3, 2, {"a", "c"}, {});     // loaded → 1.0
  auto picker = Only({{"lora-affinity-scorer", 1}});
  RequestInfo req;
  req.adapter = "a";
  auto r = picker->Pick(req, pool, kNow);
  ASSERT_EQ(r.count, 4u);
  EXPECT_EQ(r.order[0], 3u);
  EXPECT_EQ(r.order[1], 2u);
  EXPECT_EQ(r.order[2], 1u);
  EXPECT_EQ(r.order[3], 0u);
}

TEST(LoraAffinityScorer, AnAdapterNamedAsTheModelIsRecognised) {
  auto pool = MakePool(2);
  auto publish = [&](size_t i, std::vector<std::string> adapters,
                     std::vector<std::string> running) {
    pool::EndpointMetrics m;
    m.has_lora_info = true;
    m.max_lora = 1;
    m.models = {"llama"};
    m.lora_adapters = std::move(adapters);
    m.running_lora_adapters = std::move(running);
    m.scrape_time = kNow;
    pool.at(i).PublishMetrics(std::move(m));
  };
  publish(0, {"sql"}, {"other"});  // serves the adapter, but its only slot is busy → 0
  publish(1, {"sql"}, {"sql"});    // adapter loaded → 1.0
  auto picker = Only({{"lora-affinity-scorer", 1}});
  RequestInfo req;
  req.model = "sql";  // OpenAI style: the adapter is requested as the model
  for (int i = 0; i < 20; ++i) EXPECT_EQ(picker->Pick(req, pool, kNow).order[0], 1u);
  // A base-model request is not scored by LoRA affinity (random tie-break between both).
  req.model = "llama";
  int first0 = 0;
  for (int i = 0; i < 200; ++i) first0 += picker->Pick(req, pool, kNow).order[0] == 0u;
  EXPECT_GT(first0, 40);
  EXPECT_LT(first0, 160);
}

TEST(PrefixCacheScorer, RepeatedPromptGoesBackToTheSameEndpoint) {
  auto pool = MakePool(8);
  for (int i = 0; i < 8; ++i) SetLoad(pool, i, 0, 0.1);
  auto picker = MakePicker("gie-default");
  ASSERT_NE(picker, nullptr);
  std::string prompt = Prompt(1, 4000);
  RequestInfo req;
  req.model = "llama";
  req.prompt = prompt;
  uint32_t first = picker->Pick(req, pool, kNow).order[0];
  // Re-scrape so the queue scorer's routed-since-scrape term is neutral again.
  for (int i = 0; i < 8; ++i) SetLoad(pool, i, 0, 0.1);
  for (int k = 0; k < 20; ++k) {
    EXPECT_EQ(picker->Pick(req, pool, kNow).order[0], first);
    for (int i = 0; i < 8; ++i) SetLoad(pool, i, 0, 0.1);
  }
  // A different model name seeds the hashes differently: no affinity.
  std::map<uint32_t, int> other;
  for (int k = 0; k < 200; ++k) {
    std::string p = Prompt(static_cast<char>(k + 2), 4000);
    RequestInfo r2;
    r2.model = "llama";
    r2.prompt = p;
    other[picker->Pick(r2, pool, kNow).order[0]]++;
    for (int i = 0; i < 8; ++i) SetLoad(pool, i, 0, 0.1);
  }
  EXPECT_GE(other.size(), 6u);  // fresh prompts spread out
}

// An endpoint that left the pool (Picker::OnEndpointGone) keeps no affinity: its slot may hold
// another server later.
TEST(PrefixCacheScorer, ForgetsAnEndpointThatLeftThePool) {
  auto pool = MakePool(2);
  auto picker = Only({{"prefix-cache-scorer", 10}, {"queue-scorer", 1}});
  RequestInfo r;
  r.model = "m";
  const std::string prompt = Prompt(9, 2000);
  r.prompt = prompt;
  SetLoad(pool, 0, 0, 0);
  SetLoad(pool, 1, 4, 0);
  ASSERT_EQ(picker->Pick(r, pool, kNow).order[0], 0u);  // no affinity yet: the shorter queue
  SetLoad(pool, 0, 4, 0);
  SetLoad(pool, 1, 0, 0);
  EXPECT_EQ(picker->Pick(r, pool, kNow).order[0], 0u);  // affinity outweighs the queue
  picker->OnEndpointGone(0);
  EXPECT_EQ(picker->Pick(r, pool, kNow).order[0], 1u);  // forgotten: the queue decides
}

TEST(PrefixCacheScorer, SharedPrefixScoresPartialMatch) {
  auto pool = MakePool(2);
  SetLoad(pool, 0, 0, 0.5);
  SetLoad(pool, 1, 0, 0.5);
  auto picker = Only({{"prefix-cache-scorer", 1}});
  std::string system = Prompt(3, 640);  // 10 blocks
  std::string a = system + Prompt(4, 640);
  RequestInfo ra;
  ra.model = "m";
  ra.prompt = a;
  uint32_t first = picker->Pick(ra, pool, kNow).order[0];
  std::string b = system + Prompt(5, 640);  // shares 10 of 20 blocks
  RequestInfo rb;
  rb.model = "m";
  rb.prompt = b;
  EXPECT_EQ(picker->Pick(rb, pool, kNow).order[0], first);
  // Another model never matches.
  RequestInfo rc = ra;
  rc.model = "other";
  std::map<uint32_t, int> n;
  for (int k = 0; k < 400; ++k)
    n[Only({{"prefix-cache-scorer", 1}})->Pick(rc, pool, kNow).order[0]]++;
  EXPECT_EQ(n.size(), 2u);
}

TEST(PrefixIndex, MatchCountsLeadingBlocksAndEvictsLru) {
  PrefixIndex idx(4);
  std::vector<uint64_t> a = {1, 2, 3}, b = {1, 2, 9};
  idx.Record(0, a);
  idx.Record(1, b);
  std::vector<uint32_t> matched(2, 0), touched;
  idx.Match(a, matched, &touched);
  EXPECT_EQ(matched[0], 3u);
  EXPECT_EQ(matched[1], 2u);
  EXPECT_EQ(touched.size(), 2u);
  // Endpoint 0 capacity 4: recording 3 new blocks evicts the oldest unused ones.
  idx.Record(0, std::vector<uint64_t>{7, 8, 10});
  EXPECT_LE(idx.BlocksHeld(0), 4u);
  std::fill(matched.begin(), matched.end(), 0);
  touched.clear();
  idx.Match(a, matched, &touched);
  EXPECT_LT(matched[0], 3u);
}

TEST(PrefixIndex, EachEndpointCanHaveTheCapacityItsEngineReports) {
  PrefixIndex idx(100);
  std::vector<uint64_t> blocks;
  for (uint64_t h = 1; h <= 50; ++h) blocks.push_back(h);
  idx.Record(0, blocks);
  idx.Record(1, blocks, 10);  // a server whose engine reports room for 10 blocks
  EXPECT_EQ(idx.CapacityOf(0), 100u);
  EXPECT_EQ(idx.CapacityOf(1), 10u);
  EXPECT_EQ(idx.BlocksHeld(0), 50u);
  EXPECT_LE(idx.BlocksHeld(1), 10u);
  std::vector<uint32_t> matched(2, 0), touched;
  idx.Match(blocks, matched, &touched);
  EXPECT_EQ(matched[0], 50u);
  EXPECT_EQ(matched[1], 0u);                     // its first blocks were evicted: no leading match
  idx.Record(0, std::vector<uint64_t>{99}, 20);  // shrinking evicts at once
  EXPECT_LE(idx.BlocksHeld(0), 20u);
}

TEST(PrefixIndex, ChainedHashesDependOnModelAndPrefix) {
  std::vector<uint64_t> x, y, z;
  std::string p = Prompt(1, 256);
  ChainedBlockHashes("m1", p, 64, 256, &x);
  ChainedBlockHashes("m2", p, 64, 256, &y);
  std::string q = p;
  q[0] = q[0] == 'a' ? 'b' : 'a';
  ChainedBlockHashes("m1", q, 64, 256, &z);
  ASSERT_EQ(x.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_NE(x[i], y[i]);
    EXPECT_NE(x[i], z[i]);  // a change in block 0 changes every later block
  }
  std::vector<uint64_t> partial;
  ChainedBlockHashes("m1", p.substr(0, 100), 64, 256, &partial);
  ASSERT_EQ(partial.size(), 1u);
  EXPECT_EQ(partial[0], x[0]);
}

TEST(SessionAffinityScorer, SendsTheSessionBackToItsEndpoint) {
  auto pool = MakePool(5);
  for (int i = 0; i < 5; ++i) SetLoad(pool, i, 0, 0);
  auto picker = Only({{"session-affinity-scorer", 1}});
  RequestInfo req;
  req.session_id = "conversation-42";
  uint32_t first = picker->Pick(req, pool, kNow).order[0];
  for (int k = 0; k < 50; ++k) EXPECT_EQ(picker->Pick(req, pool, kNow).order[0], first);
}

TEST(Policies, AllNamesConstruct) {
  for (const auto& n : PickerNames()) {
    auto p = MakePicker(n);
    ASSERT_NE(p, nullptr) << n;
    EXPECT_EQ(p->name(), n);
  }
  EXPECT_EQ(MakePicker("nope"), nullptr);
  auto pool = MakePool(3);
  for (int i = 0; i < 3; ++i) SetLoad(pool, i, i, 0.1 * i);
  RequestInfo req;
  req.model = "m";
  req.session_id = "s";
  std::string prompt = Prompt(9, 1000);
  req.prompt = prompt;
  auto r = MakePicker("tidegate-default")->Pick(req, pool, kNow);
  ASSERT_EQ(r.count, 3u);
  EXPECT_EQ(r.order[0], 0u);
}

TEST(SchedulerConfig, ParsesGieStyleYaml) {
  std::unique_ptr<Picker> picker;
  std::string err = ParseSchedulerConfig(R"(
plugins:
- type: queue-scorer
- type: kv-cache-utilization-scorer
  name: kv
- type: prefix-cache-scorer
  parameters:
    blockSize: 64
    lruCapacityPerServer: 1000
- type: stale-filter
- type: max-score-picker
- type: single-profile-handler
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: stale-filter
  - pluginRef: queue-scorer
    weight: 2
  - pluginRef: kv
    weight: 2
  - pluginRef: prefix-cache-scorer
    weight: 3
  - pluginRef: max-score-picker
saturationDetector:
  queueDepthThreshold: 10
  kvCacheUtilThreshold: 0.9
  metricsStalenessThreshold: 500ms
)",
                                         &picker);
  ASSERT_EQ(err, "");
  ASSERT_NE(picker, nullptr);
  EXPECT_EQ(picker->name(), "default");
  auto pool = MakePool(2);
  SetLoad(pool, 0, 5, 0.5);
  SetLoad(pool, 1, 0, 0.1);
  EXPECT_EQ(picker->Pick({}, pool, kNow).order[0], 1u);
  // The configured staleness limit (500 ms) applies.
  SetLoad(pool, 1, 0, 0.1, 0, kNow - std::chrono::milliseconds(700));
  auto r = picker->Pick({}, pool, kNow);
  ASSERT_EQ(r.count, 1u);
  EXPECT_EQ(r.order[0], 0u);

  Profile profile;
  ASSERT_EQ(ParseSchedulerProfile(YAML::Load("{plugins: [{type: queue-scorer}], "
                                             "schedulingProfiles: [{name: a, plugins: "
                                             "[{pluginRef: queue-scorer}]}], "
                                             "saturationDetector: {queueDepthThreshold: 7}}"),
                                  &profile),
            "");
}

TEST(SchedulerConfig, ClearErrors) {
  struct Case {
    const char* yaml;
    const char* contains;
  };
  const Case cases[] = {
      {"plugins: [{type: foo-scorer}]\nschedulingProfiles: [{name: a, plugins: [{pluginRef: "
       "foo-scorer}]}]",
       "plugins[0] (line 1): unknown plugin type \"foo-scorer\" (known: "},
      {"plugins: [{type: queue-scorer}]\nschedulingProfiles: [{name: a, plugins: [{pluginRef: "
       "nope}]}]",
       "unknown pluginRef \"nope\""},
      {"plugins: [{type: queue-scorer}, {type: queue-scorer}]\nschedulingProfiles: []",
       "duplicate plugin name \"queue-scorer\""},
      {"plugins: [{name: x}]", "missing `type`"},
      {"plugins: [{type: queue-scorer}]", "`schedulingProfiles` must be a non-empty list"},
      {"schedulingProfiles: []", "`plugins` must be a non-empty list"},
      {"plugins: [{type: prefix-cache-scorer, parameters: {blockSize: abc}}]\n"
       "schedulingProfiles: [{name: a, plugins: [{pluginRef: prefix-cache-scorer}]}]",
       "prefix-cache-scorer: parameter blockSize: \"abc\" is not an integer"},
      {"plugins: [{type: queue-scorer}]\nschedulingProfiles: [{name: a, plugins: [{pluginRef: "
       "queue-scorer, weight: -1}]}]",
       "parameter weight: -1 is out of range"},
      {"plugins: [{type: queue-scorer}]\nschedulingProfiles: [{name: a, plugins: [{pluginRef: "
       "queue-scorer}]}]\nsaturationDetector: {metricsStalenessThreshold: soon}",
       "metricsStalenessThreshold: \"soon\" is not a positive duration"},
      {"plugins: [{type: queue-scorer}]\nschedulingProfiles: [{name: a, plugins: [{pluginRef: "
       "queue-scorer}]}]\nsaturationDetector: {bogus: 1}",
       "saturationDetector: unknown key \"bogus\""},
      {"plugins: [ {type: ", "scheduler config: "},
      {"- just a list", "expected a mapping"},
  };
  for (const auto& c : cases) {
    std::unique_ptr<Picker> picker;
    std::string err = ParseSchedulerConfig(c.yaml, &picker);
    EXPECT_NE(err.find(c.contains), std::string::npos) << c.yaml << "\n→ " << err;
    EXPECT_EQ(picker, nullptr);
  }
  std::unique_ptr<Picker> picker;
  EXPECT_NE(ParseSchedulerConfig("plugins: [{type: queue-scorer}]\nschedulingProfiles: [{name: "
                                 "a, plugins: [{pluginRef: queue-scorer}]}]",
                                 &picker, "b")
                .find("no scheduling profile named \"b\" (have: a)"),
            std::string::npos);
}

}  // namespace
}  // namespace tidegate::sched
