// The latency predictor (sched/latency.h): the model learns a known synthetic latency function
// and follows a server that slows down mid-run; the latency-scorer's decisions on hand-built
// snapshots (least predicted latency; with an SLO, the endpoint that meets it with the least
// headroom, else the fastest); learning through the framework's feedback hooks; the metrics.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "pool/endpoint.h"
#include "pool/saturation.h"
#include "sched/config.h"
#include "sched/latency.h"
#include "sched/picker.h"

namespace tidegate::sched {
namespace {

// The "true" server, slower than the prior's H100: TTFT ms = 40 + 60·N' + 3·running +
// 50·waiting, with noise.
double Truth(const LatencyVector& x, double slow = 1.0) {
  return slow * (40 + 60 * x[1] + 3 * x[3] + 50 * x[4]);
}

LatencyVector RandomX(std::mt19937_64& rng) {
  std::uniform_real_distribution<double> n(0.1, 4.0), r(0, 16), w(0, 6);
  LatencyInputs in;
  in.prompt_tokens = n(rng) * 1000;
  in.running = r(rng);
  in.waiting = w(rng);
  return TtftFeatures(in);
}

double MeanRelError(const LatencyModel& m, std::mt19937_64& rng, double slow) {
  double sum = 0;
  for (int i = 0; i < 200; ++i) {
    const LatencyVector x = RandomX(rng);
    sum += std::abs(m.PredictMean(x) - Truth(x, slow)) / Truth(x, slow);
  }
  return sum / 200;
}

TEST(LatencyModel, LearnsASyntheticLatencyFunctionFromItsPrior) {
  std::mt19937_64 rng(1);
  std::normal_distribution<double> noise(0, 6);
  LatencyModel m(TtftPrior());
  const double before = MeanRelError(m, rng, 1.0);
  EXPECT_GT(before, 0.15);  // the prior is an H100's figures, not this server's
  for (int i = 0; i < 400; ++i) {
    const LatencyVector x = RandomX(rng);
    m.Update(x, Truth(x) + noise(rng));
  }
  EXPECT_EQ(m.samples(), 400u);
  EXPECT_LT(MeanRelError(m, rng, 1.0), 0.05);
  // The prediction is the p90: about 90% of fresh observations fall at or below it.
  int below = 0;
  for (int i = 0; i < 1000; ++i) {
    const LatencyVector x = RandomX(rng);
    if (Truth(x) + noise(rng) <= m.Predict(x)) ++below;
  }
  EXPECT_GT(below, 820);
  EXPECT_LT(below, 970);
}

TEST(LatencyModel, FollowsAServerThatSlowsDownMidRun) {
  std::mt19937_64 rng(2);
  LatencyModel m(TtftPrior());
  for (int i = 0; i < 400; ++i) {
    const LatencyVector x = RandomX(rng);
    m.Update(x, Truth(x));
  }
  EXPECT_LT(MeanRelError(m, rng, 1.0), 0.02);
  EXPECT_GT(MeanRelError(m, rng, 2.5), 0.5);  // the server becomes 2.5× slower
  for (int i = 0; i < 300; ++i) {
    const LatencyVector x = RandomX(rng);
    m.Update(x, Truth(x, 2.5));
  }
  EXPECT_LT(MeanRelError(m, rng, 2.5), 0.15);  // most of the way after 300 requests
  for (int i = 0; i < 600; ++i) {
    const LatencyVector x = RandomX(rng);
    m.Update(x, Truth(x, 2.5));
  }
  EXPECT_LT(MeanRelError(m, rng, 2.5), 0.03);
}

TEST(LatencyModel, IgnoresNonsenseAndStaysFinite) {
  LatencyModel m(TtftPrior());
  const LatencyVector x = TtftFeatures({1000, 0, 2, 4, 0.5});
  const double p = m.Predict(x);
  m.Update(x, NAN);
  m.Update(x, -5);
  EXPECT_EQ(m.samples(), 0u);
  EXPECT_DOUBLE_EQ(m.Predict(x), p);
  // The same point over and over (no excitation): the covariance stays bounded.
  for (int i = 0; i < 20000; ++i) m.Update(x, 80);
  EXPECT_TRUE(std::isfinite(m.Predict(x)));
  EXPECT_NEAR(m.PredictMean(x), 80, 1);
  EXPECT_GE(m.Predict(TtftFeatures({0, 0, 0, 0, 0})), 0);
}

TEST(LatencyFeatures, UncachedTokensDriveThePrefillTerms) {
  const LatencyVector cold = TtftFeatures({2000, 0, 3, 1, 0.2});
  const LatencyVector warm = TtftFeatures({2000, 0.75, 3, 1, 0.2});
  EXPECT_DOUBLE_EQ(cold[1], 2.0);
  EXPECT_DOUBLE_EQ(warm[1], 0.5);
  EXPECT_DOUBLE_EQ(warm[2], 0.25);
  EXPECT_DOUBLE_EQ(warm[3], 1);  // running
  EXPECT_DOUBLE_EQ(warm[4], 3);  // waiting
  LatencyModel m(TtftPrior());
  EXPECT_LT(m.Predict(warm), m.Predict(cold));
  LatencyInputs behind{2000, 0.75, 3, 1, 0.2, 6000};  // 6,000 tokens ahead in the prefill
  EXPECT_DOUBLE_EQ(TtftFeatures(behind)[6], 6.0);
  EXPECT_GT(m.Predict(TtftFeatures(behind)), m.Predict(warm) + 80);  // ≈ 6 × 15.2 ms more
  EXPECT_DOUBLE_EQ(EstimateTokens(4000), 1000);
  EXPECT_DOUBLE_EQ(EstimateTokens(0), 1);
}

// ---------------------------------------------------------------------------------------------
// The scorer on a two-endpoint pool.

// Scraped load for endpoint i (KV 10%), and every endpoint as a fresh candidate.
void PublishLoad(pool::Pool& pool, size_t i, double waiting, double running) {
  pool::EndpointMetrics m;
  m.waiting = waiting;
  m.running = running;
  m.kv_usage = 0.1;
  m.has_kv = true;
  m.scrape_time = Nanos{0};
  pool.at(i).PublishMetrics(m);
}

std::vector<Candidate> CandidatesOf(const pool::Pool& pool) {
  std::vector<Candidate> c(pool.size());
  for (uint32_t i = 0; i < pool.size(); ++i) {
    static_cast<pool::EndpointLoad&>(c[i]) = pool::EndpointLoad::Of(pool.at(i));
    c[i].index = i;
    c[i].endpoint = &pool.at(i);
    c[i].stale = false;
  }
  return c;
}

class LatencyScorerTest : public ::testing::Test {
 protected:
  explicit LatencyScorerTest(LatencyScorer::Options opts = {})
      : pool_({{"a", 1}, {"b", 2}}), scorer_(opts) {
    for (size_t i = 0; i < 2; ++i) Publish(i, 0, 2);
  }
  void Publish(size_t i, double waiting, double running) {
    PublishLoad(pool_, i, waiting, running);
  }
  std::vector<Candidate> Cands() { return CandidatesOf(pool_); }
  std::array<double, 2> Score(const RequestInfo& req) {
    ctx_.Reset(req, pool_, Nanos{0});
    ctx_.detector = &det_;
    auto c = Cands();
    std::array<double, 2> out{};
    scorer_.Score(ctx_, c, out);
    return out;
  }
  // One request served by `e` in `ttft_ms`, through the feedback hooks.
  void Serve(uint32_t e, double ttft_ms, double tpot_ms = 10) {
    RequestInfo req;
    req.id = ++next_id_;
    req.prompt = prompt_;
    ctx_.Reset(req, pool_, Nanos{0});
    ctx_.detector = &det_;
    scorer_.OnSent(ctx_, e);
    Outcome o;
    o.endpoint = e;
    o.status = 200;
    o.ttft = Nanos(static_cast<int64_t>(ttft_ms * 1e6));
    o.output_tokens = 11;
    o.duration = o.ttft + Nanos(static_cast<int64_t>(10 * tpot_ms * 1e6));
    scorer_.OnOutcome(ctx_, o);
  }

