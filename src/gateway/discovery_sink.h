// gateway/discovery_sink.h — where a discovery source's reports land: the pool, the Director's
// objectives, the metrics and the log.
//
// Contract: SetEndpoints() reconciles the pool with the reported set (pool::Pool::Reconcile) and
// logs who joined and who started draining; SetHealthy() sets
// tidegate_discovery_healthy{source} and logs changes; SetObjectives() hands discovered
// objectives to the Director. Every report counts in tidegate_discovery_updates_total{source}.
// What the pool does with a change (start probing and scraping the newcomers, drop the state of
// the gone) is the pool listener's job (OnPoolChange, installed by the gateway).
// Thread-safety: Sink methods are called by one source at a time (its thread); healthy() and
// error() from any thread.
#pragma once

#include <atomic>
#include <mutex>
#include <string>

#include "common/clock.h"
#include "control/director.h"
#include "discovery/source.h"
#include "metrics/registry.h"
#include "pool/endpoint.h"

namespace tidegate::gateway {

class DiscoverySink final : public discovery::Sink {
 public:
  DiscoverySink(std::string source, pool::Pool& pool, control::Director& director, Clock& clock,
                metrics::Registry& registry);
  void SetEndpoints(const std::vector<pool::EndpointConfig>& endpoints) override;
  void SetHealthy(bool healthy, const std::string& reason) override;
  void SetObjectives(const std::map<std::string, int>& objectives) override;

  bool healthy() const { return healthy_.load(); }
  std::string error() const;

 private:
  const std::string source_;
  pool::Pool& pool_;
  control::Director& director_;
  Clock& clock_;
  metrics::Gauge* healthy_gauge_;
  metrics::Counter* updates_;
  metrics::Gauge* reported_;
  std::atomic<bool> healthy_{true};
  mutable std::mutex mu_;
  std::string error_;  // guarded by mu_
};

// Logs a membership change; used as (part of) the pool's OnChange listener.
void LogPoolChange(const pool::Pool& pool, const pool::Pool::Change& change);

}  // namespace tidegate::gateway
