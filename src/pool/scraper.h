// pool/scraper.h — reads every endpoint's /metrics on a timer and publishes the snapshot.
//
// Contract: Start() spawns one loop per endpoint on `ex` (a control loop, never the data
// plane). Each loop GETs /metrics every `interval` over a keep-alive connection (at most
// max(timeout, 500 ms) per read, 8 MiB of body), parses it with the endpoint's engine mapping
// (pool/engine_metrics.h) and publishes it (Endpoint::PublishMetrics); the served models and
// LoRA adapters come from the endpoint's /v1/models list when the prober has read it. A failed
// read or parse is recorded (Endpoint::RecordScrapeError: the endpoint turns stale), counted in
// tidegate_scrape_errors_total{endpoint}, and logged once per change of error. After every
// publish `on_publish` runs (the gateway lets waiting requests in). Stop() makes the loops end
// at their next wake-up.
// Thread-safety: construct, Start() and Stop() from one thread; the loops run on `ex`.
#pragma once

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <functional>
#include <memory>
#include <vector>

#include "common/clock.h"
#include "metrics/registry.h"
#include "pool/endpoint.h"
#include "pool/engine_metrics.h"

namespace tidegate::pool {

struct ScraperConfig {
  Nanos interval = std::chrono::milliseconds(50);
  Nanos timeout = std::chrono::seconds(2);
  std::vector<Engine> engines;  // per endpoint
};

class Scraper {
 public:
  Scraper(boost::asio::any_io_executor ex, Pool& pool, ScraperConfig cfg, Clock& clock,
          metrics::Registry& registry, std::function<void()> on_publish = {});
  ~Scraper();
  void Start();
  void Stop();

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace tidegate::pool
