// pool/capacity.h — the pool's capacity signal (GET /v1/capacity, the async processor's pacing
// input, and the Retry-After of a 429), as a pure function of the pool's state and `now`.
//
// Contract: EstimateCapacity() reads every endpoint once through the saturation detector and
// returns:
//   saturation          the detector's pool saturation (mean; stale endpoints count as ≥ 1);
//   sheddable_capacity  0 when the pool is saturated, else the sum over available endpoints of
//                       the detector's Room() — how many more requests fit before each one
//                       saturates;
//   retry_after_ms      when saturated: the time for the queues to drain their excess at the
//                       observed drain rate (an EWMA of waiting requests leaving per second,
//                       kept in *state), clamped to 1..30 s (2 s without a rate); otherwise one
//                       scrape interval (at least 50 ms);
//   endpoints, fresh_endpoints.
// `state` carries the drain-rate estimate between calls; pass the same one each time.
// Thread-safety: pure apart from *state, which the caller owns.
#pragma once

#include "common/clock.h"
#include "pool/endpoint.h"
#include "pool/saturation.h"
#include "wire/wire.h"

namespace tidegate::pool {

struct CapacityState {
  double prev_waiting = -1;
  Nanos prev_time{0};
  double drain_rate = 0;  // waiting requests per second leaving the queues (EWMA)
};

wire::Capacity EstimateCapacity(const Pool& pool, const SaturationDetector& detector, Nanos now,
                                Nanos scrape_interval, CapacityState* state);

}  // namespace tidegate::pool
