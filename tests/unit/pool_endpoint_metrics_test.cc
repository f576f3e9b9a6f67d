#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "pool/endpoint.h"
#include "pool/saturation.h"

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
  EXPECT_GE(SaturationDetector().Saturation(ep, Nanos{0}), 1.0);
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

TEST(EndpointMetricsState, RoutedAndCompletedSinceScrapeResetOnPublish) {
  Endpoint ep(0, {"h", 1});
  ep.NoteRouted();
  ep.NoteRouted();
  ep.NoteCompleted();
  EXPECT_EQ(ep.RoutedSinceScrape(), 2);
  EXPECT_EQ(ep.CompletedSinceScrape(), 1);
  ep.PublishMetrics(M(0, 0, Nanos{0}));
  EXPECT_EQ(ep.RoutedSinceScrape(), 0);
  EXPECT_EQ(ep.CompletedSinceScrape(), 0);
  // A routing taken back after the scrape reset never reads below zero.
  ep.UnnoteRouted();
  EXPECT_EQ(ep.RoutedSinceScrape(), 0);
}

TEST(Saturation, PerEndpointIsMaxOfQueueAndKv) {
  Endpoint ep(0, {"h", 1});
  ep.PublishMetrics(M(2, 0.4, Nanos{0}));
  SaturationDetector d;                               // 5, 0.8, 2 s
  EXPECT_DOUBLE_EQ(d.Saturation(ep, Nanos{0}), 0.5);  // max(2/5, 0.4/0.8)
  ep.PublishMetrics(M(10, 0.1, Nanos{0}));
  EXPECT_DOUBLE_EQ(d.Saturation(ep, Nanos{0}), 2.0);
  SaturationDetector d2({.queue_threshold = 20, .kv_threshold = 0.5});
  EXPECT_DOUBLE_EQ(d2.Saturation(ep, Nanos{0}), 0.5);
  // Stale: at least 1.
  EXPECT_DOUBLE_EQ(d2.Saturation(ep, seconds(5)), 1.0);
}

TEST(Saturation, PoolIsMeanAndStaleCountsAsSaturated) {
  Pool pool({{"a", 1}, {"b", 2}, {"c", 3}, {"d", 4}});
  pool.at(0).PublishMetrics(M(0, 0, Nanos{0}));
  pool.at(1).PublishMetrics(M(5, 0, Nanos{0}));    // 1.0
  pool.at(2).PublishMetrics(M(0, 0.4, Nanos{0}));  // 0.5
  // d never scraped → stale → 1.0
  SaturationDetector d;
  EXPECT_DOUBLE_EQ(d.PoolSaturation(pool, Nanos{0}), (0 + 1 + 0.5 + 1) / 4);
  EXPECT_DOUBLE_EQ(d.PoolSaturation(Pool({}), Nanos{0}), 1.0);
}

TEST(Saturation, RoutedRequestsWaitOnlyOnceTheBatchIsFull) {
  Endpoint ep(0, {"h", 1});
  SaturationDetector d;
  // Never seen queueing: the batch limit is unknown, so requests routed since the scrape are
  // assumed to run (the scraped waiting figure stands).
  ep.PublishMetrics(M(0, 0, Nanos{0}));
  for (int i = 0; i < 10; ++i) ep.NoteRouted();
  EXPECT_DOUBLE_EQ(d.EstimatedWaiting(EndpointLoad::Of(ep)), 0);
  // A snapshot with 3 waiting and 2 running teaches the batch limit (2).
  EndpointMetrics m = M(3, 0, Nanos{0});
  m.running = 2;
  ep.PublishMetrics(m);
  EXPECT_EQ(ep.Load().batch_limit, 2);
  EXPECT_DOUBLE_EQ(d.EstimatedWaiting(EndpointLoad::Of(ep)), 3);
  ep.NoteRouted();
  ep.NoteRouted();  // the batch is full: both wait
  EXPECT_DOUBLE_EQ(d.EstimatedWaiting(EndpointLoad::Of(ep)), 5);
  EXPECT_DOUBLE_EQ(d.Saturation(ep, Nanos{0}), 1.0);
  // Three finish: three waiting ones move into the batch.
  ep.NoteCompleted();
  ep.NoteCompleted();
  ep.NoteCompleted();
  EXPECT_DOUBLE_EQ(d.EstimatedWaiting(EndpointLoad::Of(ep)), 3 + 2 - 3);
  // A later idle snapshot keeps the learnt limit; with a free slot, one routed request runs.
  EndpointMetrics idle = M(0, 0, Nanos{0});
  idle.running = 1;
  ep.PublishMetrics(idle);
  EXPECT_EQ(ep.Load().batch_limit, 2);
  ep.NoteRouted();
  EXPECT_DOUBLE_EQ(d.EstimatedWaiting(EndpointLoad::Of(ep)), 0);
  ep.NoteRouted();
  EXPECT_DOUBLE_EQ(d.EstimatedWaiting(EndpointLoad::Of(ep)), 1);
  // More completions than waiting requests never go below zero.
  for (int i = 0; i < 5; ++i) ep.NoteCompleted();
  EXPECT_DOUBLE_EQ(d.EstimatedWaiting(EndpointLoad::Of(ep)), 0);
}

