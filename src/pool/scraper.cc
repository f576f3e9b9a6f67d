#include "pool/scraper.h"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "http/client.h"

namespace tidegate::pool {

namespace net = boost::asio;

struct Scraper::Impl : std::enable_shared_from_this<Scraper::Impl> {
  Impl(net::any_io_executor e, Pool& p, ScraperConfig c, Clock& cl, metrics::Registry& r,
       std::function<void()> cb)
      : ex(std::move(e)), pool(p), cfg(std::move(c)), clock(cl), on_publish(std::move(cb)) {
    auto& fam = r.AddCounter("tidegate_scrape_errors_total",
                             "Failed reads of an endpoint's /metrics", {"endpoint"});
    for (size_t i = 0; i < pool.size(); ++i) errors.push_back(&fam.With({pool.at(i).address()}));
  }

  net::awaitable<void> Loop(size_t i) {
    auto self = shared_from_this();
    Endpoint& ep = pool.at(i);
    http::Client client(ex, http::Url{ep.config().host, ep.config().port, ""}, 1);
    net::steady_timer timer(ex);
    std::string last_error;
    const auto timeout = std::max<Nanos>(std::chrono::milliseconds(500), cfg.timeout);
    const Engine engine = i < cfg.engines.size() ? cfg.engines[i] : Engine::kVllm;
    while (!stopped.load()) {
      const auto started = std::chrono::steady_clock::now();
      http::ClientRequest req;
      req.method = "GET";
      req.target = "/metrics";
      req.deadline = started + timeout;
      req.max_body_bytes = 8u << 20;
      http::ClientResponse resp = co_await client.Send(req);
      const Nanos now = clock.Now();
      std::string error;
      if (resp.status == 200) {
        EndpointMetrics m;
        error = ParseEngineMetrics(engine, resp.body, now, &m);
        if (error.empty()) {
          // The served models (base and LoRA adapters) come from /v1/models when known.
          if (auto served = ep.ServedModels(); !served.empty()) {
            // Served models not named as a base model in the metric labels are LoRA adapters.
            for (const auto& id : served)
              if (!m.ServesModel(id)) m.lora_adapters.push_back(id);
            m.models = std::move(served);
            m.models_listed = true;
          }
          ep.PublishMetrics(std::move(m));
          if (on_publish) on_publish();
        }
      } else if (resp.status != 0) {
        error = "/metrics answered HTTP " + std::to_string(resp.status);
      } else {
        error = resp.error;
      }
      if (!error.empty()) {
        ep.RecordScrapeError(now, error);
        errors[i]->Inc();
        if (error != last_error)
          spdlog::warn("endpoint {}: cannot read metrics: {}", ep.address(), error);
      } else if (!last_error.empty()) {
        spdlog::info("endpoint {}: metrics readable again", ep.address());
      }
      last_error = std::move(error);
      timer.expires_at(started + cfg.interval);
      co_await timer.async_wait(net::as_tuple(net::use_awaitable));
    }
  }

  net::any_io_executor ex;
  Pool& pool;
  ScraperConfig cfg;
  Clock& clock;
  std::function<void()> on_publish;
  std::vector<metrics::Counter*> errors;
  std::atomic<bool> stopped{false};
};

Scraper::Scraper(net::any_io_executor ex, Pool& pool, ScraperConfig cfg, Clock& clock,
                 metrics::Registry& registry, std::function<void()> on_publish)
    : impl_(std::make_shared<Impl>(std::move(ex), pool, std::move(cfg), clock, registry,
                                   std::move(on_publish))) {}

Scraper::~Scraper() { Stop(); }

void Scraper::Start() {
  if (impl_->cfg.interval.count() <= 0) return;
  for (size_t i = 0; i < impl_->pool.size(); ++i)
    net::co_spawn(impl_->ex, impl_->Loop(i), net::detached);
}

void Scraper::Stop() { impl_->stopped.store(true); }

}  // namespace tidegate::pool