  pool::Pool pool_;
  pool::SaturationDetector det_;
  LatencyScorer scorer_;
  SchedContext ctx_;
  std::string prompt_ = std::string(2048, 'x');  // 512 tokens
  uint64_t next_id_ = 0;
};

TEST_F(LatencyScorerTest, BeforeAnyDataThePriorPrefersTheLessLoadedEndpoint) {
  Publish(1, 3, 8);
  RequestInfo req;
  req.prompt = prompt_;
  auto s = Score(req);
  EXPECT_DOUBLE_EQ(s[0], 1.0);
  EXPECT_DOUBLE_EQ(s[1], 0.0);
}

TEST_F(LatencyScorerTest, ALongPromptSentToAnEndpointIsAPrefillBacklogThatDrains) {
  RequestInfo doc;
  doc.id = 1000;
  const std::string long_prompt(24000 * 4, 'd');  // 24k tokens
  doc.prompt = long_prompt;
  ctx_.Reset(doc, pool_, Nanos{0});
  ctx_.detector = &det_;
  scorer_.OnSent(ctx_, 0);
  const Nanos ms10 = std::chrono::milliseconds(10);
  // The prior prefills ≈ 66 tokens per ms.
  EXPECT_NEAR(scorer_.PrefillBacklog(0, ms10), 24000 - 658, 5);
  EXPECT_DOUBLE_EQ(scorer_.PrefillBacklog(1, ms10), 0);
  // The same scraped load on both, but a short request behind the document waits for it.
  RequestInfo req;
  req.prompt = prompt_;
  ctx_.Reset(req, pool_, ms10);
  ctx_.detector = &det_;
  std::array<double, 2> s{};
  auto c = Cands();
  scorer_.Score(ctx_, c, s);
  EXPECT_DOUBLE_EQ(s[1], 1.0);
  EXPECT_DOUBLE_EQ(s[0], 0.0);
  EXPECT_GT(scorer_.Predict(pool_, 0, 512, det_, ms10).ttft_ms,
            scorer_.Predict(pool_, 1, 512, det_, ms10).ttft_ms + 300);
  // Drained after ~0.37 s; a document that ends early takes out what is left of it.
  EXPECT_DOUBLE_EQ(scorer_.PrefillBacklog(0, std::chrono::seconds(1)), 0);
  ctx_.Reset(doc, pool_, Nanos{0});
  scorer_.OnSent(ctx_, 1);
  ctx_.Reset(doc, pool_, ms10);
  scorer_.OnNotServed(ctx_, 1);
  EXPECT_NEAR(scorer_.PrefillBacklog(1, ms10), 0, 1e-6);
}

TEST_F(LatencyScorerTest, AnEndpointNotYetLearntIsTriedBesideAFastLearntOne) {
  for (int i = 0; i < 20; ++i) Serve(0, 5, 1);  // far faster than the prior's H100
  RequestInfo req;
  req.prompt = prompt_;
  auto s = Score(req);
  EXPECT_DOUBLE_EQ(s[1], 1.0);  // same load: the unlearnt one ties with the best
  Publish(1, 3, 8);             // but more load still counts against it, as the prior says
  s = Score(req);
  EXPECT_GT(s[0], s[1]);
  for (int i = 0; i < 20; ++i) Serve(1, 400, 40);  // learnt: slow
  Publish(1, 0, 2);
  s = Score(req);
  EXPECT_DOUBLE_EQ(s[1], 0.0);
}

TEST_F(LatencyScorerTest, LearnsThatOneEndpointIsSlowAndRoutesAwayFromIt) {
  for (int i = 0; i < 60; ++i) {
    Serve(0, 40);
    Serve(1, 400, 40);  // same load, ten times slower
  }
  RequestInfo req;
  req.prompt = prompt_;
  auto s = Score(req);
  EXPECT_GT(s[0], s[1]);
  const LatencyPrediction a = scorer_.Predict(pool_, 0, 512, det_, Nanos{0});
  const LatencyPrediction b = scorer_.Predict(pool_, 1, 512, det_, Nanos{0});
  EXPECT_NEAR(a.ttft_ms, 40, 8);
  EXPECT_NEAR(b.ttft_ms, 400, 60);
  EXPECT_NEAR(b.tpot_ms, 40, 8);
  EXPECT_EQ(a.samples, 60u);
  const LatencyStats st = scorer_.Stats();
  EXPECT_EQ(st.ttft_samples, 120u);
  EXPECT_EQ(st.tpot_samples, 120u);
  const std::string m = scorer_.MetricsText();
  EXPECT_NE(m.find("tidegate_latency_predictor_samples_total{target=\"ttft\"} 120\n"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("tidegate_latency_prediction_ratio_bucket{target=\"ttft\",le=\"+Inf\"} 120\n"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("tidegate_latency_prediction_ratio_bucket{target=\"tpot\",le=\"1.25\"}"),
            std::string::npos)
      << m;
}

TEST_F(LatencyScorerTest, WithAnSloTheEndpointsPredictedToMeetItComeFirst) {
  for (int i = 0; i < 60; ++i) {
    Serve(0, 40);
    Serve(1, 150);
  }
  RequestInfo req;
  req.prompt = prompt_;
  req.slo_ttft_ms = 500;  // both meet it: by default the faster one is preferred
  auto s = Score(req);
  EXPECT_GT(s[0], s[1]);
  EXPECT_GE(s[1], 0.5);
  req.slo_ttft_ms = 100;  // only the fast one meets it
  s = Score(req);
  EXPECT_DOUBLE_EQ(s[0], 1.0);
  EXPECT_LT(s[1], 0.5);
  req.slo_ttft_ms = 10;  // nobody does: the lowest predicted latency wins
  s = Score(req);
  EXPECT_GT(s[0], s[1]);
  req.slo_ttft_ms = -1;
  req.slo_tpot_ms = 5;  // a TPOT SLO nobody meets either
  s = Score(req);
  EXPECT_GT(s[0], s[1]);
}

LatencyScorer::Options BinPacking() {
  LatencyScorer::Options o;
  o.bin_pack = true;
  return o;
}

class LatencyScorerBinPackTest : public LatencyScorerTest {
 protected:
  LatencyScorerBinPackTest() : LatencyScorerTest(BinPacking()) {}
};

TEST_F(LatencyScorerBinPackTest, WithBinPackingTheLeastHeadroomWins) {
  for (int i = 0; i < 60; ++i) {
    Serve(0, 40);
    Serve(1, 150);
  }
  RequestInfo req;
  req.prompt = prompt_;
  req.slo_ttft_ms = 500;  // both meet it: the slower one has less headroom and is packed
  auto s = Score(req);
  EXPECT_GT(s[1], s[0]);
  EXPECT_GE(s[0], 0.5);
  req.slo_ttft_ms = 100;  // only the fast one meets it
  s = Score(req);
  EXPECT_DOUBLE_EQ(s[0], 1.0);
  EXPECT_LT(s[1], 0.5);
}

TEST_F(LatencyScorerTest, LearnsOnlyFromRequestsThatTheEndpointServed) {
  RequestInfo req;
  req.id = 77;
  req.prompt = prompt_;
  ctx_.Reset(req, pool_, Nanos{0});
  ctx_.detector = &det_;
  scorer_.OnSent(ctx_, 1);
  scorer_.OnNotServed(ctx_, 1);  // it went elsewhere
  Outcome o;
  o.endpoint = 1;
  o.status = 200;
  o.ttft = Nanos(1'000'000'000);
  scorer_.OnOutcome(ctx_, o);
  scorer_.OnSent(ctx_, 0);
  o.endpoint = 0;
  o.status = 503;  // an error says nothing about latency
  scorer_.OnOutcome(ctx_, o);
  EXPECT_EQ(scorer_.Stats().ttft_samples, 0u);
}

// slo-admission-filter: sheddable work only where the next real-time request is still predicted
// to meet the real-time SLO.
class SloAdmissionTest : public ::testing::Test {
 protected:
  SloAdmissionTest() : pool_({{"a", 1}, {"b", 2}}) {}
  void Make(SloAdmissionFilter::Options o = {}) {
    latency_ = std::make_shared<LatencyScorer>(LatencyScorer::Options{});
    filter_ = std::make_shared<SloAdmissionFilter>(o);
    profile_ = {};
    profile_.filters.push_back(filter_);
    profile_.scorers.push_back({latency_, 1});
    ASSERT_EQ(BindProfile(profile_), "");
  }
  void Publish(size_t i, double waiting, double running) {
    PublishLoad(pool_, i, waiting, running);
  }
  // The pool indexes the filter keeps for `req` at `now`.
  std::vector<uint32_t> Kept(const RequestInfo& req, Nanos now = Nanos{0}) {
    ctx_.Reset(req, pool_, now);
    ctx_.detector = &det_;
    std::vector<Candidate> c = CandidatesOf(pool_);
    filter_->Apply(ctx_, &c);
    std::vector<uint32_t> out;
    for (const auto& x : c) out.push_back(x.index);
    return out;
  }
  RequestInfo Req(int priority, double slo_ttft = -1) {
    RequestInfo r;
    r.id = ++next_id_;
    r.prompt = std::string(2048, 'x');  // 512 tokens
    r.priority = priority;
    r.slo_ttft_ms = slo_ttft;
    return r;
  }
  void Serve(uint32_t e, double ttft_ms) {
    RequestInfo req = Req(0);
    ctx_.Reset(req, pool_, Nanos{0});
    ctx_.detector = &det_;
    latency_->OnSent(ctx_, e);
    Outcome o;
    o.endpoint = e;
    o.status = 200;
    o.ttft = Nanos(static_cast<int64_t>(ttft_ms * 1e6));
    o.output_tokens = 1;
    latency_->OnOutcome(ctx_, o);
  }

  pool::Pool pool_;
  pool::SaturationDetector det_;
  std::shared_ptr<LatencyScorer> latency_;
  std::shared_ptr<SloAdmissionFilter> filter_;
  Profile profile_;
  SchedContext ctx_;
  uint64_t next_id_ = 0;
};

TEST_F(SloAdmissionTest, WithAFixedObjectiveSheddableWorkAvoidsTheLoadedEndpoint) {
  SloAdmissionFilter::Options o;
  o.ttft_slo_ms = 60;
  Make(o);
  // The prior, for a 512-token request after this one: ≈ 39 ms, and 16 ms per waiting one.
  Publish(0, 0, 2);
  Publish(1, 2, 2);
  EXPECT_EQ(Kept(Req(-1)), (std::vector<uint32_t>{0}));
  EXPECT_EQ(Kept(Req(0)), (std::vector<uint32_t>{0, 1}));  // real-time work is never refused
  Publish(0, 3, 2);
  EXPECT_TRUE(Kept(Req(-1)).empty());
  EXPECT_EQ(filter_->EmptiedReason(), EmptyReason::kSloAtRisk);
}

TEST_F(SloAdmissionTest, LearnsTheObjectiveFromRealTimeRequestsAndForgetsIt) {
  Make();
  for (int i = 0; i < 60; ++i) {
    Serve(0, 40);
    Serve(1, 150);  // same load, slower
  }
  EXPECT_EQ(Kept(Req(-1)), (std::vector<uint32_t>{0, 1}));  // no objective known yet
  Kept(Req(0, 100));                                        // a real-time request's SLO
  EXPECT_DOUBLE_EQ(filter_->TtftObjective(Nanos{0}), 100);
  EXPECT_EQ(Kept(Req(-1)), (std::vector<uint32_t>{0}));
  Kept(Req(0, 500));  // a looser one does not replace the tightest while it is recent
  EXPECT_DOUBLE_EQ(filter_->TtftObjective(Nanos{0}), 100);
  Kept(Req(0, 30));
  EXPECT_TRUE(Kept(Req(-1)).empty());
  const Nanos later = std::chrono::seconds(61);
  EXPECT_LT(filter_->TtftObjective(later), 0);  // no real-time SLO for a minute: none
  EXPECT_EQ(Kept(Req(-1), later), (std::vector<uint32_t>{0, 1}));
}

TEST_F(SloAdmissionTest, AnEmptyPickOfSheddableWorkIsSloAtRiskAndTheFilterNeedsAPredictor) {
  std::unique_ptr<Picker> picker;
  const std::string yaml = R"(
plugins:
- type: slo-admission-filter
  parameters: {ttftSloMs: 1}
- type: latency-scorer
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: slo-admission-filter
  - pluginRef: latency-scorer
)";
  ASSERT_EQ(ParseSchedulerConfig(yaml, &picker), "");
  RequestInfo shed = Req(-1);
  PickResult r = picker->Pick(shed, pool_, Nanos{0});
  EXPECT_TRUE(r.empty());
  EXPECT_EQ(r.reason, EmptyReason::kSloAtRisk);
  EXPECT_FALSE(picker->Pick(Req(0), pool_, Nanos{0}).empty());

  const std::string alone = R"(
plugins:
- type: slo-admission-filter
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: slo-admission-filter
)";
  const std::string err = ParseSchedulerConfig(alone, &picker);
  EXPECT_NE(err.find("slo-admission-filter: needs a latency-scorer"), std::string::npos) << err;
  Profile p;
  EXPECT_NE(BuildProfile("x", {{"slo-admission-filter", 0}}, &p), "");
}

TEST(LatencyPolicy, PredictedLatencyIsABuiltInPolicyWithAPredictor) {
  auto p = MakePicker("predicted-latency");
  ASSERT_NE(p, nullptr);
  EXPECT_NE(p->latency(), nullptr);
  EXPECT_EQ(MakePicker("gie-default")->latency(), nullptr);
  std::unique_ptr<Plugin> plugin;
  EXPECT_EQ(PluginRegistry::Default().Create(
                "latency-scorer", "l",
                Params(std::map<std::string, std::string>{{"tpotWeight", "2"}}), &plugin),
            "");
  EXPECT_NE(PluginRegistry::Default().Create(
                "latency-scorer", "l",
                Params(std::map<std::string, std::string>{{"quantile", "0.2"}}), &plugin),
            "");
}

}  // namespace
}  // namespace tidegate::sched
