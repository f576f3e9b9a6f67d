// async/dispatch.h — the async processor's dispatch decisions, apart from its I/O: the
// gateway's capacity reading, the AIMD window, pauses, retry back-off, the EDF order, and the
// escalation of messages that would miss their soft deadline. Every call takes the time as a
// parameter, so the decisions are unit-tested on a manual clock.
//
// Contract:
//  * Allowed(now, inflight): how many more sheddable requests may start now. 0 while paused or
//    while the pool is saturated; else the AIMD window minus what is in flight, further bounded
//    by the capacity signal (the in-flight count when it was read + the room it reported).
//    Without a capacity reading the window alone decides.
//  * CapacityRead() takes a /v1/capacity answer (and pauses everyone briefly when the pool is
//    saturated and the gateway gave a Retry-After); CapacityLost() drops it. A reading with room,
//    a second or more after the last 429, lifts the window to (in flight + room), up to
//    max_inflight: after a spike the trough is refilled at once, not by additive increase.
//  * Succeeded(): additive increase of the window (1/window, up to max_inflight), and one sample
//    of the service rate. Failed(): a 429 halves the window (at most once per 100 ms) and pauses
//    the others until a fresh capacity reading (2 intervals, at least 100 ms; 1 s without the
//    signal; never past the Retry-After, default 1 s); a 5xx multiplies it by 0.8 (same 100 ms
//    rule); a refused connection pauses everyone for backoff_base.
//  * PlanRetry(): exponential back-off with jitter (base × 2^(attempt-1), at most backoff_max,
//    × 0.5..1), at least the Retry-After; when a soft deadline lies ahead the retry comes no
//    later than it (but still after the Retry-After). It gives up when max_attempts is reached
//    or the retry would not start before the hard deadline.
//  * OrderKey(): the EDF key, the soft deadline when the message has one, else the hard one.
//  * ServiceRate(): completions per second over the last `rate_window` (or since Begin(), when
//    that is shorter); nullopt until `warmup` has passed since Begin().
//  * ProjectedFinish(now, ahead): when a message with `ahead` requests before it (in flight and
//    waiting ahead in EDF order) would be done at that rate; nullopt when unknown; a zero rate
//    projects to never (Time::max()).
//  * ShouldEscalate(now, ahead, soft): the projection passes the soft deadline, the escalation
//    budget (a token bucket: escalation_rate per second, burst max(1, rate)) has a token, and
//    fewer than max_escalated are in flight; the token is spent. Escalated messages are sent with
//    the escalation objective and do not wait for Allowed(). escalation_rate 0 turns it off.
// Thread-safety: none; the processor calls it from its event loop only.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <random>

namespace tidegate::async {

struct DispatchConfig {
  int max_inflight = 256;
  int min_window = 1;
  int initial_window = 4;
  std::chrono::milliseconds capacity_interval{50};  // 0 = no capacity signal
  std::chrono::milliseconds backoff_base{250};
  std::chrono::milliseconds backoff_max{30'000};
  int max_attempts = 0;  // 0 = until the hard deadline
  // Escalation.
  double escalation_rate = 2;  // escalations per second; 0 = never escalate
  int max_escalated = 8;       // escalated requests in flight at once
  std::chrono::milliseconds rate_window{60'000};
  std::chrono::milliseconds warmup{10'000};
};

class DispatchController {
 public:
  using Clock = std::chrono::steady_clock;
  using Time = Clock::time_point;

  explicit DispatchController(DispatchConfig cfg, uint64_t seed = 1);
  // The start of observation (the processor's start).
  void Begin(Time now) { begin_ = now; }

  // The capacity signal.
  void CapacityRead(Time now, double saturation, int64_t room, int64_t retry_after_ms,
                    int inflight);
  void CapacityLost();
  bool capacity_known() const { return cap_known_; }

  int Allowed(Time now, int inflight) const;

  // Outcomes of attempts.
  void Succeeded(Time now);
  enum class Failure { kShed, kServerError, kConnectFailed, kOther };
  // Adjusts the window and the pauses; for a 429 without Retry-After, *retry_after_ms becomes
  // 1000.
  void Failed(Time now, Failure f, int64_t* retry_after_ms);

  struct Retry {
    bool give_up = false;
    bool attempts_exhausted = false;  // give_up because of max_attempts
    Time at{};
  };
  Retry PlanRetry(Time now, int attempts, int64_t retry_after_ms, Time hard_deadline,
                  std::optional<Time> soft_deadline);
  std::chrono::milliseconds Backoff(int attempt, int64_t retry_after_ms);

  static Time OrderKey(Time hard, std::optional<Time> soft) {
    return soft && *soft < hard ? *soft : hard;
  }

  std::optional<double> ServiceRate(Time now) const;
  std::optional<Time> ProjectedFinish(Time now, size_t ahead) const;
  bool ShouldEscalate(Time now, size_t ahead, Time soft_deadline, int escalated_in_flight);

  Time paused_until() const { return paused_until_; }
  double window() const { return window_; }
  const DispatchConfig& config() const { return cfg_; }

 private:
  void Refill(Time now);

  DispatchConfig cfg_;
  std::mt19937_64 rng_;
  double window_;
  Time last_decrease_{};
  Time paused_until_{};
  bool cap_known_ = false;
  double cap_saturation_ = 0;
  int64_t cap_room_ = 0;
  int cap_inflight_base_ = 0;
  // Completions, for the service rate.
  std::deque<Time> completions_;
  std::optional<Time> begin_;
  // Escalation budget.
  double tokens_ = 0;
  Time tokens_at_{};
  bool tokens_started_ = false;
};

}  // namespace tidegate::async
