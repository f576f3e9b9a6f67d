// sim/scaled_clock.h — simulated time that runs `scale` times faster than a base clock.
//
// Contract: Now() = (base.Now() − start) × scale, where start is the base time at construction,
// so simulated time begins at 0 and every latency the engine measures is in simulated time.
// Thread-safety: immutable after construction; safe to read from any thread if the base is.
#pragma once

#include "common/clock.h"

namespace tidegate::sim {

class ScaledClock final : public Clock {
 public:
  ScaledClock(const Clock& base, double scale) : base_(base), start_(base.Now()), scale_(scale) {}
  Nanos Now() const override {
    return Nanos{
        static_cast<int64_t>(static_cast<double>((base_.Now() - start_).count()) * scale_)};
  }
  // Converts a simulated duration to base (wall) time.
  Nanos ToBase(Nanos simulated) const {
    return Nanos{static_cast<int64_t>(static_cast<double>(simulated.count()) / scale_)};
  }
  double scale() const { return scale_; }

 private:
  const Clock& base_;
  Nanos start_;
  double scale_;
};

}  // namespace tidegate::sim
