// common/clock.h — the time seam.
//
// Contract: every component that needs "now" takes a Clock& instead of calling std::chrono
// directly, so the simulator and tests can run on virtual time. SystemClock reads the OS
// monotonic clock; ManualClock only moves when told to.
// Thread-safety: SystemClock is stateless; ManualClock is safe for concurrent reads and
// advances (atomic).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace tidegate {

using Nanos = std::chrono::nanoseconds;

class Clock {
 public:
  virtual ~Clock() = default;
  // Monotonic time since an arbitrary epoch.
  virtual Nanos Now() const = 0;
};

class SystemClock final : public Clock {
 public:
  Nanos Now() const override {
    return std::chrono::duration_cast<Nanos>(std::chrono::steady_clock::now().time_since_epoch());
  }
  // The process-wide instance.
  static SystemClock& Instance();
};

class ManualClock final : public Clock {
 public:
  explicit ManualClock(Nanos start = Nanos{0}) : now_(start.count()) {}
  Nanos Now() const override { return Nanos{now_.load(std::memory_order_acquire)}; }
  void Advance(Nanos d) { now_.fetch_add(d.count(), std::memory_order_acq_rel); }
  void Set(Nanos t) { now_.store(t.count(), std::memory_order_release); }

 private:
  std::atomic<int64_t> now_;
};

inline double ToSeconds(Nanos d) { return std::chrono::duration<double>(d).count(); }

}  // namespace tidegate
