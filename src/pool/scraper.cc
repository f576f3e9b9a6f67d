#include "pool/scraper.h"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <map>

#include "http/client.h"

// GCC 12 reports a false -Wmismatched-new-delete on the frame of the Loop coroutine below (the
// frame is allocated and freed by Asio's own awaitable_frame_base operators).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace tidegate::pool {

namespace net = boost::asio;

namespace {

struct Target {
  uint16_t port = 0;
  std::string path;
};

// What looking for an endpoint's metrics found.
struct Resolution {
  enum Kind { kFound, kNoMetrics, kError } kind = kError;
  std::optional<Engine> engine;
  bool detected = false;
  Target target;
  std::string message;  // kNoMetrics: the warning; kError: the error
};

// The first line of an error answer, for a log line ("HTTP 501: This server does not …").
std::string Gist(const http::ClientResponse& r) {
  std::string s = "HTTP " + std::to_string(r.status);
  std::string_view b = r.body;
  if (auto p = b.find("\"message\":\""); p != std::string_view::npos) {
    b.remove_prefix(p + 11);
    b = b.substr(0, b.find('"'));
  }
  b = b.substr(0, b.find('\n'));
  if (b.size() > 120) b = b.substr(0, 120);
  if (!b.empty()) s += " (" + std::string(b) + ")";
  return s;
}

// Served models and adapters come from /v1/models (see the header).
void FillModels(const Endpoint& ep, EndpointMetrics& m) {
  auto served = ep.ServedModels();
  if (served.empty()) return;
  bool parents_known = false;
  auto adapters = ep.ServedAdapters(&parents_known);
  if (parents_known) {
    m.lora_adapters = std::move(adapters);
  } else if (!m.models.empty()) {
    for (const auto& id : served)
      if (!m.ServesModel(id)) m.lora_adapters.push_back(id);
  }
  m.models = std::move(served);
  m.models_listed = true;
}

}  // namespace

struct Scraper::Impl : std::enable_shared_from_this<Scraper::Impl> {
  Impl(net::any_io_executor e, Pool& p, ScraperConfig c, Clock& cl, metrics::Registry& r,
       std::function<void()> cb)
      : ex(std::move(e)),
        pool(p),
        cfg(std::move(c)),
        clock(cl),
        on_publish(std::move(cb)),
        gen(new std::atomic<uint64_t>[Pool::kMaxEndpoints]()) {
    errors = &r.AddCounter("tidegate_scrape_errors_total", "Failed reads of an endpoint's /metrics",
                           {"endpoint"});
    for (size_t i = 0; i < pool.size(); ++i)
      if (pool.at(i).Active()) errors->With({pool.at(i).address()});
  }

  void Watch(size_t i) {
    const uint64_t g = gen[i].fetch_add(1) + 1;
    net::co_spawn(ex, Loop(i, g), net::detached);
  }

  // One endpoint's connections, one client per port it is read on.
  struct Reader {
    Impl& impl;
    const Endpoint& ep;
    std::map<uint16_t, std::unique_ptr<http::Client>> clients;

    std::string Url(const Target& t) const {
      return ep.config().host + ":" + std::to_string(t.port) + t.path;
    }
    http::Client& For(uint16_t port) {
      auto& c = clients[port];
      if (!c)
        c = std::make_unique<http::Client>(
            impl.ex, http::Url{ep.config().host, port, "", ep.config().tls}, 1, impl.cfg.tls);
      return *c;
    }
  };

  net::awaitable<http::ClientResponse> Get(Reader& rd, const Target& t) {
    http::ClientRequest req;
    req.method = "GET";
    req.target = t.path;
    req.deadline = std::chrono::steady_clock::now() +
                   std::max<Nanos>(std::chrono::milliseconds(500), cfg.timeout);
    req.max_body_bytes = 8u << 20;
    co_return co_await rd.For(t.port).Send(req);
  }

  std::vector<Target> Candidates(const Endpoint& ep, const std::optional<Engine>& engine) const {
    const EndpointConfig& c = ep.config();
    if (engine) {
      const EngineTraits& t = TraitsOf(*engine);
      return {{c.metrics_port   ? c.metrics_port
               : t.metrics_port ? t.metrics_port
                                : c.port,
               c.metrics_path.empty() ? std::string(t.metrics_path) : c.metrics_path}};
    }
    if (c.metrics_port || !c.metrics_path.empty())
      return {{c.metrics_port ? c.metrics_port : c.port,
               c.metrics_path.empty() ? "/metrics" : c.metrics_path}};
    std::vector<Target> v = {{c.port, "/metrics"}, {c.port, "/prometheus/metrics"}};
    const uint16_t triton = TraitsOf(Engine::kTritonTrtllm).metrics_port;
    if (c.port != triton) v.push_back({triton, "/metrics"});
    return v;
  }

