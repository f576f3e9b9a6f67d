#include "pool/capacity.h"

#include <algorithm>

namespace tidegate::pool {

wire::Capacity EstimateCapacity(const Pool& pool, const SaturationDetector& detector, Nanos now,
                                Nanos scrape_interval, CapacityState* state) {
  wire::Capacity c;
  c.endpoints = static_cast<int64_t>(pool.ActiveCount());
  const bool blind = detector.Blind(pool, now);
  double sat_sum = 0, waiting = 0, excess = 0;
  int64_t room = 0;
  for (size_t i = 0; i < pool.size(); ++i) {
    const Endpoint& ep = pool.at(i);
    if (!ep.Active()) continue;
    const EndpointLoad e = EndpointLoad::Of(ep);
    sat_sum += detector.Saturation(e, now);
    if (!ep.Available(now) || detector.Stale(e.load, now)) continue;
    ++c.fresh_endpoints;
    const double w = detector.EstimatedWaiting(e);
    waiting += w;
    excess += std::max(0.0, w - detector.config().queue_threshold + 1);
    room += detector.Room(e, now, blind);
  }
  c.saturation = c.endpoints ? sat_sum / static_cast<double>(c.endpoints) : 1.0;

  const double dt = ToSeconds(now - state->prev_time);
  if (state->prev_waiting >= 0 && dt > 0) {
    const double rate = std::max(0.0, (state->prev_waiting - waiting) / dt);
    state->drain_rate = 0.8 * state->drain_rate + 0.2 * rate;
  }
  state->prev_waiting = waiting;
  state->prev_time = now;

  const bool saturated = c.saturation >= 1.0;
  if (saturated) {
    int64_t ms = state->drain_rate > 0.1
                     ? static_cast<int64_t>(1000.0 * std::max(1.0, excess) / state->drain_rate)
                     : 2000;
    c.retry_after_ms = std::clamp<int64_t>(ms, 1000, 30'000);
  } else {
    c.retry_after_ms = std::max<int64_t>(
        50, std::chrono::duration_cast<std::chrono::milliseconds>(scrape_interval).count());
  }
  c.sheddable_capacity = saturated ? 0 : room;
  return c;
}

}  // namespace tidegate::pool
