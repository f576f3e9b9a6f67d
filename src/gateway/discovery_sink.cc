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
  if (change.empty()) return;
  std::string joined, left, dropped;
  for (size_t i : change.added) joined += (joined.empty() ? "" : ", ") + pool.at(i).address();
  for (size_t i : change.removed) {
    const pool::Endpoint& ep = pool.at(i);
    left += (left.empty() ? "" : ", ") + ep.address() + " (" + std::to_string(ep.InFlight()) +
            " in flight)";
  }
  for (size_t i : change.gone) dropped += (dropped.empty() ? "" : ", ") + pool.at(i).address();
  size_t draining = 0;
  for (size_t i = 0; i < pool.size(); ++i)
    draining += pool.at(i).membership() == pool::Endpoint::Membership::kDraining ? 1 : 0;
  spdlog::info(
      "pool: {}{}{}{}{}{} — {} active, {} draining", joined.empty() ? "" : "joined ", joined,
      !left.empty() && !joined.empty() ? "; " : "", left.empty() ? "" : "left, draining: " + left,
      !dropped.empty() && (!joined.empty() || !left.empty()) ? "; " : "",
      dropped.empty() ? "" : "drained and dropped: " + dropped, pool.ActiveCount(), draining);
}

}  // namespace tidegate::gateway
