// pool/scraper.h — finds and reads every endpoint's metrics on a timer and publishes the
// snapshot.
//
// Contract: Start() spawns one loop per endpoint on `ex` (a control loop, never the data
// plane). Each loop GETs the endpoint's metrics page every `interval` over a keep-alive
// connection (at most max(timeout, 500 ms) per read, 8 MiB of body), parses it with the
// endpoint's engine mapping (pool/engine_metrics.h) and publishes it (Endpoint::PublishMetrics).
//
// Where the metrics are: the endpoint's metrics_port / metrics_path when configured, else the
// engine's default (pool::TraitsOf: trtllm-serve at /prometheus/metrics, Triton on port 8002).
// With engine "auto" (`engines[i]` empty) the loop first recognises the engine: it tries
// /metrics and /prometheus/metrics on the inference port, then /metrics on port 8002, and
// takes the first page whose metric names identify an engine (pool::DetectEngine). While the
// inference port itself cannot be reached it keeps trying (the endpoint is stale meanwhile).
//
// In-flight accounting: when the server answers but exports nothing usable — no recognisable
// page, trtllm-serve's JSON statistics without its Prometheus page, llama.cpp's 501 without
// --metrics, or a page lacking a required metric — the loop logs one warning that says what to
// change on the server, and publishes a snapshot made from this gateway's own in-flight count
// every interval instead (in_flight_only; waiting = in-flight beyond the largest batch limit
// learnt on the other endpoints, running = the rest), so the endpoint is routed, not left
// stale. It checks the metrics again every 10 s and says so when they appear.
//
// Model identity: served models come from the endpoint's /v1/models list when the prober has
// read it. LoRA adapters are the entries that name a `parent` when the list carries `parent`;
// otherwise, for engines whose labels name the served model, the listed models not named in
// the labels; otherwise none. A failed read or parse is recorded (Endpoint::RecordScrapeError:
// the endpoint turns stale), counted in tidegate_scrape_errors_total{endpoint}, and logged once
// per change of error. What was found is kept in Endpoint::GetMetricsSource (/v1/pool). After
// every publish `on_publish` runs (the gateway lets waiting requests in). Added(i) starts the
// loop of an endpoint that joined the pool later (or came back); a loop ends once its endpoint
// is no longer active or a newer loop for its slot started. Stop() makes the loops end at
// their next wake-up.
// Thread-safety: construct, Start() and Stop() from one thread; Added() from any thread; the
// loops run on `ex`.
#pragma once

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "common/clock.h"
#include "http/client.h"
#include "metrics/registry.h"
#include "pool/endpoint.h"
#include "pool/engine_metrics.h"

namespace tidegate::pool {

struct ScraperConfig {
  Nanos interval = std::chrono::milliseconds(50);
  Nanos timeout = std::chrono::seconds(2);
  Nanos recheck = std::chrono::seconds(10);  // how often an in-flight-only endpoint is re-read
  // For endpoints whose config names no engine: "auto" (or "") recognises it from the page.
  std::string default_engine = "auto";
  http::TlsOptions tls;  // for https:// endpoints
};

class Scraper {
 public:
  Scraper(boost::asio::any_io_executor ex, Pool& pool, ScraperConfig cfg, Clock& clock,
          metrics::Registry& registry, std::function<void()> on_publish = {});
  ~Scraper();
  void Start();
  void Added(size_t index);
  void Stop();

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace tidegate::pool
