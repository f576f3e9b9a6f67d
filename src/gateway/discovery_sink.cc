#include "gateway/discovery_sink.h"

#include <spdlog/spdlog.h>

namespace tidegate::gateway {

DiscoverySink::DiscoverySink(std::string source, pool::Pool& pool, control::Director& director,
                             Clock& clock, metrics::Registry& registry)
    : source_(std::move(source)), pool_(pool), director_(director), clock_(clock) {
  healthy_gauge_ = &registry
                        .AddGauge("tidegate_discovery_healthy",
                                  "1 while the discovery source can read its origin (the file, "
                                  "DNS, the Kubernetes API); 0 = the last known endpoints are "
                                  "kept",
                                  {"source"})
                        .With({source_});
  healthy_gauge_->Set(1);
  updates_ = &registry
                  .AddCounter("tidegate_discovery_updates_total",
                              "Endpoint sets reported by the discovery source", {"source"})
                  .With({source_});
  reported_ = &registry
                   .AddGauge("tidegate_discovery_endpoints",
                             "Endpoints in the discovery source's last report", {"source"})
                   .With({source_});
}

void DiscoverySink::SetEndpoints(const std::vector<pool::EndpointConfig>& endpoints) {
  updates_->Inc();
  reported_->Set(static_cast<double>(endpoints.size()));
  const pool::Pool::Change change = pool_.Reconcile(endpoints, clock_.Now());
  for (const auto& why : change.refused) spdlog::error("discovery {}: {}", source_, why);
}

void DiscoverySink::SetHealthy(bool healthy, const std::string& reason) {
  {
    std::lock_guard lock(mu_);
    error_ = reason;
  }
  const bool was = healthy_.exchange(healthy);
  healthy_gauge_->Set(healthy ? 1 : 0);
  if (was && !healthy)
    spdlog::warn("discovery {}: unhealthy ({}); the pool keeps its {} endpoint(s)", source_, reason,
                 pool_.ActiveCount());
  if (!was && healthy) spdlog::info("discovery {}: healthy again", source_);
}

void DiscoverySink::SetObjectives(const std::map<std::string, int>& objectives) {
  director_.SetDiscoveredObjectives(objectives);
}

std::string DiscoverySink::error() const {
  std::lock_guard lock(mu_);
  return error_;
}

void LogPoolChange(const pool::Pool& pool, const pool::Pool::Change& change) {
  for (size_t i : change.added)
    spdlog::info("pool: endpoint {} joined ({} active)", pool.at(i).address(), pool.ActiveCount());
  for (size_t i : change.removed) {
    const pool::Endpoint& ep = pool.at(i);
    spdlog::info("pool: endpoint {} left; draining {} request(s) in flight ({} active)",
                 ep.address(), ep.InFlight(), pool.ActiveCount());
  }
  for (size_t i : change.gone)
    spdlog::info("pool: endpoint {} drained and dropped", pool.at(i).address());
}

}  // namespace tidegate::gateway
