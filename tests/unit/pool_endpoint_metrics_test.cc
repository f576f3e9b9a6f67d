#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "pool/endpoint.h"

namespace tidegate::pool {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

EndpointMetrics M(double waiting, double kv, Nanos at) {
  EndpointMetrics m;
  m.waiting = waiting;
  m.running = 1;
  m.kv_usage = kv;
  m.has_kv = true;
  m.scrape_time = at;
  return m;
}

TEST(EndpointMetricsState, StaleUntilFirstScrape) {
  Endpoint ep(0, {"h", 1});
  EXPECT_TRUE(ep.Stale(Nanos{0}, seconds(2)));
  EXPECT_EQ(ep.Metrics(), nullptr);
  EXPECT_FALSE(ep.Load().has_metrics);
  EXPECT_GE(ep.Saturation(Nanos{0}, {}), 1.0);
}

TEST(EndpointMetricsState, PublishThenAgeOut) {
  Endpoint ep(0, {"h", 1});
  Nanos t0 = seconds(100);
  ep.PublishMetrics(M(2, 0.4, t0));
  LoadSnapshot l = ep.Load();
  EXPECT_TRUE(l.has_metrics);
  EXPECT_EQ(l.waiting, 2);
  EXPECT_EQ(l.kv_usage, 0.4);
  EXPECT_EQ(l.scrape_time, t0);
  EXPECT_FALSE(ep.Stale(t0 + milliseconds(1999), seconds(2)));
  EXPECT_FALSE(ep.Stale(t0 + seconds(2), seconds(2)));
  EXPECT_TRUE(ep.Stale(t0 + milliseconds(2001), seconds(2)));
  // Configurable limit.
  EXPECT_TRUE(ep.Stale(t0 + milliseconds(600), milliseconds(500)));
  ASSERT_NE(ep.Metrics(), nullptr);
  EXPECT_EQ(ep.Metrics()->waiting, 2);
}

TEST(EndpointMetricsState, ScrapeErrorMakesStaleUntilNextSuccess) {
  Endpoint ep(0, {"h", 1});
  ep.PublishMetrics(M(0, 0, Nanos{0}));
  ep.RecordScrapeError(milliseconds(50), "connect: connection refused");
  EXPECT_TRUE(ep.Stale(milliseconds(60), seconds(2)));
  EXPECT_EQ(ep.LastScrapeError(), "connect: connection refused");
  EXPECT_EQ(ep.LastScrapeErrorTime(), milliseconds(50));
  EXPECT_NE(ep.Metrics(), nullptr);  // last good snapshot still visible for /v1/pool
  ep.PublishMetrics(M(0, 0, milliseconds(100)));
  EXPECT_FALSE(ep.Stale(milliseconds(110), seconds(2)));
  EXPECT_EQ(ep.LastScrapeError(), "");
}

TEST(EndpointMetricsState, RoutedSinceScrapeResetsOnPublish) {
  Endpoint ep(0, {"h", 1});
  ep.NoteRouted();
  ep.NoteRouted();
  EXPECT_EQ(ep.RoutedSinceScrape(), 2);
  ep.PublishMetrics(M(0, 0, Nanos{0}));
  EXPECT_EQ(ep.RoutedSinceScrape(), 0);
}

TEST(Saturation, PerEndpointIsMaxOfQueueAndKv) {
  SaturationConfig cfg;  // 5, 0.8, 2 s
  Endpoint ep(0, {"h", 1});
  ep.PublishMetrics(M(2, 0.4, Nanos{0}));
  EXPECT_DOUBLE_EQ(ep.Saturation(Nanos{0}, cfg), 0.5);  // max(2/5, 0.4/0.8)
  ep.PublishMetrics(M(10, 0.1, Nanos{0}));
  EXPECT_DOUBLE_EQ(ep.Saturation(Nanos{0}, cfg), 2.0);
  cfg.queue_threshold = 20;
  cfg.kv_threshold = 0.5;
  EXPECT_DOUBLE_EQ(ep.Saturation(Nanos{0}, cfg), 0.5);
  // Stale: at least 1.
  EXPECT_DOUBLE_EQ(ep.Saturation(seconds(5), cfg), 1.0);
}

TEST(Saturation, PoolIsMeanAndStaleCountsAsSaturated) {
  Pool pool({{"a", 1}, {"b", 2}, {"c", 3}, {"d", 4}});
  SaturationConfig cfg;
  pool.at(0).PublishMetrics(M(0, 0, Nanos{0}));
  pool.at(1).PublishMetrics(M(5, 0, Nanos{0}));    // 1.0
  pool.at(2).PublishMetrics(M(0, 0.4, Nanos{0}));  // 0.5
  // d never scraped → stale → 1.0
  EXPECT_DOUBLE_EQ(pool.Saturation(Nanos{0}, cfg), (0 + 1 + 0.5 + 1) / 4);
  EXPECT_DOUBLE_EQ(Pool({}).Saturation(Nanos{0}, cfg), 1.0);
}

TEST(EndpointMetricsState, ConcurrentPublishAndLoadAreConsistent) {
  Endpoint ep(0, {"h", 1});
  std::atomic<bool> stop{false};
  ep.PublishMetrics(M(1, 1 / 20000.0, Nanos{1}));
  std::thread writer([&] {
    for (int i = 1; i < 20000; ++i) ep.PublishMetrics(M(i, i / 20000.0, Nanos{i}));
    stop = true;
  });
  size_t reads = 0;
  do {
    LoadSnapshot l = ep.Load();
    // Every field comes from the same snapshot.
    ASSERT_EQ(l.scrape_time.count(), static_cast<int64_t>(l.waiting));
    ASSERT_DOUBLE_EQ(l.kv_usage, l.waiting / 20000.0);
    ++reads;
  } while (!stop);
  writer.join();
  EXPECT_GT(reads, 0u);
}

}  // namespace
}  // namespace tidegate::pool