  net::awaitable<Resolution> Resolve(Reader& rd, const std::optional<Engine>& configured) {
    const Endpoint& ep = rd.ep;
    const std::vector<Target> targets = Candidates(ep, configured);
    std::vector<std::string> notes;
    bool json_stats = false, wants_metrics_flag = false;
    std::optional<Engine> named = configured;
    for (size_t k = 0; k < targets.size(); ++k) {
      const Target& t = targets[k];
      http::ClientResponse r = co_await Get(rd, t);
      if (r.status == 0) {
        // The server itself (its first candidate) cannot be read: it is down, not metric-less.
        if (k == 0)
          co_return Resolution{Resolution::kError, {}, false, t, rd.Url(t) + ": " + r.error};
        notes.push_back(rd.Url(t) + ": " + r.error);
        continue;
      }
      if (r.status != 200) {
        if (r.status >= 500 && r.status != 501 && k == 0)
          co_return Resolution{
              Resolution::kError, {}, false, t, rd.Url(t) + " answered " + Gist(r)};
        wants_metrics_flag |= r.status == 501 && r.body.find("--metrics") != std::string::npos;
        notes.push_back(rd.Url(t) + " answered " + Gist(r));
        continue;
      }
      std::optional<Engine> engine = configured;
      bool detected = false;
      if (!engine) {
        const Detection d = DetectEngine(r.body);
        if (d.json_stats) {
          json_stats = true;
          notes.push_back(rd.Url(t) + " is JSON iteration statistics, not Prometheus text");
          continue;
        }
        engine = d.engine;
        detected = true;
        if (!engine) {
          notes.push_back(rd.Url(t) + " has no metric of a known engine");
          continue;
        }
      }
      EndpointMetrics m;
      MetricsParse p = ParseEngineMetricsPage(*engine, r.body, clock.Now(), &m);
      if (p.ok()) co_return Resolution{Resolution::kFound, engine, detected, t, {}};
      if (!p.missing)
        co_return Resolution{Resolution::kError, engine, detected, t, rd.Url(t) + ": " + p.error};
      named = engine;
      notes.push_back(rd.Url(t) + " lacks " + p.error.substr(p.error.find("missing ") + 8));
    }
    if (!named && json_stats) named = Engine::kTrtllmServe;
    if (!named && wants_metrics_flag) named = Engine::kLlamaCpp;
    if (!named) named = EngineFromOwner(ep.ServedOwner());
    std::string w = named ? std::string(EngineName(*named)) + " at " + ep.address()
                          : "endpoint " + ep.address();
    w += json_stats ? " exports no Prometheus metrics" : " exports no usable metrics";
    std::string joined;
    for (const auto& n : notes) joined += (joined.empty() ? "" : "; ") + n;
    if (!joined.empty()) w += " (" + joined + ")";
    w += ": ";
    w += named ? std::string(TraitsOf(*named).enable_hint)
               : std::string("set its engine, metrics_port and metrics_path in the config");
    w += "; routing it on in-flight accounting alone until its metrics appear";
    co_return Resolution{Resolution::kNoMetrics, named, !configured && named.has_value(), {}, w};
  }

  // The snapshot of an endpoint without metrics: this gateway's in-flight count, split at the
  // largest batch limit learnt on the endpoints that have metrics.
  EndpointMetrics InFlightSnapshot(size_t i, Nanos now) const {
    double limit = 0;
    for (size_t j = 0; j < pool.size(); ++j) {
      if (j == i || !pool.at(j).Active()) continue;
      auto snap = pool.at(j).Metrics();
      if (!snap || snap->in_flight_only) continue;
      limit = std::max(limit, pool.at(j).Load().batch_limit);
    }
    EndpointMetrics m;
    m.in_flight_only = true;
    m.scrape_time = now;
    const double in_flight = std::max(0, pool.at(i).InFlight());
    m.running = limit > 0 ? std::min(in_flight, limit) : in_flight;
    m.waiting = in_flight - m.running;
    return m;
  }

