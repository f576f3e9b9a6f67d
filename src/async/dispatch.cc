#include "async/dispatch.h"

#include <algorithm>
#include <cmath>

namespace tidegate::async {

using std::chrono::milliseconds;

DispatchController::DispatchController(DispatchConfig cfg, uint64_t seed)
    : cfg_(cfg),
      rng_(seed),
      window_(std::clamp(cfg.initial_window, cfg.min_window,
                         std::max(cfg.min_window, cfg.max_inflight))) {}

void DispatchController::CapacityRead(Time now, double saturation, int64_t room,
                                      int64_t retry_after_ms, int inflight) {
  cap_known_ = true;
  cap_saturation_ = saturation;
  cap_room_ = room;
  cap_inflight_base_ = inflight;
  // Capacity-led recovery: once a second has passed without a 429, a reading with room lifts
  // the window to what the gateway says fits (the AIMD growth of 1/window per success would take
  // thousands of requests to refill the trough after a spike).
  if (saturation < 1.0 && room > 0 && now - last_decrease_ >= std::chrono::seconds(1)) {
    const double fits = static_cast<double>(inflight) + static_cast<double>(room);
    window_ = std::max(window_, std::min<double>(cfg_.max_inflight, fits));
  }
  if (saturation >= 1.0 && retry_after_ms > 0) {
    const int64_t cap_ms = cfg_.capacity_interval.count() * 4 + 50;
    paused_until_ = std::max(paused_until_, now + milliseconds(std::min(retry_after_ms, cap_ms)));
  }
}

void DispatchController::CapacityLost() { cap_known_ = false; }

int DispatchController::Allowed(Time now, int inflight) const {
  if (now < paused_until_) return 0;
  int limit = static_cast<int>(std::floor(window_));
  if (cap_known_) {
    if (cap_saturation_ >= 1.0) return 0;
    const int64_t cap_limit = cap_inflight_base_ + cap_room_;
    limit = static_cast<int>(std::min<int64_t>(limit, cap_limit));
  }
  return std::max(0, limit - inflight);
}

void DispatchController::Succeeded(Time now) {
  window_ = std::min<double>(cfg_.max_inflight, window_ + 1.0 / std::max(1.0, window_));
  completions_.push_back(now);
  while (!completions_.empty() && completions_.front() < now - cfg_.rate_window)
    completions_.pop_front();
}

void DispatchController::Failed(Time now, Failure f, int64_t* retry_after_ms) {
  switch (f) {
    case Failure::kShed: {
      if (now - last_decrease_ > milliseconds(100)) {
        window_ = std::max<double>(cfg_.min_window, window_ / 2);
        last_decrease_ = now;
      }
      if (*retry_after_ms < 0) *retry_after_ms = 1000;
      // The shed request waits at least Retry-After (PlanRetry); everyone else pauses only until
      // a fresh capacity reading can say whether there is room again: the Retry-After is a
      // worst case made at the top of a spike, and pausing for all of it would leave the trough
      // after the spike unfilled.
      milliseconds pause =
          cap_known_ ? std::max(milliseconds(100), cfg_.capacity_interval * 2) : milliseconds(1000);
      pause = std::min(pause, milliseconds(*retry_after_ms));
      paused_until_ = std::max(paused_until_, now + pause);
      break;
    }
    case Failure::kConnectFailed:
      // The gateway is unreachable: pause everyone briefly instead of spinning.
      paused_until_ = std::max(paused_until_, now + cfg_.backoff_base);
      break;
    case Failure::kServerError:
      if (now - last_decrease_ > milliseconds(100)) {
        window_ = std::max<double>(cfg_.min_window, window_ * 0.8);
        last_decrease_ = now;
      }
      break;
    case Failure::kOther:
      break;
  }
}

milliseconds DispatchController::Backoff(int attempt, int64_t retry_after_ms) {
  double base = static_cast<double>(cfg_.backoff_base.count()) *
                std::pow(2.0, std::clamp(attempt - 1, 0, 16));
  base = std::min(base, static_cast<double>(cfg_.backoff_max.count()));
  std::uniform_real_distribution<double> jitter(0.5, 1.0);
  double ms = base * jitter(rng_);
  if (retry_after_ms > 0) ms = std::max(ms, static_cast<double>(retry_after_ms));
  return milliseconds(static_cast<int64_t>(ms));
}

DispatchController::Retry DispatchController::PlanRetry(Time now, int attempts,
                                                        int64_t retry_after_ms, Time hard_deadline,
                                                        std::optional<Time> soft_deadline) {
  Retry r;
  if (cfg_.max_attempts > 0 && attempts >= cfg_.max_attempts) {
    r.give_up = true;
    r.attempts_exhausted = true;
    return r;
  }
  r.at = now + Backoff(attempts, retry_after_ms);
  if (soft_deadline && *soft_deadline > now && r.at > *soft_deadline) {
    const Time earliest = now + milliseconds(std::max<int64_t>(0, retry_after_ms));
    r.at = std::max(earliest, *soft_deadline);
  }
  if (r.at >= hard_deadline) r.give_up = true;
  return r;
}

std::optional<double> DispatchController::ServiceRate(Time now) const {
  if (!begin_ || now - *begin_ < cfg_.warmup) return std::nullopt;
  const Time from = std::max(*begin_, now - cfg_.rate_window);
  const double span = std::chrono::duration<double>(now - from).count();
  if (span <= 0) return std::nullopt;
  const auto first = std::lower_bound(completions_.begin(), completions_.end(), from);
  return static_cast<double>(completions_.end() - first) / span;
}

std::optional<DispatchController::Time> DispatchController::ProjectedFinish(Time now,
                                                                            size_t ahead) const {
  const std::optional<double> rate = ServiceRate(now);
  if (!rate) return std::nullopt;
  if (*rate <= 0) return Time::max();
  const double s = static_cast<double>(ahead + 1) / *rate;
  if (s > 10.0 * 365 * 24 * 3600) return Time::max();
  return now + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

void DispatchController::Refill(Time now) {
  const double burst = std::max(1.0, cfg_.escalation_rate);
  if (!tokens_started_) {
    tokens_started_ = true;
    tokens_ = burst;
  } else if (now > tokens_at_) {
    tokens_ =
        std::min(burst, tokens_ + cfg_.escalation_rate *
                                      std::chrono::duration<double>(now - tokens_at_).count());
  }
  tokens_at_ = std::max(tokens_at_, now);
}

bool DispatchController::ShouldEscalate(Time now, size_t ahead, Time soft_deadline,
                                        int escalated_in_flight) {
  if (cfg_.escalation_rate <= 0 || escalated_in_flight >= cfg_.max_escalated) return false;
  const std::optional<Time> done = ProjectedFinish(now, ahead);
  if (!done || *done <= soft_deadline) return false;
  Refill(now);
  if (tokens_ < 1) return false;
  tokens_ -= 1;
  return true;
}

}  // namespace tidegate::async
