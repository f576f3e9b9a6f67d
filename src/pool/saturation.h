// pool/saturation.h — the one saturation detector (GIE's utilisation detector, with a burst
// estimate): admission of sheddable requests, the scheduler's saturation filter, flow control's
// "has room", /v1/capacity, /readyz and the 429 text all read it, so they cannot disagree.
//
// Contract:
//  * An endpoint's saturation is max(waiting / queue_threshold, kv_usage / kv_threshold); ≥ 1
//    means saturated. A stale endpoint (no metrics yet, the last scrape failed, or the snapshot
//    is older than stale_after) counts as at least 1.
//  * `waiting` is the scraped figure corrected for what this gateway did since the scrape:
//    requests that finished since then let waiting ones run (−1 each), and requests routed since
//    then wait once the engine's batch is full (+1 each beyond its free slots). The batch limit
//    is learnt from the metrics: the running count seen while requests were waiting (until it is
//    seen, routed requests are assumed to run, i.e. the scraped figure stands).
//  * The pool's saturation is the mean over its endpoints (1.0 for an empty pool).
//  * Room: an endpoint has room for one more request when it is below the in-flight bound
//    (max_in_flight_per_endpoint, 0 = none) and its saturation is < 1. In blind mode — no
//    available endpoint has fresh metrics (e.g. servers that export none) — the in-flight bound
//    alone decides, so a pool without metrics is routed, not stalled.
// Thread-safety: immutable after construction; every method is safe from any thread.
#pragma once

#include <chrono>
#include <cstdint>

#include "common/clock.h"
#include "pool/endpoint.h"

namespace tidegate::pool {

struct SaturationConfig {
  double queue_threshold = 5;
  double kv_threshold = 0.8;
  Nanos stale_after = std::chrono::seconds(2);
  int max_in_flight_per_endpoint = 0;  // 0 = no bound
};

// What the detector reads of one endpoint (one lock-free snapshot).
struct EndpointLoad {
  LoadSnapshot load;
  int in_flight = 0;
  int routed_since_scrape = 0;
  int completed_since_scrape = 0;
  static EndpointLoad Of(const Endpoint& ep);
};

class SaturationDetector {
 public:
  explicit SaturationDetector(SaturationConfig cfg = {}) : cfg_(cfg) {}
  const SaturationConfig& config() const { return cfg_; }

  bool Stale(const LoadSnapshot& l, Nanos now) const { return l.Stale(now, cfg_.stale_after); }
  double EstimatedWaiting(const EndpointLoad& e) const;
  double Saturation(const EndpointLoad& e, Nanos now) const;
  double Saturation(const Endpoint& ep, Nanos now) const {
    return Saturation(EndpointLoad::Of(ep), now);
  }
  double PoolSaturation(const Pool& pool, Nanos now) const;
  // True when no available endpoint of the pool has fresh metrics.
  bool Blind(const Pool& pool, Nanos now) const;
  bool HasRoom(const EndpointLoad& e, Nanos now, bool blind) const;
  // How many more requests fit before the endpoint saturates (or reaches the in-flight bound):
  // floor((1 − saturation) × queue_threshold), at least 1 when HasRoom(), plus the free places
  // of the running batch when its limit is known (batch_limit − running − routed since the
  // scrape); in blind mode without an in-flight bound, `blind_room`.
  int64_t Room(const EndpointLoad& e, Nanos now, bool blind, int64_t blind_room = 0) const;

 private:
  SaturationConfig cfg_;
};

}  // namespace tidegate::pool
