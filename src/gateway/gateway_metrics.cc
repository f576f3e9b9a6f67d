#include "gateway/gateway_metrics.h"

#include <algorithm>

namespace tidegate::gateway {

GatewayMetrics::GatewayMetrics(metrics::Registry& registry, const pool::Pool& pool) {
  requests_total = &registry.AddCounter(
      "tidegate_requests_total",
      "API requests answered, by path, HTTP status and serving endpoint (none = no endpoint)",
      {"path", "code", "endpoint"});
  in_flight =
      &registry.AddGauge("tidegate_requests_in_flight", "API requests being handled right now")
           .With({});
  auto& dur = registry.AddHistogram(
      "tidegate_request_duration_seconds",
      "End-to-end latency: request received to the last response byte written, by path",
      metrics::LatencyBuckets(), {"path"});
  for (Route r : {Route::kChat, Route::kCompletions, Route::kEmbeddings, Route::kModels})
    duration[static_cast<int>(r)] = &dur.With({RouteLabel(r)});
  for (int r = 0; r < kRouteCount; ++r)
    if (!duration[r]) duration[r] = &dur.With({"other"});
  ttft = &registry
              .AddHistogram("tidegate_time_to_first_token_seconds",
                            "Streaming requests: request received to the first body bytes "
                            "relayed from the model server",
                            metrics::LatencyBuckets())
              .With({});
  upstream_errors = &registry.AddCounter(
      "tidegate_upstream_errors_total",
      "Failures talking to a model server, by endpoint and reason (connect_refused, "
      "connect_timeout, closed_before_response, ttfb_timeout, disconnected_mid_stream, "
      "stream_idle_timeout)",
      {"endpoint", "reason"});
  retries = &registry
                 .AddCounter("tidegate_upstream_retries_total",
                             "Requests retried on another endpoint before any byte reached "
                             "the client")
                 .With({});
  connections_refused = &registry
                             .AddCounter("tidegate_connections_refused_total",
                                         "Client connections answered 503 and closed because the "
                                         "gateway was at its connection limit")
                             .With({});
  accept_errors = &registry
                       .AddCounter("tidegate_accept_errors_total",
                                   "Failed accepts of client connections (e.g. out of file "
                                   "descriptors)")
                       .With({});
  buffered_bytes = &registry
                        .AddGauge("tidegate_buffered_request_bytes",
                                  "Bytes of request bodies held in memory now (bounded by "
                                  "--max-buffered-bytes)")
                        .With({});
  auth_rejections = &registry.AddCounter(
      "tidegate_auth_rejections_total",
      "Requests refused by API-key checks, by tenant ('-' when no valid key) and reason "
      "(missing_api_key, invalid_api_key, objective_not_allowed, rate_limited, "
      "concurrency_limited)",
      {"tenant", "reason"});
  tls_handshake_failures = &registry
                                .AddCounter("tidegate_tls_handshake_failures_total",
                                            "Client connections whose TLS handshake failed or "
                                            "timed out")
                                .With({});
  client_connections =
      &registry.AddGauge("tidegate_client_connections", "Client connections open now").With({});
  client_disconnects =
      &registry
           .AddCounter("tidegate_client_disconnects_total",
                       "Requests whose client went away before the response finished (the "
                       "upstream connection was closed at once, or the request left the queue)")
           .With({});
  auto& by_class = registry.AddCounter(
      "tidegate_requests_by_class_total",
      "API requests answered, by class: async (sheddable, priority < 0: what the async "
      "processor sends) or realtime (everything else)",
      {"class"});
  requests_realtime = &by_class.With({"realtime"});
  requests_async = &by_class.With({"async"});
  endpoint_busy = &registry.AddFloatCounter(
      "tidegate_endpoint_busy_seconds_total",
      "Seconds the endpoint had at least one request in flight from this gateway, split between "
      "the classes (realtime, async) in proportion to their in-flight counts (sampled every "
      "100 ms). Pool utilisation of a class = its rate summed over endpoints / endpoints",
      {"endpoint", "class"});
  endpoint_up = &registry.AddGauge("tidegate_endpoint_up",
                                   "1 if the endpoint is available for new requests", {"endpoint"});
  endpoint_in_flight =
      &registry.AddGauge("tidegate_endpoint_in_flight",
                         "Requests this gateway has in flight to the endpoint", {"endpoint"});
  endpoint_saturation =
      &registry.AddGauge("tidegate_endpoint_saturation",
                         "max(waiting/queue_threshold, kv/kv_threshold) of the endpoint, "
                         "waiting corrected for requests routed and finished since the "
                         "last scrape",
                         {"endpoint"});
  endpoint_ejected =
      &registry.AddGauge("tidegate_endpoint_ejected",
                         "1 while the endpoint is ejected as an outlier (its requests timed "
                         "out, were reset or got garbage several times in a row)",
                         {"endpoint"});
  ejections = &registry.AddCounter("tidegate_endpoint_ejections_total",
                                   "Outlier ejections of an endpoint, by the failure that "
                                   "triggered it",
                                   {"endpoint", "reason"});
  prefix_predicted_hit_tokens = &registry.AddCounter(
      "tidegate_prefix_index_predicted_hit_tokens_total",
      "Prompt tokens the prefix index predicted cached on the endpoint it sent them to; "
      "divided by tidegate_prefix_index_prompt_tokens_total, compare with the engine's "
      "vllm:prefix_cache_hits_total / vllm:prefix_cache_queries_total",
      {"endpoint"});
  prefix_prompt_tokens = &registry.AddCounter(
      "tidegate_prefix_index_prompt_tokens_total",
      "Prompt tokens sent to the endpoint by a policy with a prefix index", {"endpoint"});
  for (size_t i = 0; i < pool.size(); ++i)
    if (pool.at(i).Active()) endpoint_up->With({pool.at(i).address()}).Set(1);
  auto& members = registry.AddGauge("tidegate_pool_endpoints",
                                    "Endpoints in the pool: active (taking requests) or draining "
                                    "(removed by discovery, finishing their requests)",
                                    {"state"});
  pool_active = &members.With({"active"});
  pool_draining = &members.With({"draining"});
}

void GatewayMetrics::RefreshEndpointGauges(const pool::Pool& pool,
                                           const pool::SaturationDetector& detector, Nanos now) {
  std::lock_guard lock(refresh_mu);
  std::vector<std::string> active;
  size_t draining = 0;
  for (size_t i = 0; i < pool.size(); ++i) {
    const pool::Endpoint& ep = pool.at(i);
    draining += ep.membership() == pool::Endpoint::Membership::kDraining ? 1 : 0;
    if (!ep.Active()) continue;
    active.push_back(ep.address());
    const std::vector<std::string> label{ep.address()};
    endpoint_up->With(label).Set(ep.Available(now) ? 1 : 0);
    endpoint_in_flight->With(label).Set(ep.InFlight());
    endpoint_saturation->With(label).Set(detector.Saturation(ep, now));
    endpoint_ejected->With(label).Set(ep.Ejected(now) ? 1 : 0);
    const pool::Endpoint::PrefixCheckFigures pc = ep.PrefixCheck();
    if (pc.predicted_prompt_tokens > 0) {
      auto catch_up = [](metrics::Counter& c, double v) {
        const auto target = static_cast<uint64_t>(v);
        if (target > c.Value()) c.Inc(target - c.Value());
      };
      catch_up(prefix_predicted_hit_tokens->With(label), pc.predicted_hit_tokens);
      catch_up(prefix_prompt_tokens->With(label), pc.predicted_prompt_tokens);
    }
  }
  pool_active->Set(static_cast<double>(active.size()));
  pool_draining->Set(static_cast<double>(draining));
  std::sort(active.begin(), active.end());
  for (auto* f : {endpoint_up, endpoint_in_flight, endpoint_saturation, endpoint_ejected})
    f->RetainFirstLabel(active);
}

}  // namespace tidegate::gateway
