// The dashboard's memory on the manual clock (gateway/dashboard.h): busy time split by class,
// utilisation, requests/s and TTFT quantiles per point, the window, ?since=, the JSON the page
// reads, and the processor view; plus metrics::BucketQuantile and pool::PromSums, which it uses.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "control/director.h"
#include "gateway/dashboard.h"
#include "metrics/quantile.h"
#include "metrics/registry.h"
#include "pool/prom_sums.h"
#include "pool/saturation.h"
#include "sched/picker.h"

namespace tidegate::gateway {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

std::vector<pool::EndpointConfig> Endpoints(int n) {
  std::vector<pool::EndpointConfig> v;
  for (int i = 0; i < n; ++i) v.push_back({"10.0.0.1", static_cast<uint16_t>(8000 + i)});
  return v;
}

struct Fixture {
  explicit Fixture(int n) : pool(Endpoints(n)) {
    busy = &registry.AddFloatCounter("busy", "", {"endpoint", "class"});
    dash = std::make_unique<Dashboard>(pool, busy, std::vector<double>{0.1, 0.2, 0.5});
  }
  // Samples every 100 ms for `d` with the given in-flight counts.
  void Hold(Nanos d, const std::vector<Dashboard::InFlight>& f) {
    for (Nanos t{0}; t < d; t += milliseconds(100)) {
      clock.Advance(milliseconds(100));
      dash->Sample(clock.Now(), f);
    }
  }
  void Close(DashboardTotals t = {}) {
    if (t.ttft_counts.empty()) t.ttft_counts.assign(4, 0);
    unix_ms += 1000;
    dash->Close(clock.Now(), unix_ms, t);
  }
  double Busy(int ep, const char* cls) { return busy->With({pool.at(ep).address(), cls}).Value(); }
  ManualClock clock;
  pool::Pool pool;
  metrics::Registry registry;
  metrics::Family<metrics::Gauge>* busy;
  std::unique_ptr<Dashboard> dash;
  int64_t unix_ms = 1'700'000'000'000;
};

TEST(Dashboard, FirstCloseIsTheBaselineOnly) {
  Fixture f(2);
  f.dash->Sample(f.clock.Now(), {{1, 0}, {0, 0}});
  f.Hold(seconds(1), {{1, 0}, {0, 0}});
  f.Close();
  EXPECT_TRUE(f.dash->PointsSince(0).empty());
  f.Hold(seconds(1), {{1, 0}, {0, 0}});
  f.Close();
  EXPECT_EQ(f.dash->PointsSince(0).size(), 1u);
}

TEST(Dashboard, BusyTimeIsSplitByClassInProportionToInFlight) {
  Fixture f(2);
  f.dash->Sample(f.clock.Now(), {{0, 0}, {0, 0}});
  f.Close();
  // Endpoint 0: 3 real-time + 1 async for 1 s; endpoint 1 idle.
  f.Hold(seconds(1), {{4, 1}, {0, 0}});
  f.Close();
  auto p = f.dash->PointsSince(0);
  ASSERT_EQ(p.size(), 1u);
  // Two endpoints for one second: capacity 2 s; 0.75 s real-time, 0.25 s async.
  EXPECT_NEAR(p[0].util_realtime, 0.375, 1e-9);
  EXPECT_NEAR(p[0].util_async, 0.125, 1e-9);
  EXPECT_EQ(p[0].in_flight_realtime, 3);
  EXPECT_EQ(p[0].in_flight_async, 1);
  EXPECT_NEAR(f.Busy(0, "realtime"), 0.75, 1e-9);
  EXPECT_NEAR(f.Busy(0, "async"), 0.25, 1e-9);
  EXPECT_EQ(f.Busy(1, "realtime"), 0);
  // Both endpoints busy with async only: utilisation 100 %, all of it async.
  f.Hold(seconds(1), {{2, 2}, {5, 5}});
  f.Close();
  p = f.dash->PointsSince(0);
  ASSERT_EQ(p.size(), 2u);
  EXPECT_NEAR(p[1].util_realtime, 0, 1e-9);
  EXPECT_NEAR(p[1].util_async, 1, 1e-9);
}

TEST(Dashboard, SheddableCountsAboveTheTotalAreClamped) {
  Fixture f(1);
  f.dash->Sample(f.clock.Now(), {{0, 0}});
  f.Close();
  f.Hold(seconds(1), {{1, 3}});  // a racy read: more sheddable than in flight
  f.Close();
  auto p = f.dash->PointsSince(0);
  ASSERT_EQ(p.size(), 1u);
  EXPECT_NEAR(p[0].util_async, 1, 1e-9);
  EXPECT_NEAR(p[0].util_realtime, 0, 1e-9);
}

TEST(Dashboard, RatesAndTtftQuantilesComeFromTheDeltas) {
  Fixture f(1);
  DashboardTotals t;
  t.requests_realtime = 100;
  t.requests_async = 40;
  t.ttft_counts = {50, 0, 0, 0};
  f.dash->Sample(f.clock.Now(), {{0, 0}});
  f.Close(t);
  f.Hold(seconds(2), {{0, 0}});
  t.requests_realtime = 110;       // +10 in 2 s
  t.requests_async = 60;           // +20 in 2 s
  t.ttft_counts = {50, 10, 0, 0};  // ten new, all in (0.1, 0.2]
  f.Close(t);
  auto p = f.dash->PointsSince(0);
  ASSERT_EQ(p.size(), 1u);
  EXPECT_NEAR(p[0].rps_realtime, 5, 1e-9);
  EXPECT_NEAR(p[0].rps_async, 10, 1e-9);
  ASSERT_TRUE(p[0].ttft_p50_ms);
  EXPECT_NEAR(*p[0].ttft_p50_ms, 150, 1e-6);  // half-way through the bucket
  ASSERT_TRUE(p[0].ttft_p99_ms);
  EXPECT_NEAR(*p[0].ttft_p99_ms, 199, 1e-6);
  // No new TTFT samples: null, not a stale figure.
  f.Hold(seconds(1), {{0, 0}});
  f.Close(t);
  p = f.dash->PointsSince(0);
  ASSERT_EQ(p.size(), 2u);
  EXPECT_FALSE(p[1].ttft_p50_ms);
  EXPECT_EQ(p[1].rps_realtime, 0);
}

TEST(Dashboard, KeepsTheWindowAndAnswersSince) {
  ManualClock clock;
  pool::Pool pool(Endpoints(1));
  Dashboard d(pool, nullptr, {0.1}, seconds(5));
  DashboardTotals t;
  t.ttft_counts = {0, 0};
  int64_t ms = 1'000'000;
  d.Sample(clock.Now(), {{0, 0}});
  d.Close(clock.Now(), ms, t);
  for (int i = 0; i < 10; ++i) {
    clock.Advance(seconds(1));
    d.Sample(clock.Now(), {{1, 0}});
    ms += 1000;
    d.Close(clock.Now(), ms, t);
  }
  auto all = d.PointsSince(0);
  ASSERT_EQ(all.size(), 5u);  // the last 5 s
  EXPECT_EQ(all.back().t_ms, ms);
  EXPECT_EQ(all.front().t_ms, ms - 4000);
  auto newer = d.PointsSince(ms - 2000);
  ASSERT_EQ(newer.size(), 2u);
  EXPECT_EQ(newer.front().t_ms, ms - 1000);
  EXPECT_TRUE(d.PointsSince(ms).empty());
}

TEST(Dashboard, DataJsonCarriesPointsEndpointsQueuesAndTheProcessor) {
  Fixture f(2);
  auto detector = std::make_shared<const pool::SaturationDetector>(pool::SaturationConfig{});
  control::Director director({}, f.pool, sched::MakePicker("tidegate-default", detector),
                             f.registry);
  f.dash->Sample(f.clock.Now(), {{0, 0}, {0, 0}});
  f.Close();
  f.Hold(seconds(1), {{1, 0}, {0, 0}});
  f.Close();
  auto j = nlohmann::json::parse(
      f.dash->DataJson(0, f.unix_ms, f.pool, director, "vllm", f.clock.Now()));
  EXPECT_EQ(j["now_ms"], f.unix_ms);
  EXPECT_EQ(j["window_s"], 300);
  ASSERT_EQ(j["points"].size(), 1u);
  EXPECT_NEAR(j["points"][0]["util_realtime"].get<double>(), 0.5, 1e-9);
  EXPECT_TRUE(j["points"][0]["ttft_p99_ms"].is_null());
  EXPECT_TRUE(j["processor"].is_null());
  EXPECT_TRUE(j["queues"].is_array());
  ASSERT_EQ(j["endpoints"].size(), 2u);
  EXPECT_EQ(j["endpoints"][0]["address"], "10.0.0.1:8000");
  EXPECT_EQ(j["endpoints"][0]["engine"], "vllm");
  EXPECT_TRUE(j["endpoints"][0]["waiting"].is_null());  // no metrics scraped yet
  EXPECT_TRUE(j["endpoints"][0]["predicted_ttft_ms"].is_null());

  ProcessorView v;
  ASSERT_TRUE(
      ParseProcessorMetrics("# TYPE tidegate_async_requests_succeeded_total counter\n"
                            "tidegate_async_requests_succeeded_total 12\n"
                            "tidegate_async_requests_failed_total{code=\"INVALID_REQUEST\"} 1\n"
                            "tidegate_async_requests_failed_total{code=\"DEADLINE_EXCEEDED\"} 2\n"
                            "tidegate_async_queue_backlog 7\n",
                            &v));
  v.url = "http://p/metrics";
  v.up = true;
  f.dash->SetProcessor(v);
  j = nlohmann::json::parse(
      f.dash->DataJson(f.unix_ms, f.unix_ms, f.pool, director, "vllm", f.clock.Now()));
  EXPECT_TRUE(j["points"].empty());  // nothing newer than since
  EXPECT_EQ(j["processor"]["done"], 12);
  EXPECT_EQ(j["processor"]["failed"], 3);  // summed over codes
  EXPECT_EQ(j["processor"]["backlog"], 7);
  EXPECT_TRUE(j["processor"]["escalated"].is_null());  // not exported: null, not 0
  EXPECT_TRUE(j["processor"]["in_flight"].is_null());
  EXPECT_EQ(j["processor"]["retries"], 0);  // a labelled counter with no series yet: none
  ProcessorView other;
  ASSERT_TRUE(ParseProcessorMetrics("some_other_metric 1\n", &other));
  EXPECT_FALSE(other.retries);  // not a processor's page: unknown, not 0
  EXPECT_FALSE(ParseProcessorMetrics("not prometheus {{{", &v));
}

TEST(BucketQuantile, InterpolatesLikeHistogramQuantile) {
  const std::vector<double> b = {1, 2, 4};
  EXPECT_FALSE(metrics::BucketQuantile(b, {0, 0, 0, 0}, 0.5));
  EXPECT_FALSE(metrics::BucketQuantile(b, {1, 2}, 0.5));                     // sizes disagree
  EXPECT_NEAR(*metrics::BucketQuantile(b, {10, 0, 0, 0}, 0.5), 0.5, 1e-12);  // from 0
  EXPECT_NEAR(*metrics::BucketQuantile(b, {0, 0, 10, 0}, 0.25), 2.5, 1e-12);
  EXPECT_NEAR(*metrics::BucketQuantile(b, {5, 5, 0, 0}, 0.75), 1.5, 1e-12);
  EXPECT_EQ(*metrics::BucketQuantile(b, {0, 0, 0, 3}, 0.5), 4);  // +Inf: the highest bound
}

TEST(PromSums, SumsOverLabelsKeepsBucketsAndSplitsOnRequest) {
  pool::PromSums s;
  ASSERT_TRUE(
      pool::SumPromText("a{class=\"x\"} 1\na{class=\"y\"} 2\na 4\n"
                        "h_bucket{le=\"0.1\"} 3\nh_bucket{le=\"+Inf\"} 5\n",
                        &s, {"class"}));
  EXPECT_EQ(s.Get("a"), 7);
  EXPECT_EQ(s.Get("a{class=\"x\"}"), 1);
  EXPECT_EQ(s.Get("a{class=\"y\"}"), 2);
  EXPECT_FALSE(s.Find("missing"));
  EXPECT_EQ(s.Get("missing"), 0);
  ASSERT_EQ(s.buckets["h"].size(), 2u);
  EXPECT_EQ(s.buckets["h"][0.1], 3);
  pool::PromSums untouched;
  untouched.sums["keep"] = 1;
  EXPECT_FALSE(pool::SumPromText("bad line {", &untouched));
  EXPECT_EQ(untouched.Get("keep"), 1);
}

}  // namespace
}  // namespace tidegate::gateway
