// gateway/gateway.h — `tidegate serve`: the OpenAI-compatible front door.
//
// Contract: a Gateway accepts HTTP/1.1 clients (gateway/http1.h parses their requests), asks the
// Director (control/director.h) what to do with each API request — route it, hold it at the
// gateway (flow control), or refuse it — and carries the decision out: a held request waits
// until the Director places it (a client that hangs up leaves the queue at once), a refusal is
// an OpenAI-style error with its status, Retry-After and dropped-reason headers, and a route is
// proxied (gateway/proxy.h) with SSE relayed chunk by chunk under backpressure and one retry on
// the next endpoint before any byte reached the client. Every outcome (endpoint, status, TTFT,
// output tokens, duration) goes back to the Director and the scheduler. Every response carries
// x-request-id and, when an endpoint was chosen, x-gateway-destination-endpoint. It also serves
// /healthz, /readyz and a merged /v1/models; the operator's routes — /metrics (Prometheus text),
// /v1/pool (every endpoint's state and the flow-control queues) and /v1/capacity (the signal
// for async processors) — are on a separate admin listener (GatewayConfig::admin_address,
// 127.0.0.1:9090 by default), GET and HEAD only, unless it is "public".
//
// Threading: one event loop per thread (GatewayConfig::threads); each client connection and its
// upstream connections live on one loop, so per-connection state needs no locks. Shared state
// (pool, Director, metrics) is atomic or locked inside. A control loop on the calling thread
// accepts connections, runs the scraper, the prober and the Director's tick, and handles
// SIGTERM/SIGINT (graceful drain).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "common/clock.h"
#include "control/director.h"
#include "gateway/config.h"
#include "gateway/extension.h"
#include "gateway/gateway_metrics.h"
#include "metrics/registry.h"
#include "pool/endpoint.h"

namespace tidegate::gateway {

// What another front door in the same process (the ext_proc endpoint picker) shares with the
// HTTP one: one pool, one Director (and so one scheduler and one set of queues), one metrics
// registry and the request metrics. Valid from a successful Start() until the Gateway is
// destroyed; every member is safe to use from any thread.
struct SharedState {
  const GatewayConfig& cfg;
  Clock& clock;
  pool::Pool& pool;
  control::Director& director;
  metrics::Registry& registry;
  GatewayMetrics& metrics;
  const std::atomic<bool>& draining;
  std::atomic<uint64_t>& next_request;  // request numbers (RequestView::id), unique per process
};

class Gateway {
 public:
  explicit Gateway(GatewayConfig cfg);
  ~Gateway();
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  // Routes served by an extension (the Batch API); call before Start().
  void SetExtension(std::shared_ptr<Extension> extension);
  // Resolves the endpoints, binds the listening socket and starts the event loops.
  // Returns an error message, or empty on success.
  std::string Start();
  // The admin listener's port (0 when the admin routes are on the public port).
  uint16_t admin_port() const;
  // The bound port (useful with port 0).
  uint16_t port() const;
  // Serves until SIGTERM or SIGINT, then drains: stops accepting, lets in-flight requests finish
  // within the drain timeout, and returns the process exit code (0 after a clean drain).
  int RunUntilSignal();
  // Begins a drain from any thread (what SIGTERM does).
  void BeginDrain();
  // The state shared with other front doors; only after a successful Start().
  SharedState Shared();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tidegate::gateway
