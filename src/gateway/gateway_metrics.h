// gateway/gateway_metrics.h — the gateway's own request and upstream metrics (the Director
// registers the flow-control, rejection and pool-capacity ones; the scraper and prober theirs).
//
// Contract: GatewayMetrics registers its families on construction and keeps pointers to the
// children the data plane touches on every request. RefreshEndpointGauges() sets the
// per-endpoint gauges from the pool before a render: one series per active endpoint, and the
// series of endpoints that left the pool are dropped.
// Thread-safety: metric updates are atomic; RefreshEndpointGauges() from any thread (serialised
// inside); construct before serving.
#pragma once

#include <mutex>
#include <string>
#include <vector>

#include "common/clock.h"
#include "gateway/routes.h"
#include "metrics/registry.h"
#include "pool/endpoint.h"
#include "pool/saturation.h"

namespace tidegate::gateway {

struct GatewayMetrics {
  GatewayMetrics(metrics::Registry& r, const pool::Pool& pool);
  void RefreshEndpointGauges(const pool::Pool& pool, const pool::SaturationDetector& detector,
                             Nanos now);

  metrics::Family<metrics::Counter>* requests_total;
  metrics::Gauge* in_flight;
  metrics::Histogram* duration[kRouteCount]{};
  metrics::Histogram* ttft;
  metrics::Family<metrics::Counter>* upstream_errors;
  metrics::Counter* retries;
  metrics::Counter* client_disconnects;
  metrics::Counter* connections_refused;  // over the connection cap
  metrics::Family<metrics::Counter>* ejections;
  metrics::Family<metrics::Counter>* auth_rejections;  // {tenant, reason}
  metrics::Counter* accept_errors;
  metrics::Gauge* client_connections;
  metrics::Counter* tls_handshake_failures;
  metrics::Gauge* buffered_bytes;  // request bodies held now
  // API requests answered, by class (sheddable = async, the rest real-time).
  metrics::Counter* requests_realtime;
  metrics::Counter* requests_async;
  metrics::Family<metrics::Gauge>* endpoint_busy;  // {endpoint, class}, fed by the dashboard
  metrics::Family<metrics::Gauge>*endpoint_up, *endpoint_in_flight, *endpoint_saturation,
      *endpoint_ejected;
  // The prefix index's predictions for what it sent each endpoint (pool::Endpoint::PrefixCheck),
  // to set against the engine's vllm:prefix_cache_hits_total / _queries_total.
  metrics::Family<metrics::Counter>*prefix_predicted_hit_tokens, *prefix_prompt_tokens;
  metrics::Gauge *pool_active, *pool_draining;
  std::mutex refresh_mu;
};

}  // namespace tidegate::gateway