  net::awaitable<void> Loop(size_t i, uint64_t g) {
    auto self = shared_from_this();
    Endpoint& ep = pool.at(i);
    metrics::Counter& error_count = errors->With({ep.address()});
    auto reader = std::make_unique<Reader>(Reader{*this, ep, {}});
    Reader& rd = *reader;
    net::steady_timer timer(ex);
    const std::optional<Engine> configured = EngineOf(ep);
    // Ends when stopped, when the endpoint leaves the pool, or when a newer loop took over.
    auto live = [&] { return !stopped.load() && gen[i].load() == g && ep.Active(); };
    std::optional<Engine> engine = configured;
    std::optional<Target> source;
    bool in_flight_only = false;
    Nanos next_check{0};
    std::string last_error, last_warning;
    while (live()) {
      const auto started = std::chrono::steady_clock::now();
      std::string error;
      if (!source && (!in_flight_only || clock.Now() >= next_check)) {
        Resolution r = co_await Resolve(rd, configured);
        if (r.kind == Resolution::kFound) {
          source = r.target;
          engine = r.engine;
          if (in_flight_only || r.detected)
            spdlog::info("endpoint {}: reading {} metrics at {}{}", ep.address(),
                         EngineName(*engine), rd.Url(r.target),
                         r.detected ? " (engine recognised from the page)" : "");
          in_flight_only = false;
          last_warning.clear();
          ep.SetMetricsSource(
              {std::string(EngineName(*engine)), r.detected, rd.Url(r.target), false, {}});
        } else if (r.kind == Resolution::kNoMetrics) {
          in_flight_only = true;
          next_check = clock.Now() + cfg.recheck;
          if (r.message != last_warning) spdlog::warn("{}", r.message);
          last_warning = r.message;
          ep.SetMetricsSource({r.engine ? std::string(EngineName(*r.engine)) : "", r.detected, "",
                               true, r.message});
        } else {
          error = r.message;
          in_flight_only = false;  // the server cannot be read at all: stale, not estimated
        }
      }
      const Nanos now = clock.Now();
      if (source && engine) {
        http::ClientResponse resp = co_await Get(rd, *source);
        if (resp.status == 200) {
          EndpointMetrics m;
          MetricsParse p = ParseEngineMetricsPage(*engine, resp.body, now, &m);
          if (p.ok()) {
            FillModels(ep, m);
            ep.PublishMetrics(std::move(m));
            if (on_publish) on_publish();
          } else if (p.missing) {
            source.reset();  // find out again what the server exports (next round)
            engine = configured;
          } else {
            error = p.error;
          }
        } else if (resp.status == 404 || resp.status == 501) {
          source.reset();  // the page went away: look again
          engine = configured;
        } else if (resp.status != 0) {
          error = rd.Url(*source) + " answered " + Gist(resp);
        } else {
          error = resp.error;
        }
      }
      if (in_flight_only && !source) {
        EndpointMetrics m = InFlightSnapshot(i, now);
        FillModels(ep, m);
        ep.PublishMetrics(std::move(m));
        if (on_publish) on_publish();
      }
      if (!error.empty()) {
        ep.RecordScrapeError(now, error);
        error_count.Inc();
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
  // The engine named by the endpoint's config, else the default; nullopt = recognise it.
  std::optional<Engine> EngineOf(const Endpoint& ep) const {
    const std::string& name = ep.config().engine.empty() ? cfg.default_engine : ep.config().engine;
    return IsAutoEngine(name) ? std::nullopt : EngineFromName(name);
  }

  metrics::Family<metrics::Counter>* errors;
  std::atomic<bool> stopped{false};
  std::unique_ptr<std::atomic<uint64_t>[]> gen;  // per slot: the current loop's generation
};

Scraper::Scraper(net::any_io_executor ex, Pool& pool, ScraperConfig cfg, Clock& clock,
                 metrics::Registry& registry, std::function<void()> on_publish)
    : impl_(std::make_shared<Impl>(std::move(ex), pool, std::move(cfg), clock, registry,
                                   std::move(on_publish))) {}

Scraper::~Scraper() { Stop(); }

void Scraper::Start() {
  if (impl_->cfg.interval.count() <= 0) return;
  for (size_t i = 0; i < impl_->pool.size(); ++i)
    if (impl_->pool.at(i).Active()) impl_->Watch(i);
}

void Scraper::Added(size_t index) {
  if (impl_->cfg.interval.count() > 0 && !impl_->stopped.load()) impl_->Watch(index);
}

void Scraper::Stop() { impl_->stopped.store(true); }

}  // namespace tidegate::pool
