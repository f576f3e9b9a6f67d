#include "pool/prober.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

#include "http/client.h"

namespace tidegate::pool {

namespace net = boost::asio;
using std::chrono::milliseconds;

struct Prober::Impl : std::enable_shared_from_this<Prober::Impl> {
  Impl(net::any_io_executor e, Pool& p, Nanos i, http::TlsOptions t)
      : ex(std::move(e)),
        pool(p),
        interval(i),
        tls(std::move(t)),
        gen(new std::atomic<uint64_t>[Pool::kMaxEndpoints]()) {}

  void Watch(size_t i) {
    const uint64_t g = gen[i].fetch_add(1) + 1;
    net::co_spawn(ex, Loop(i, g), net::detached);
  }

  net::awaitable<void> Loop(size_t i, uint64_t g) {
    auto self = shared_from_this();
    Endpoint& ep = pool.at(i);
    // Ends when stopped, when the endpoint leaves the pool, or when a newer loop took over.
    auto live = [&] { return !stopped.load() && gen[i].load() == g && ep.Active(); };
    http::Client client(ex, http::Url{ep.config().host, ep.config().port, "", ep.config().tls}, 1,
                        tls);
    net::steady_timer timer(ex);
    const bool health = interval.count() > 0;
    const Nanos period = health ? interval : Nanos(std::chrono::seconds(5));
    const Nanos timeout =
        std::max<Nanos>(milliseconds(1000), std::min<Nanos>(2 * period, milliseconds(5000)));
    bool first = true;
    while (live()) {
      std::string error;
      bool ok = true;
      if (health) {
        http::ClientRequest req;
        req.method = "GET";
        req.target = "/health";
        req.deadline = std::chrono::steady_clock::now() + timeout;
        req.fresh_connection = true;
        req.max_body_bytes = 1u << 20;
        http::ClientResponse r = co_await client.Send(req);
        ok = r.status != 0 && r.status < 500;
        if (r.status == 0) error = "/health: " + r.error;
        if (r.status >= 500) error = "/health answered HTTP " + std::to_string(r.status);
      }
      if (ok) co_await ReadModels(client, ep, timeout);
      if (health && ep.RecordProbe(ok, error)) {
        if (ok) {
          spdlog::info("endpoint {} is healthy again", ep.address());
        } else {
          spdlog::warn("endpoint {} failed its health check: {}", ep.address(), error);
        }
      }
      if (first) {
        first = false;
        tried[i].store(g);
      }
      timer.expires_after(period);
      co_await timer.async_wait(net::as_tuple(net::use_awaitable));
    }
  }

  net::awaitable<void> ReadModels(http::Client& client, Endpoint& ep, Nanos timeout) {
    http::ClientRequest req;
    req.method = "GET";
    req.target = "/v1/models";
    req.deadline = std::chrono::steady_clock::now() + timeout;
    req.max_body_bytes = 8u << 20;
    http::ClientResponse r = co_await client.Send(req);
    if (r.status != 200) co_return;
    auto doc = nlohmann::json::parse(r.body, nullptr, false);
    if (doc.is_discarded() || !doc.is_object() || !doc.contains("data") || !doc["data"].is_array())
      co_return;
    Endpoint::ServedList list;
    for (const auto& m : doc["data"]) {
      if (!m.is_object() || !m.contains("id") || !m["id"].is_string()) continue;
      const std::string id = m["id"].get<std::string>();
      if (list.owner.empty() && m.contains("owned_by") && m["owned_by"].is_string())
        list.owner = m["owned_by"].get<std::string>();
      // vLLM names an adapter's base model in `parent` (null for a base model).
      if (auto p = m.find("parent"); p != m.end()) {
        list.parents_known = true;
        if (p->is_string() && p->get<std::string>() != id) list.adapters.push_back(id);
      }
      list.models.push_back(id);
      list.objects.push_back(m.dump());
    }
    ep.SetServedModels(std::move(list));
  }

  net::any_io_executor ex;
  Pool& pool;
  Nanos interval;
  http::TlsOptions tls;
  std::atomic<bool> stopped{false};
  // Per slot: the generation of the loop whose first round is done (== gen[i] once it is).
  std::unique_ptr<std::atomic<uint64_t>[]> tried {
    new std::atomic<uint64_t>[ Pool::kMaxEndpoints ]()
  };
  std::unique_ptr<std::atomic<uint64_t>[]> gen;  // per slot: the current loop's generation
};

Prober::Prober(net::any_io_executor ex, Pool& pool, Nanos interval, http::TlsOptions tls)
    : impl_(std::make_shared<Impl>(std::move(ex), pool, interval, std::move(tls))) {}

Prober::~Prober() { Stop(); }

void Prober::Start() {
  for (size_t i = 0; i < impl_->pool.size(); ++i) {
    if (impl_->pool.at(i).Active()) impl_->Watch(i);
  }
}

void Prober::Added(size_t index) {
  if (!impl_->stopped.load()) impl_->Watch(index);
}

void Prober::Stop() { impl_->stopped.store(true); }

bool Prober::FirstRoundDone() const {
  const Impl& im = *impl_;
  for (size_t i = 0; i < im.pool.size(); ++i)
    if (im.pool.at(i).Active() && im.tried[i].load() != im.gen[i].load()) return false;
  return true;
}

}  // namespace tidegate::pool
