#include <gtest/gtest.h>

#include <thread>

#include "metrics/registry.h"

namespace tidegate::metrics {
namespace {

TEST(Registry, RendersCountersWithEscapedLabels) {
  Registry r;
  auto& c = r.AddCounter("x_requests_total", "Requests.", {"path", "code"});
  c.With({"/v1/a", "200"}).Inc(3);
  c.With({"we\"ird\\", "500"}).Inc();
  std::string out = r.Render();
  EXPECT_NE(out.find("# HELP x_requests_total Requests.\n# TYPE x_requests_total counter\n"),
            std::string::npos);
  EXPECT_NE(out.find("x_requests_total{path=\"/v1/a\",code=\"200\"} 3\n"), std::string::npos);
  EXPECT_NE(out.find("x_requests_total{path=\"we\\\"ird\\\\\",code=\"500\"} 1\n"),
            std::string::npos);
}

TEST(Registry, ChildIsStable) {
  Registry r;
  auto& c = r.AddCounter("a_total", "A.", {"k"});
  Counter* first = &c.With({"v"});
  for (int i = 0; i < 100; ++i) c.With({std::to_string(i)});
  EXPECT_EQ(first, &c.With({"v"}));
}

TEST(Histogram, BucketsAreCumulativeInOutput) {
  Registry r;
  auto& h = r.AddHistogram("lat_seconds", "Latency.", {0.1, 1}).With({});
  h.Observe(0.05);
  h.Observe(0.5);
  h.Observe(0.5);
  h.Observe(5);
  std::string out = r.Render();
  EXPECT_NE(out.find("lat_seconds_bucket{le=\"0.1\"} 1\n"), std::string::npos);
  EXPECT_NE(out.find("lat_seconds_bucket{le=\"1\"} 3\n"), std::string::npos);
  EXPECT_NE(out.find("lat_seconds_bucket{le=\"+Inf\"} 4\n"), std::string::npos);
  EXPECT_NE(out.find("lat_seconds_count 4\n"), std::string::npos);
  EXPECT_NE(out.find("lat_seconds_sum 6.05\n"), std::string::npos);
}

TEST(Histogram, ConcurrentObservationsAreAllCounted) {
  Histogram h(LatencyBuckets());
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) h.Observe(0.002);
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(h.Count(), 40000u);
  EXPECT_NEAR(h.Sum(), 80.0, 1e-6);
}

TEST(FormatValue, PrometheusSpellings) {
  EXPECT_EQ(FormatValue(3), "3");
  EXPECT_EQ(FormatValue(0.25), "0.25");
  EXPECT_EQ(FormatValue(1.0 / 0.0), "+Inf");
}

}  // namespace
}  // namespace tidegate::metrics
