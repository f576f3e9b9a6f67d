// The async processor's dispatch decisions on a manual clock (async/dispatch.h): the window and
// the capacity signal, pauses after a 429, back-off and its soft/hard deadline bounds, the EDF
// key, the service-rate estimate and the projection, and escalation with its budget.
#include <gtest/gtest.h>

#include "async/dispatch.h"

namespace tidegate::async {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Time = DispatchController::Time;

const Time kT0 = Time() + std::chrono::hours(1000);

DispatchConfig Cfg() {
  DispatchConfig c;
  c.initial_window = 4;
  c.max_inflight = 10;
  c.capacity_interval = milliseconds(50);
  return c;
}

TEST(Dispatch, WindowAndCapacityBoundWhatMayStart) {
  DispatchController d(Cfg());
  EXPECT_EQ(d.Allowed(kT0, 0), 4);  // no capacity signal: the window alone
  EXPECT_EQ(d.Allowed(kT0, 3), 1);
  d.CapacityRead(kT0, 0.5, 2, -1, 1);  // room for 2 more than the 1 in flight then
  EXPECT_EQ(d.Allowed(kT0, 1), 2);
  EXPECT_EQ(d.Allowed(kT0, 3), 0);
  d.CapacityRead(kT0, 1.0, 100, -1, 0);  // saturated: nothing
  EXPECT_EQ(d.Allowed(kT0, 0), 0);
  d.CapacityLost();
  EXPECT_EQ(d.Allowed(kT0, 0), 4);
}

TEST(Dispatch, SuccessesGrowTheWindowUpToTheMaximum) {
  DispatchController d(Cfg());
  d.Succeeded(kT0);
  EXPECT_NEAR(d.window(), 4.25, 1e-12);
  for (int i = 0; i < 1000; ++i) d.Succeeded(kT0);
  EXPECT_EQ(d.window(), 10);
}

TEST(Dispatch, AShedHalvesOncePer100msAndPausesTheOthersBriefly) {
  DispatchController d(Cfg());
  d.CapacityRead(kT0, 0.2, 3, -1, 0);  // (room for fewer than the window: it is not lifted)
  int64_t ra = 5000;
  d.Failed(kT0, DispatchController::Failure::kShed, &ra);
  EXPECT_EQ(d.window(), 2);
  EXPECT_EQ(ra, 5000);
  // Pause until a fresh capacity reading: max(100 ms, 2 intervals), not the whole Retry-After.
  EXPECT_EQ(d.paused_until(), kT0 + milliseconds(100));
  EXPECT_EQ(d.Allowed(kT0 + milliseconds(99), 0), 0);
  EXPECT_GT(d.Allowed(kT0 + milliseconds(100), 0), 0);
  int64_t none = -1;
  d.Failed(kT0 + milliseconds(50), DispatchController::Failure::kShed, &none);
  EXPECT_EQ(d.window(), 2);  // within 100 ms of the last decrease
  EXPECT_EQ(none, 1000);     // a 429 without Retry-After counts as 1 s
  d.Failed(kT0 + milliseconds(150), DispatchController::Failure::kShed, &none);
  EXPECT_EQ(d.window(), 1);  // the minimum
  // Without the capacity signal the pause is 1 s (never beyond the Retry-After).
  DispatchController e(Cfg());
  int64_t short_ra = 300;
  e.Failed(kT0, DispatchController::Failure::kShed, &short_ra);
  EXPECT_EQ(e.paused_until(), kT0 + milliseconds(300));
}

TEST(Dispatch, ACapacityReadingWithRoomRefillsTheWindowASecondAfterTheLastShed) {
  DispatchConfig c = Cfg();
  c.max_inflight = 64;
  c.initial_window = 32;
  DispatchController d(c);
  int64_t ra = -1;
  d.Failed(kT0, DispatchController::Failure::kShed, &ra);
  d.Failed(kT0 + milliseconds(200), DispatchController::Failure::kShed, &ra);
  EXPECT_EQ(d.window(), 8);
  // Within a second of the last 429 a reading does not lift it (the spike may still be on).
  d.CapacityRead(kT0 + milliseconds(900), 0.3, 40, -1, 5);
  EXPECT_EQ(d.window(), 8);
  // A second later it does, to what the gateway says fits (in flight + room).
  d.CapacityRead(kT0 + milliseconds(1200), 0.3, 40, -1, 5);
  EXPECT_EQ(d.window(), 45);
  EXPECT_EQ(d.Allowed(kT0 + milliseconds(1200), 5), 40);
  // Never above max_inflight, never lowered by a reading, and not while saturated.
  d.CapacityRead(kT0 + milliseconds(1300), 0.3, 500, -1, 5);
  EXPECT_EQ(d.window(), 64);
  d.CapacityRead(kT0 + milliseconds(1400), 0.3, 1, -1, 5);
  EXPECT_EQ(d.window(), 64);
  DispatchController e(c);
  e.Failed(kT0, DispatchController::Failure::kShed, &ra);
  e.CapacityRead(kT0 + std::chrono::seconds(5), 1.0, 40, -1, 0);
  EXPECT_EQ(e.window(), 16);
}

TEST(Dispatch, ServerErrorsShrinkAndRefusedConnectionsPause) {
  DispatchConfig c = Cfg();
  c.initial_window = 10;
  DispatchController d(c);
  int64_t ra = -1;
  d.Failed(kT0, DispatchController::Failure::kServerError, &ra);
  EXPECT_NEAR(d.window(), 8, 1e-12);
  d.Failed(kT0, DispatchController::Failure::kConnectFailed, &ra);
  EXPECT_EQ(d.paused_until(), kT0 + c.backoff_base);
  EXPECT_EQ(ra, -1);
}

TEST(Dispatch, RetriesBackOffWithinTheDeadlines) {
  DispatchConfig c = Cfg();
  c.backoff_base = milliseconds(100);
  c.backoff_max = milliseconds(1000);
  DispatchController d(c, 7);
  for (int attempt = 1; attempt <= 6; ++attempt) {
    const double cap = std::min(100.0 * (1 << (attempt - 1)), 1000.0);
    for (int k = 0; k < 20; ++k) {
      const auto b = d.Backoff(attempt, -1).count();
      EXPECT_GE(b, cap * 0.5 - 1) << attempt;
      EXPECT_LE(b, cap) << attempt;
    }
  }
  EXPECT_GE(d.Backoff(1, 5000).count(), 5000);  // at least the Retry-After
  const Time hard = kT0 + seconds(60);
  auto r = d.PlanRetry(kT0, 1, -1, hard, std::nullopt);
  EXPECT_FALSE(r.give_up);
  EXPECT_GT(r.at, kT0);
  // No retry fits before the hard deadline.
  r = d.PlanRetry(kT0, 1, 10'000, kT0 + seconds(5), std::nullopt);
  EXPECT_TRUE(r.give_up);
  EXPECT_FALSE(r.attempts_exhausted);
  // A soft deadline ahead pulls a long back-off in to it, but not before the Retry-After.
  r = d.PlanRetry(kT0, 8, 200, hard, kT0 + milliseconds(300));
  EXPECT_FALSE(r.give_up);
  EXPECT_EQ(r.at, kT0 + milliseconds(300));
  r = d.PlanRetry(kT0, 8, 2000, hard, kT0 + milliseconds(300));
  EXPECT_EQ(r.at, kT0 + milliseconds(2000));
  // A soft deadline already passed does not shorten anything.
  r = d.PlanRetry(kT0, 1, 800, hard, kT0 - seconds(1));
  EXPECT_GE(r.at, kT0 + milliseconds(800));
  DispatchConfig m = c;
  m.max_attempts = 3;
  DispatchController e(m);
  EXPECT_FALSE(e.PlanRetry(kT0, 2, -1, hard, std::nullopt).give_up);
  r = e.PlanRetry(kT0, 3, -1, hard, std::nullopt);
  EXPECT_TRUE(r.give_up);
  EXPECT_TRUE(r.attempts_exhausted);
}

TEST(Dispatch, EdfKeyIsTheSoftDeadlineWhenThereIsOne) {
  const Time hard = kT0 + seconds(100);
  EXPECT_EQ(DispatchController::OrderKey(hard, std::nullopt), hard);
  EXPECT_EQ(DispatchController::OrderKey(hard, kT0 + seconds(10)), kT0 + seconds(10));
  EXPECT_EQ(DispatchController::OrderKey(hard, kT0 + seconds(200)), hard);  // never after hard
}

TEST(Dispatch, ServiceRateAndProjection) {
  DispatchConfig c = Cfg();
  c.warmup = seconds(10);
  c.rate_window = seconds(20);
  DispatchController d(c);
  d.Begin(kT0);
  for (int i = 0; i < 40; ++i) d.Succeeded(kT0 + milliseconds(250 * i));  // 4/s for 10 s
  EXPECT_FALSE(d.ServiceRate(kT0 + seconds(9)));                          // warming up
  EXPECT_FALSE(d.ProjectedFinish(kT0 + seconds(9), 0));
  ASSERT_TRUE(d.ServiceRate(kT0 + seconds(10)));
  EXPECT_NEAR(*d.ServiceRate(kT0 + seconds(10)), 4.0, 0.11);
  // 7 ahead: the 8th completion from now, at 4/s.
  EXPECT_EQ(*d.ProjectedFinish(kT0 + seconds(10), 7), kT0 + seconds(12));
  // Nothing completes for 30 s: the rate falls to 0 and the projection to never.
  EXPECT_EQ(*d.ServiceRate(kT0 + seconds(40)), 0);
  EXPECT_EQ(*d.ProjectedFinish(kT0 + seconds(40), 0), Time::max());
}

TEST(Dispatch, EscalationStartsWhenTheProjectionCrossesTheSoftDeadline) {
  DispatchConfig c = Cfg();
  c.warmup = seconds(10);
  c.rate_window = seconds(10);
  c.escalation_rate = 100;  // budget out of the way here
  DispatchController d(c);
  d.Begin(kT0);
  for (int i = 0; i < 20; ++i) d.Succeeded(kT0 + milliseconds(500 * i));  // 2/s
  const Time now = kT0 + seconds(10);
  // 9 ahead at 2/s: done in 5 s.
  EXPECT_FALSE(d.ShouldEscalate(now, 9, now + seconds(6), 0));
  EXPECT_FALSE(d.ShouldEscalate(now, 9, now + seconds(5), 0));
  EXPECT_TRUE(d.ShouldEscalate(now, 9, now + milliseconds(4900), 0));
  EXPECT_TRUE(d.ShouldEscalate(now, 20, now + seconds(6), 0));  // further back in the queue
  // Not while warming up (no estimate yet).
  DispatchController cold(c);
  cold.Begin(kT0);
  EXPECT_FALSE(cold.ShouldEscalate(kT0 + seconds(1), 1000, kT0 + seconds(2), 0));
  // Off.
  DispatchConfig off = c;
  off.escalation_rate = 0;
  DispatchController o(off);
  o.Begin(kT0);
  EXPECT_FALSE(o.ShouldEscalate(kT0 + seconds(20), 1000, kT0 + seconds(21), 0));
}

TEST(Dispatch, TheEscalationBudgetIsRespected) {
  DispatchConfig c = Cfg();
  c.warmup = seconds(1);
  c.escalation_rate = 2;  // per second, burst 2
  c.max_escalated = 3;
  DispatchController d(c);
  d.Begin(kT0);
  const Time now = kT0 + seconds(5);  // nothing completed: every projection is "never"
  const Time soft = now + seconds(1);
  EXPECT_TRUE(d.ShouldEscalate(now, 0, soft, 0));
  EXPECT_TRUE(d.ShouldEscalate(now, 1, soft, 1));
  EXPECT_FALSE(d.ShouldEscalate(now, 2, soft, 2));  // burst spent
  EXPECT_FALSE(d.ShouldEscalate(now + milliseconds(400), 2, soft, 2));
  EXPECT_TRUE(d.ShouldEscalate(now + milliseconds(500), 2, soft, 2));  // one token per 0.5 s
  // Over 10 s at most 2 + 2 × 10 escalations, whatever is asked.
  int granted = 0;
  DispatchController e(c);
  e.Begin(kT0);
  for (int ms = 0; ms <= 10'000; ms += 10)
    if (e.ShouldEscalate(now + milliseconds(ms), 5, soft, 0)) ++granted;
  EXPECT_EQ(granted, 22);
  // The in-flight cap.
  EXPECT_FALSE(e.ShouldEscalate(now + seconds(60), 5, soft, 3));
}

}  // namespace
}  // namespace tidegate::async
