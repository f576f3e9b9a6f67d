#include "pool/saturation.h"

#include <algorithm>
#include <cmath>

namespace tidegate::pool {

EndpointLoad EndpointLoad::Of(const Endpoint& ep) {
  EndpointLoad e;
  e.load = ep.Load();
  e.in_flight = ep.InFlight();
  e.routed_since_scrape = ep.RoutedSinceScrape();
  e.completed_since_scrape = ep.CompletedSinceScrape();
  return e;
}

double SaturationDetector::EstimatedWaiting(const EndpointLoad& e) const {
  const double net = static_cast<double>(e.routed_since_scrape - e.completed_since_scrape);
  if (net <= 0) return std::max(0.0, e.load.waiting + net);
  if (e.load.batch_limit <= 0) return e.load.waiting;  // batch limit unknown: assume they run
  const double free_slots = std::max(0.0, e.load.batch_limit - e.load.running);
  return e.load.waiting + std::max(0.0, net - free_slots);
}

double SaturationDetector::Saturation(const EndpointLoad& e, Nanos now) const {
  const double q = EstimatedWaiting(e) / cfg_.queue_threshold;
  const double kv = e.load.kv_usage / cfg_.kv_threshold;
  const double s = std::max(q, kv);
  return Stale(e.load, now) ? std::max(1.0, s) : s;
}

double SaturationDetector::PoolSaturation(const Pool& pool, Nanos now) const {
  double sum = 0;
  size_t n = 0;
  for (size_t i = 0; i < pool.size(); ++i) {
    const Endpoint& ep = pool.at(i);
    if (!ep.Active()) continue;
    sum += Saturation(ep, now);
    ++n;
  }
  return n ? sum / static_cast<double>(n) : 1.0;
}

bool SaturationDetector::Blind(const Pool& pool, Nanos now) const {
  for (size_t i = 0; i < pool.size(); ++i) {
    const Endpoint& ep = pool.at(i);
    if (ep.Available(now) && !Stale(ep.Load(), now)) return false;
  }
  return true;
}

bool SaturationDetector::HasRoom(const EndpointLoad& e, Nanos now, bool blind) const {
  if (cfg_.max_in_flight_per_endpoint > 0 && e.in_flight >= cfg_.max_in_flight_per_endpoint)
    return false;
  if (blind) return true;
  return Saturation(e, now) < 1.0;
}

int64_t SaturationDetector::Room(const EndpointLoad& e, Nanos now, bool blind,
                                 int64_t blind_room) const {
  int64_t bound = INT64_MAX;
  if (cfg_.max_in_flight_per_endpoint > 0)
    bound = std::max<int64_t>(0, cfg_.max_in_flight_per_endpoint - e.in_flight);
  if (blind) return std::min(bound, cfg_.max_in_flight_per_endpoint > 0 ? bound : blind_room);
  const double s = Saturation(e, now);
  if (s >= 1.0) return 0;
  int64_t room =
      std::max<int64_t>(1, static_cast<int64_t>(std::floor((1.0 - s) * cfg_.queue_threshold)));
  // Free places in the running batch come on top of the queue's headroom: a request routed
  // there starts at once (the batch limit is learnt from a full batch; unknown = not counted).
  if (e.load.batch_limit > 0) {
    const double net =
        std::max(0.0, static_cast<double>(e.routed_since_scrape - e.completed_since_scrape));
    const double free_slots = e.load.batch_limit - e.load.running - net;
    if (free_slots >= 1) room += static_cast<int64_t>(std::floor(free_slots));
  }
  return std::min(bound, room);
}

}  // namespace tidegate::pool
