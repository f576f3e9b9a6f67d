// pool/endpoint.h — the pool of upstream model servers and each one's live state.
//
// Contract: the set of endpoints is fixed when the Pool is built (index i is stable and is the
// endpoint's identity everywhere else: pickers, metrics, connection pools). Mutable state —
// requests this gateway has in flight, health from probes, passive failure back-off — is kept in
// atomics so the data plane reads it without locks. An endpoint is "available" when its last
// probe succeeded (or none ran yet) and it is not inside a passive failure back-off window.
// Thread-safety: all methods are safe from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/clock.h"

namespace tidegate::pool {

struct EndpointConfig {
  std::string host;
  uint16_t port = 0;
  std::string Address() const { return host + ":" + std::to_string(port); }
};

// Parses "host:port" (IPv6 as "[::1]:8000"). Returns an error message or empty on success.
std::string ParseEndpoint(const std::string& text, EndpointConfig* out);

class Endpoint {
 public:
  Endpoint(size_t index, EndpointConfig cfg);

  size_t index() const { return index_; }
  const std::string& address() const { return address_; }
  const EndpointConfig& config() const { return cfg_; }

  int InFlight() const { return in_flight_.load(std::memory_order_relaxed); }
  void AddInFlight(int delta) { in_flight_.fetch_add(delta, std::memory_order_relaxed); }

  bool Available(Nanos now) const {
    return probe_ok_.load(std::memory_order_relaxed) &&
           now.count() >= down_until_.load(std::memory_order_relaxed);
  }
  // When the endpoint becomes available again (0 if it is available or unknown).
  Nanos DownUntil() const { return Nanos{down_until_.load(std::memory_order_relaxed)}; }
  bool ProbeOk() const { return probe_ok_.load(std::memory_order_relaxed); }

  // Passive health: a connection-level failure starts an exponential back-off (1 s doubling to
  // 10 s); a success clears it.
  void RecordConnectFailure(Nanos now);
  void RecordSuccess();
  // Active health: result of a probe. Returns true if availability changed.
  bool RecordProbe(bool ok, const std::string& error);
  std::string LastError() const;

 private:
  size_t index_;
  EndpointConfig cfg_;
  std::string address_;
  std::atomic<int> in_flight_{0};
  std::atomic<bool> probe_ok_{true};
  std::atomic<int64_t> down_until_{0};
  std::atomic<int> consecutive_failures_{0};
  mutable std::mutex error_mu_;
  std::string last_error_;
};

class Pool {
 public:
  explicit Pool(const std::vector<EndpointConfig>& endpoints);
  size_t size() const { return endpoints_.size(); }
  Endpoint& at(size_t i) { return *endpoints_[i]; }
  const Endpoint& at(size_t i) const { return *endpoints_[i]; }
  size_t AvailableCount(Nanos now) const;
  // Earliest time any endpoint leaves its back-off; used for Retry-After estimates.
  Nanos EarliestRecovery() const;

 private:
  std::vector<std::unique_ptr<Endpoint>> endpoints_;
};

}  // namespace tidegate::pool
