// common/rate_limit.h — a token bucket for log lines and other things that must not flood.
//
// Contract: Allow(now) spends one token and returns true while tokens are left; the bucket
// refills at `per_second` up to `burst`. Denied calls are counted; TakeSuppressed() returns (and
// resets) how many were denied since the last call, so a caller can say "N lines suppressed".
// Time is a parameter (`now`, any monotonic clock).
// Thread-safety: all methods are safe from any thread (one mutex; a few instructions inside).
#pragma once

#include <algorithm>
#include <cstdint>
#include <mutex>

#include "common/clock.h"

namespace tidegate {

class RateLimiter {
 public:
  RateLimiter(double per_second, double burst) : rate_(per_second), burst_(burst), tokens_(burst) {}

  bool Allow(Nanos now) {
    std::lock_guard lock(mu_);
    if (last_.count() != 0) tokens_ = std::min(burst_, tokens_ + ToSeconds(now - last_) * rate_);
    last_ = now;
    if (tokens_ >= 1) {
      tokens_ -= 1;
      return true;
    }
    ++suppressed_;
    return false;
  }

  uint64_t TakeSuppressed() {
    std::lock_guard lock(mu_);
    const uint64_t n = suppressed_;
    suppressed_ = 0;
    return n;
  }

 private:
  std::mutex mu_;
  double rate_, burst_, tokens_;
  Nanos last_{0};
  uint64_t suppressed_ = 0;
};

}  // namespace tidegate
