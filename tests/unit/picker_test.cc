#include "sched/picker.h"

#include <gtest/gtest.h>

#include <map>

namespace tidegate::sched {
namespace {

void MarkDown(pool::Endpoint& ep) {
  for (int i = 0; i < pool::Endpoint::kProbeFailuresToMarkDown; ++i) ep.RecordProbe(false, "down");
}

pool::Pool MakePool(int n) {
  std::vector<pool::EndpointConfig> eps;
  for (int i = 0; i < n; ++i) eps.push_back({"127.0.0.1", static_cast<uint16_t>(9000 + i)});
  return pool::Pool(eps);
}

TEST(LeastRequest, PrefersFewestInFlight) {
  auto pool = MakePool(3);
  pool.at(0).AddInFlight(5);
  pool.at(1).AddInFlight(1);
  pool.at(2).AddInFlight(3);
  auto picker = MakePicker("least-request");
  auto r = picker->Pick({}, pool, Nanos{0});
  ASSERT_EQ(r.count, 3u);
  EXPECT_EQ(r.order[0], 1u);
  EXPECT_EQ(r.order[1], 2u);  // fallback list is ordered by load too
  EXPECT_EQ(r.order[2], 0u);
}

TEST(LeastRequest, BreaksTiesRandomly) {
  auto pool = MakePool(4);
  auto picker = MakePicker("least-request");
  std::map<uint32_t, int> firsts;
  for (int i = 0; i < 4000; ++i) firsts[picker->Pick({}, pool, Nanos{0}).order[0]]++;
  ASSERT_EQ(firsts.size(), 4u);
  for (auto& [ep, n] : firsts) EXPECT_GT(n, 700) << "endpoint " << ep;
}

TEST(LeastRequest, SkipsUnavailableEndpoints) {
  auto pool = MakePool(3);
  pool.at(0).RecordConnectFailure(Nanos{0});  // back-off for 1 s
  MarkDown(pool.at(2));
  auto picker = MakePicker("least-request");
  auto r = picker->Pick({}, pool, Nanos{1'000'000});
  ASSERT_EQ(r.count, 1u);
  EXPECT_EQ(r.order[0], 1u);
  // After the back-off the first endpoint is eligible again.
  r = picker->Pick({}, pool, Nanos{2'000'000'000});
  EXPECT_EQ(r.count, 2u);
}

TEST(LeastRequest, EmptyWhenNothingAvailable) {
  auto pool = MakePool(2);
  MarkDown(pool.at(0));
  MarkDown(pool.at(1));
  EXPECT_TRUE(MakePicker("least-request")->Pick({}, pool, Nanos{0}).empty());
}

TEST(RoundRobin, Rotates) {
  auto pool = MakePool(3);
  auto picker = MakePicker("round-robin");
  std::vector<uint32_t> seen;
  for (int i = 0; i < 6; ++i) seen.push_back(picker->Pick({}, pool, Nanos{0}).order[0]);
  EXPECT_EQ(seen, (std::vector<uint32_t>{0, 1, 2, 0, 1, 2}));
}

TEST(MakePicker, UnknownNameIsNull) { EXPECT_EQ(MakePicker("nope"), nullptr); }

TEST(Endpoint, BackoffGrowsAndClears) {
  pool::Endpoint ep(0, {"h", 1});
  ep.RecordConnectFailure(Nanos{0});
  EXPECT_EQ(ep.DownUntil().count(), 1'000'000'000);
  ep.RecordConnectFailure(Nanos{0});
  EXPECT_EQ(ep.DownUntil().count(), 2'000'000'000);
  ep.RecordSuccess();
  EXPECT_TRUE(ep.Available(Nanos{0}));
}

TEST(Endpoint, OneFailedProbeIsNotEnoughToMarkDown) {
  pool::Endpoint ep(0, {"h", 1});
  EXPECT_FALSE(ep.RecordProbe(false, "timeout"));
  EXPECT_TRUE(ep.Available(Nanos{0}));
  EXPECT_TRUE(ep.RecordProbe(false, "timeout"));  // second in a row: down
  EXPECT_FALSE(ep.Available(Nanos{0}));
  EXPECT_EQ(ep.LastError(), "timeout");
  EXPECT_TRUE(ep.RecordProbe(true, ""));  // one success: back up
  EXPECT_TRUE(ep.Available(Nanos{0}));
  EXPECT_FALSE(ep.RecordProbe(false, "blip"));  // the count restarted
  EXPECT_TRUE(ep.Available(Nanos{0}));
}

TEST(ParseEndpoint, Forms) {
  pool::EndpointConfig e;
  EXPECT_EQ(pool::ParseEndpoint("127.0.0.1:8000", &e), "");
  EXPECT_EQ(e.port, 8000);
  EXPECT_EQ(pool::ParseEndpoint("http://model-a:80/", &e), "");
  EXPECT_EQ(e.host, "model-a");
  EXPECT_EQ(pool::ParseEndpoint("[::1]:9", &e), "");
  EXPECT_EQ(e.host, "::1");
  EXPECT_NE(pool::ParseEndpoint("nohost", &e), "");
  EXPECT_NE(pool::ParseEndpoint("h:0", &e), "");
  EXPECT_NE(pool::ParseEndpoint("h:99999", &e), "");
  // One reading only (found by discovery_spec_fuzz: "10.0.0.1:8000:1]:8000" was host
  // "10.0.0.1:8000:1]", which does not survive being written back out).
  EXPECT_NE(pool::ParseEndpoint("::1:8000", &e).find("brackets"), std::string::npos);
  EXPECT_NE(pool::ParseEndpoint("10.0.0.1:8000:1]:8000", &e), "");
  EXPECT_NE(pool::ParseEndpoint("[a]b]:80", &e), "");
}

}  // namespace
}  // namespace tidegate::sched
