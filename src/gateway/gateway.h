// gateway/gateway.h — `tidegate serve`: the OpenAI-compatible front door.
//
// Contract: a Gateway accepts HTTP/1.1 clients, validates OpenAI request bodies, resolves the
// request's objective (x-gateway-inference-objective → priority; negative = sheddable, refused
// with 429 while the pool is saturated), picks an endpoint through a sched::Picker working on
// live pool state (each endpoint's /metrics scraped every scrape interval, its models read from
// /v1/models), and proxies the request, relaying SSE streams chunk by chunk
// with backpressure (the next upstream read waits for the previous client write). A client that
// goes away closes its upstream connection at once. A connection refused, or an upstream that
// fails before sending any byte, is retried once on the next endpoint of the pick's fallback
// list; nothing is retried once bytes reached the client. Every response carries x-request-id
// and, when an endpoint was chosen, x-gateway-destination-endpoint. Errors are OpenAI-style JSON.
// It also serves /metrics (Prometheus text), /healthz, /readyz, a merged /v1/models, /v1/pool
// (every endpoint's state) and /v1/capacity (the signal for async processors).
//
// Threading: one event loop per thread (GatewayConfig::threads); each client connection and its
// upstream connections live on one loop, so per-connection state needs no locks. Shared state
// (pool, metrics) is atomic. A control loop on the calling thread accepts connections, probes
// endpoint health, scrapes metrics, computes the capacity signal and handles SIGTERM/SIGINT
// (graceful drain).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "gateway/config.h"

namespace tidegate::gateway {

class Gateway {
 public:
  explicit Gateway(GatewayConfig cfg);
  ~Gateway();
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  // Resolves the endpoints, binds the listening socket and starts the event loops.
  // Returns an error message, or empty on success.
  std::string Start();
  // The bound port (useful with port 0).
  uint16_t port() const;
  // Serves until SIGTERM or SIGINT, then drains: stops accepting, lets in-flight requests finish
  // within the drain timeout, and returns the process exit code (0 after a clean drain).
  int RunUntilSignal();
  // Begins a drain from any thread (what SIGTERM does).
  void BeginDrain();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tidegate::gateway