TEST(Saturation, RoomNeedsSaturationBelowOneAndTheInFlightBound) {
  Endpoint ep(0, {"h", 1});
  ep.PublishMetrics(M(2, 0.4, Nanos{0}));
  SaturationDetector d;
  EXPECT_TRUE(d.HasRoom(EndpointLoad::Of(ep), Nanos{0}, false));
  EXPECT_EQ(d.Room(EndpointLoad::Of(ep), Nanos{0}, false), 2);  // floor((1 − 0.5) × 5)
  SaturationDetector bounded({.max_in_flight_per_endpoint = 3});
  ep.AddInFlight(2);
  EXPECT_TRUE(bounded.HasRoom(EndpointLoad::Of(ep), Nanos{0}, false));
  EXPECT_EQ(bounded.Room(EndpointLoad::Of(ep), Nanos{0}, false), 1);
  ep.AddInFlight(1);
  EXPECT_FALSE(bounded.HasRoom(EndpointLoad::Of(ep), Nanos{0}, false));
  EXPECT_EQ(bounded.Room(EndpointLoad::Of(ep), Nanos{0}, false), 0);
  // Saturated: no room, whatever the bound.
  ep.PublishMetrics(M(5, 0, Nanos{0}));
  EXPECT_FALSE(d.HasRoom(EndpointLoad::Of(ep), Nanos{0}, false));
  // Blind (no endpoint has fresh metrics): only the in-flight bound decides.
  EXPECT_TRUE(d.HasRoom(EndpointLoad::Of(ep), seconds(10), true));
  EXPECT_FALSE(bounded.HasRoom(EndpointLoad::Of(ep), seconds(10), true));
  Pool pool({{"a", 1}, {"b", 2}});
  EXPECT_TRUE(d.Blind(pool, Nanos{0}));
  pool.at(1).PublishMetrics(M(0, 0, Nanos{0}));
  EXPECT_FALSE(d.Blind(pool, Nanos{0}));
  EXPECT_TRUE(d.Blind(pool, seconds(3)));  // aged out
}

TEST(Saturation, RoomCountsTheFreePlacesOfTheRunningBatchOnceItsLimitIsKnown) {
  Endpoint ep(0, {"h", 1});
  SaturationDetector d;  // queue threshold 5
  EndpointMetrics idle = M(0, 0, Nanos{0});
  idle.running = 3;
  ep.PublishMetrics(idle);
  EXPECT_EQ(d.Room(EndpointLoad::Of(ep), Nanos{0}, false), 5);  // batch limit not learnt yet
  EndpointMetrics full = M(1, 0, Nanos{0});
  full.running = 8;  // a full batch with a queue: the limit is 8
  ep.PublishMetrics(full);
  ep.PublishMetrics(idle);
  EXPECT_EQ(d.Room(EndpointLoad::Of(ep), Nanos{0}, false), 5 + 5);  // queue headroom + 8 − 3
  ep.NoteRouted();
  ep.NoteRouted();
  EXPECT_EQ(d.Room(EndpointLoad::Of(ep), Nanos{0}, false), 5 + 3);  // two already sent there
  for (int i = 0; i < 5; ++i) ep.NoteRouted();  // two more than the batch has places for
  EXPECT_EQ(d.Room(EndpointLoad::Of(ep), Nanos{0}, false), 3);  // floor((1 − 2/5) × 5)
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
