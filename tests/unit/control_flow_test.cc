// The flow controller's ordering, fairness, bounds and TTLs (control/flow_control.h).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "control/flow_control.h"

namespace tidegate::control {
namespace {

using std::chrono::milliseconds;

QueuedRequest Q(uint64_t id, int priority, std::string flow, int64_t arrival_ms,
                uint64_t bytes = 10) {
  QueuedRequest q;
  q.id = id;
  q.priority = priority;
  q.flow = std::move(flow);
  q.arrival = milliseconds(arrival_ms);
  q.expires = milliseconds(arrival_ms + 1000);
  q.bytes = bytes;
  return q;
}

std::vector<uint64_t> Drain(FlowController& f) {
  std::vector<uint64_t> out;
  while (f.Peek()) out.push_back(f.Pop().id);
  return out;
}

TEST(FlowControl, BandsDispatchStrictlyHighestFirst) {
  FlowController f({}, Fairness::kRoundRobin, Ordering::kFcfs);
  std::vector<QueuedRequest> ev;
  f.Enqueue(Q(1, 0, "a", 0), &ev);
  f.Enqueue(Q(2, 10, "a", 1), &ev);
  f.Enqueue(Q(3, 0, "a", 2), &ev);
  f.Enqueue(Q(4, -5, "a", 3), &ev);
  f.Enqueue(Q(5, 10, "a", 4), &ev);
  EXPECT_EQ(f.HighestPriority(), 10);
  EXPECT_EQ(Drain(f), (std::vector<uint64_t>{2, 5, 1, 3, 4}));
  EXPECT_TRUE(f.empty());
  EXPECT_EQ(f.bytes(), 0u);
}

TEST(FlowControl, RoundRobinBetweenFlowsOfABand) {
  FlowController f({}, Fairness::kRoundRobin, Ordering::kFcfs);
  std::vector<QueuedRequest> ev;
  // Tenant A's burst of 5 arrives first, then tenant B's 2.
  for (uint64_t i = 1; i <= 5; ++i) f.Enqueue(Q(i, 0, "A", static_cast<int64_t>(i)), &ev);
  f.Enqueue(Q(11, 0, "B", 10), &ev);
  f.Enqueue(Q(12, 0, "B", 11), &ev);
  EXPECT_EQ(f.Stats().at(0).flows, 2u);
  EXPECT_EQ(Drain(f), (std::vector<uint64_t>{1, 11, 2, 12, 3, 4, 5}));
}

TEST(FlowControl, GlobalStrictIgnoresFlows) {
  FlowController f({}, Fairness::kGlobalStrict, Ordering::kFcfs);
  std::vector<QueuedRequest> ev;
  for (uint64_t i = 1; i <= 3; ++i) f.Enqueue(Q(i, 0, "A", static_cast<int64_t>(i)), &ev);
  f.Enqueue(Q(11, 0, "B", 10), &ev);
  EXPECT_EQ(Drain(f), (std::vector<uint64_t>{1, 2, 3, 11}));
}

TEST(FlowControl, EdfOrdersByDeadlineThenArrival) {
  FlowController f({}, Fairness::kGlobalStrict, Ordering::kEdf);
  std::vector<QueuedRequest> ev;
  auto with_deadline = [](QueuedRequest q, int64_t ms) {
    q.deadline = milliseconds(ms);
    return q;
  };
  f.Enqueue(Q(1, 0, "a", 0), &ev);                      // no SLO
  f.Enqueue(with_deadline(Q(2, 0, "a", 1), 500), &ev);  // due late
  f.Enqueue(with_deadline(Q(3, 0, "b", 2), 100), &ev);  // due first
  f.Enqueue(Q(4, 0, "a", 3), &ev);                      // no SLO, later
  EXPECT_EQ(Drain(f), (std::vector<uint64_t>{3, 2, 1, 4}));
}

TEST(FlowControl, TtlExpiryAndRemove) {
  FlowController f({}, Fairness::kRoundRobin, Ordering::kFcfs);
  std::vector<QueuedRequest> ev, expired;
  f.Enqueue(Q(1, 0, "a", 0), &ev);    // expires at 1000
  f.Enqueue(Q(2, 0, "b", 500), &ev);  // 1500
  f.Enqueue(Q(3, 5, "a", 600), &ev);  // 1600
  EXPECT_EQ(f.OldestArrival(0), milliseconds(0));
  EXPECT_EQ(f.OldestArrival(5), milliseconds(600));
  f.Expire(milliseconds(999), &expired);
  EXPECT_TRUE(expired.empty());
  f.Expire(milliseconds(1500), &expired);
  ASSERT_EQ(expired.size(), 2u);
  EXPECT_EQ(expired[0].id, 1u);
  EXPECT_EQ(expired[1].id, 2u);
  EXPECT_TRUE(f.Remove(3));
  EXPECT_FALSE(f.Remove(3));
  EXPECT_TRUE(f.empty());
  EXPECT_FALSE(f.HighestPriority().has_value());
}

TEST(FlowControl, AFullBandRefusesTheNewcomer) {
  FlowControlLimits lim;
  lim.band_max_requests = 2;
  FlowController f(lim, Fairness::kRoundRobin, Ordering::kFcfs);
  std::vector<QueuedRequest> ev;
  EXPECT_EQ(f.Enqueue(Q(1, 0, "a", 0), &ev), FlowController::Admission::kQueued);
  EXPECT_EQ(f.Enqueue(Q(2, 0, "a", 1), &ev), FlowController::Admission::kQueued);
  EXPECT_EQ(f.Enqueue(Q(3, 0, "b", 2), &ev), FlowController::Admission::kBandFull);
  EXPECT_EQ(f.Enqueue(Q(4, 1, "a", 3), &ev), FlowController::Admission::kQueued);  // another band
  EXPECT_TRUE(ev.empty());
  // Bytes count too.
  FlowControlLimits bytes;
  bytes.band_max_bytes = 100;
  FlowController g(bytes, Fairness::kRoundRobin, Ordering::kFcfs);
  EXPECT_EQ(g.Enqueue(Q(1, 0, "a", 0, 60), &ev), FlowController::Admission::kQueued);
  EXPECT_EQ(g.Enqueue(Q(2, 0, "a", 1, 60), &ev), FlowController::Admission::kBandFull);
}

TEST(FlowControl, AFullGatewayEvictsTheNewestOfTheLowestLowerBand) {
  FlowControlLimits lim;
  lim.max_requests = 3;
  FlowController f(lim, Fairness::kRoundRobin, Ordering::kFcfs);
  std::vector<QueuedRequest> ev;
  f.Enqueue(Q(1, 0, "a", 0), &ev);
  f.Enqueue(Q(2, 0, "a", 1), &ev);
  f.Enqueue(Q(3, 5, "a", 2), &ev);
  // Priority 10 arrives at a full gateway: the newest priority-0 request makes room.
  EXPECT_EQ(f.Enqueue(Q(4, 10, "a", 3), &ev), FlowController::Admission::kQueued);
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].id, 2u);
  // Nothing lower than 0 waits: a priority-0 newcomer is refused, nobody is evicted.
  ev.clear();
  EXPECT_EQ(f.Enqueue(Q(5, 0, "a", 4), &ev), FlowController::Admission::kFull);
  EXPECT_TRUE(ev.empty());
  EXPECT_EQ(Drain(f), (std::vector<uint64_t>{4, 3, 1}));
}

}  // namespace
}  // namespace tidegate::control
