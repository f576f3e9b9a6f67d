// The gateway's event loops, client sessions and the streaming proxy. This is the one translation
// unit of the gateway that includes Boost.Beast (compile time); see gateway.h for the contract.
#include <signal.h>
#include <spdlog/spdlog.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/container/static_vector.hpp>
#include <list>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <thread>
#include <unordered_map>

#include "common/clock.h"
#include "gateway/errors.h"
#include "gateway/gateway.h"
#include "gateway/request.h"
#include "gateway/wire.h"
#include "metrics/registry.h"
#include "pool/endpoint.h"
#include "pool/engine_metrics.h"
#include "sched/config.h"
#include "sched/picker.h"
#include "sched/policies.h"

namespace tidegate::gateway {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using net::awaitable;

namespace {

constexpr auto kTok = net::as_tuple(net::use_awaitable);
constexpr size_t kRelayBufBytes = 16 * 1024;
constexpr size_t kHeaderLimit = 64 * 1024;
constexpr uint64_t kUpstreamSmallBodyLimit = 8 * 1024 * 1024;

enum class Route {
  kChat,
  kCompletions,
  kEmbeddings,
  kModels,
  kMetrics,
  kHealthz,
  kReadyz,
  kPool,
  kCapacity,
  kOther
};

Route Classify(std::string_view path) {
  if (path == "/v1/chat/completions") return Route::kChat;
  if (path == "/v1/completions") return Route::kCompletions;
  if (path == "/v1/embeddings") return Route::kEmbeddings;
  if (path == "/v1/models") return Route::kModels;
  if (path == "/metrics") return Route::kMetrics;
  if (path == "/healthz") return Route::kHealthz;
  if (path == "/readyz") return Route::kReadyz;
  if (path == "/v1/pool") return Route::kPool;
  if (path == "/v1/capacity") return Route::kCapacity;
  return Route::kOther;
}

const char* RouteLabel(Route r) {
  switch (r) {
    case Route::kChat:
      return "/v1/chat/completions";
    case Route::kCompletions:
      return "/v1/completions";
    case Route::kEmbeddings:
      return "/v1/embeddings";
    case Route::kModels:
      return "/v1/models";
    default:
      return "other";
  }
}

bool IsHopByHop(http::field f) {
  switch (f) {
    case http::field::connection:
    case http::field::keep_alive:
    case http::field::proxy_connection:
    case http::field::te:
    case http::field::trailer:
    case http::field::transfer_encoding:
    case http::field::upgrade:
    case http::field::content_length:
    case http::field::host:
    case http::field::expect:
      return true;
    default:
      return false;
  }
}

bool CanParseBuffered(const beast::flat_buffer& b, bool chunked) {
  if (b.size() == 0) return false;
  if (!chunked) return true;  // everything buffered is body
  return ChunkedParserCanProgress(
      std::string_view(static_cast<const char*>(b.data().data()), b.size()));
}

constexpr std::string_view kCrlf = "\r\n", kLastChunk = "0\r\n\r\n";

// The "<hex size>\r\n" line that opens a chunk of `n` bytes, formatted into `buf`.
net::const_buffer ChunkSizeLine(char (&buf)[24], size_t n) {
  int len = std::snprintf(buf, sizeof buf, "%zx\r\n", n);
  return net::buffer(buf, static_cast<size_t>(len));
}

bool IsTimeout(const beast::error_code& ec) {
  return ec == beast::error::timeout || ec == net::error::timed_out;
}

class TimedSocket;

// The timeouts of one event loop, checked by a periodic sweep instead of a kernel timer per
// operation (re-arming a timer on every read and write cost a timerfd syscall each). Arming is
// a store of an integer; precision is the sweep period (kSweepPeriod).
class DeadlineSet {
 public:
  void Add(TimedSocket* s);
  void Remove(TimedSocket* s);
  void Sweep(int64_t now_ns);

 private:
  std::vector<TimedSocket*> items_;
};

constexpr auto kSweepPeriod = std::chrono::milliseconds(50);

int64_t SteadyNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// A TCP socket with a deadline, usable wherever Beast/Asio want an async stream. When the
// deadline passes, the sweep cancels the pending operations (they end with operation_aborted)
// and timed_out() turns true until the next expires_after().
class TimedSocket {
 public:
  using executor_type = tcp::socket::executor_type;
  TimedSocket(tcp::socket sock, DeadlineSet& set) : sock_(std::move(sock)), set_(set) {
    set_.Add(this);
  }
  ~TimedSocket() { set_.Remove(this); }
  TimedSocket(const TimedSocket&) = delete;
  TimedSocket& operator=(const TimedSocket&) = delete;

  executor_type get_executor() { return sock_.get_executor(); }
  template <typename Buffers, typename Token>
  auto async_read_some(const Buffers& b, Token&& t) {
    return sock_.async_read_some(b, std::forward<Token>(t));
  }
  template <typename Buffers, typename Token>
  auto async_write_some(const Buffers& b, Token&& t) {
    return sock_.async_write_some(b, std::forward<Token>(t));
  }
  tcp::socket& socket() { return sock_; }

  void expires_after(std::chrono::milliseconds d) {
    deadline_ns_ = SteadyNowNs() + std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
    fired_ = false;
  }
  void expires_never() { deadline_ns_ = 0; }
  bool timed_out() const { return fired_; }

 private:
  friend class DeadlineSet;
  tcp::socket sock_;
  DeadlineSet& set_;
  int64_t deadline_ns_ = 0;
  bool fired_ = false;
  size_t slot_ = 0;
};

void DeadlineSet::Add(TimedSocket* s) {
  s->slot_ = items_.size();
  items_.push_back(s);
}

void DeadlineSet::Remove(TimedSocket* s) {
  TimedSocket* last = items_.back();
  items_[s->slot_] = last;
  last->slot_ = s->slot_;
  items_.pop_back();
}

void DeadlineSet::Sweep(int64_t now_ns) {
  for (TimedSocket* s : items_) {
    if (s->deadline_ns_ != 0 && now_ns >= s->deadline_ns_) {
      s->deadline_ns_ = 0;
      s->fired_ = true;
      beast::error_code ig;
      s->sock_.cancel(ig);
    }
  }
}

// A timeout is an operation the sweep cancelled.
bool TimedOut(const beast::error_code& ec, const TimedSocket& s) {
  return s.timed_out() && (ec == net::error::operation_aborted || ec);
}

// An idle or busy keep-alive connection to one upstream endpoint.
struct UpConn {
  UpConn(const net::any_io_executor& ex, DeadlineSet& set) : stream(tcp::socket(ex), set) {
    buf.reserve(16 * 1024);  // Beast sizes each socket read by the free capacity
  }
  TimedSocket stream;
  beast::flat_buffer buf;
  std::string head;  // request head serialisation buffer, reused
};

// A client connection, tracked so a drain can close the idle ones.
struct SessionState {
  TimedSocket* stream = nullptr;
  bool idle = false;
};

// Per client connection: the state of the hang-up watch that runs while a request is upstream.
// Shared (shared_ptr, one per connection) with the pending wait's completion handler.
struct Watch {
  uint64_t gen = 0;  // bumped on every arm/disarm so a stale completion does nothing
  bool armed = false;
  bool client_gone = false;
  UpConn* upstream = nullptr;  // the connection to close if the client leaves
};

// Optional headers on a gateway-generated response.
struct Extra {
  const char* dropped_reason = nullptr;
  int retry_after = -1;
  const pool::Endpoint* endpoint = nullptr;
  const char* allow = nullptr;
  bool head_only = false;  // answering a HEAD request: headers (with Content-Length), no body
};

}  // namespace

struct Gateway::Impl {
  // One event loop and everything owned by it.
  struct Worker {
    DeadlineSet deadlines;  // declared first: outlives every socket of this loop
    net::io_context ioc{1};
    std::optional<net::executor_work_guard<net::io_context::executor_type>> guard;
    std::thread thread;
    std::vector<std::vector<std::unique_ptr<UpConn>>> idle;  // per endpoint index
    std::vector<std::unique_ptr<char[]>> relay_bufs;
    std::list<SessionState*> sessions;
    std::unordered_map<uint64_t, metrics::Counter*> request_counters;
  };

  // Everything one proxied request carries through its attempts.
  struct Call {
    Worker& w;
    TimedSocket& client;
    beast::flat_buffer& client_buf;
    std::shared_ptr<Watch>& watch;
    std::string& head;  // the session's response-head buffer
    std::string request_id;
    Route route;
    bool stream = false;
    bool keep_alive = true;
    Nanos start;
    bool head_only = false;
    pool::Endpoint* endpoint = nullptr;
    int status = 0;
  };

  enum class Outcome { kDone, kConnectFailed, kFailedBeforeResponse, kTimeout, kClientGone };
  struct AttemptResult {
    Outcome outcome;
    std::string detail;
  };

  explicit Impl(GatewayConfig c)
      : cfg(std::move(c)),
        clock(SystemClock::Instance()),
        pool(cfg.endpoints),

        acceptor(control) {
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
    duration[static_cast<int>(Route::kOther)] = &dur.With({"other"});
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
    client_disconnects =
        &registry
             .AddCounter("tidegate_client_disconnects_total",
                         "Requests whose client went away before the response finished (the "
                         "upstream connection was closed at once)")
             .With({});
    auto& up = registry.AddGauge("tidegate_endpoint_up",
                                 "1 if the endpoint is available for new requests", {"endpoint"});
    auto& inf =
        registry.AddGauge("tidegate_endpoint_in_flight",
                          "Requests this gateway has in flight to the endpoint", {"endpoint"});
    pool_saturation = &registry
                           .AddGauge("tidegate_pool_saturation",
                                     "Mean over endpoints of max(waiting/queue_threshold, "
                                     "kv/kv_threshold); stale endpoints count as 1 or more")
                           .With({});
    pool_capacity = &registry
                         .AddGauge("tidegate_pool_sheddable_capacity",
                                   "Estimate of how many more sheddable requests the pool can "
                                   "take now")
                         .With({});
    shed = &registry.AddCounter("tidegate_requests_shed_total",
                                "Requests refused for capacity, by reason (saturated)", {"reason"});
    auto& sat = registry.AddGauge("tidegate_endpoint_saturation",
                                  "max(waiting/queue_threshold, kv/kv_threshold) of the endpoint",
                                  {"endpoint"});
    auto& scrape_err = registry.AddCounter("tidegate_scrape_errors_total",
                                           "Failed reads of an endpoint's /metrics", {"endpoint"});
    saturation_cfg.queue_threshold = cfg.queue_threshold;
    saturation_cfg.kv_threshold = cfg.kv_threshold;
    saturation_cfg.stale_after = std::chrono::duration_cast<Nanos>(cfg.stale_after);
    last_scrape_log.resize(pool.size());
    for (size_t i = 0; i < pool.size(); ++i) {
      endpoint_saturation.push_back(&sat.With({pool.at(i).address()}));
      scrape_errors.push_back(&scrape_err.With({pool.at(i).address()}));
      const auto& ecfg = pool.at(i).config();
      engines.push_back(pool::EngineFromName(ecfg.engine.empty() ? cfg.default_engine : ecfg.engine)
                            .value_or(pool::Engine{}));
      endpoint_up.push_back(&up.With({pool.at(i).address()}));
      endpoint_in_flight.push_back(&inf.With({pool.at(i).address()}));
      endpoint_up.back()->Set(1);
    }
  }

  // ---------------------------------------------------------------- metrics helpers

  metrics::Counter& RequestCounter(Worker& w, Route route, int status, const pool::Endpoint* ep) {
    uint64_t key = (static_cast<uint64_t>(route) << 48) | (static_cast<uint64_t>(status) << 32) |
                   (ep ? ep->index() + 1 : 0);
    auto it = w.request_counters.find(key);
    if (it != w.request_counters.end()) return *it->second;
    auto& c = requests_total->With(
        {RouteLabel(route), std::to_string(status), ep ? ep->address() : std::string("none")});
    w.request_counters.emplace(key, &c);
    return c;
  }

  void UpstreamError(const pool::Endpoint& ep, const char* reason, const std::string& detail) {
    upstream_errors->With({ep.address(), reason}).Inc();
    spdlog::warn("upstream {} {}: {}", ep.address(), reason, detail);
  }

  std::string RenderMetrics() {
    auto now = clock.Now();
    for (size_t i = 0; i < pool.size(); ++i) {
      endpoint_up[i]->Set(pool.at(i).Available(now) ? 1 : 0);
      endpoint_in_flight[i]->Set(pool.at(i).InFlight());
      endpoint_saturation[i]->Set(pool.at(i).Saturation(now, saturation_cfg));
    }
    return registry.Render();
  }

  // ---------------------------------------------------------------- simple responses

  awaitable<bool> WriteResponse(TimedSocket& s, http::status status, bool keep_alive,
                                const std::string& request_id, std::string_view content_type,
                                std::string body, const Extra& extra = {}) {
    http::response<http::string_body> res{status, 11};
    res.set(http::field::server, "tidegate");
    res.set(http::field::content_type, content_type);
    if (!request_id.empty()) res.set("x-request-id", request_id);
    if (extra.endpoint) res.set("x-gateway-destination-endpoint", extra.endpoint->address());
    if (extra.dropped_reason) res.set("x-gateway-request-dropped-reason", extra.dropped_reason);
    if (extra.retry_after >= 0)
      res.set(http::field::retry_after, std::to_string(extra.retry_after));
    if (extra.allow) res.set(http::field::allow, extra.allow);
    res.keep_alive(keep_alive && !draining.load());
    res.body() = std::move(body);
    res.prepare_payload();
    s.expires_after(cfg.stream_idle_timeout);
    beast::error_code ec;
    size_t n;
    if (extra.head_only) {
      http::response_serializer<http::string_body> sr{res};
      std::tie(ec, n) = co_await http::async_write_header(s, sr, kTok);
    } else {
      std::tie(ec, n) = co_await http::async_write(s, res, kTok);
    }
    s.expires_never();
    co_return !ec && res.keep_alive();
  }

  awaitable<bool> WriteError(Call& call, http::status status, std::string_view message,
                             std::string_view type, std::string_view code, Extra extra = {}) {
    call.status = static_cast<int>(status);
    extra.head_only = call.head_only;
    co_return co_await WriteResponse(call.client, status, call.keep_alive, call.request_id,
                                     "application/json", ErrorBody(message, type, code), extra);
  }

  // Sends a final error on a connection we are about to close, then reads and discards what the
  // client is still sending for a moment, so the response is not lost to a TCP reset.
  awaitable<void> ErrorAndClose(TimedSocket& s, beast::flat_buffer& buf, http::status status,
                                std::string message, const char* code) {
    co_await WriteResponse(s, status, false, NewRequestId(), "application/json",
                           ErrorBody(message, "invalid_request_error", code));
    beast::error_code ec;
    s.socket().shutdown(tcp::socket::shutdown_send, ec);
    size_t drained = 0;
    s.expires_after(std::chrono::milliseconds(2000));
    while (drained < 64 * 1024 * 1024) {
      buf.clear();
      auto [rec, n] = co_await s.async_read_some(buf.prepare(64 * 1024), kTok);
      if (rec) break;
      drained += n;
    }
    s.expires_never();
  }

  // ---------------------------------------------------------------- client sessions

  awaitable<void> Session(Worker& w, tcp::socket sock) {
    beast::error_code ec;
    sock.set_option(tcp::no_delay(true), ec);
    TimedSocket stream(std::move(sock), w.deadlines);
    beast::flat_buffer buf;
    buf.reserve(8 * 1024);
    SessionState state{&stream, false};
    auto watch = std::make_shared<Watch>();
    std::string head;
    auto it = w.sessions.insert(w.sessions.end(), &state);
    active_sessions.fetch_add(1);

    for (;;) {
      if (draining.load()) break;
      http::request_parser<http::string_body> parser;
      parser.header_limit(kHeaderLimit);
      parser.body_limit(cfg.max_body_bytes);
      state.idle = true;
      stream.expires_after(cfg.client_idle_timeout);
      auto [rec, n] = co_await http::async_read_header(stream, buf, parser, kTok);
      state.idle = false;
      if (!rec && !parser.is_done()) {
        if (parser.get()[http::field::expect] == "100-continue") {
          static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
          auto [wec, wn] = co_await net::async_write(stream, net::buffer(kContinue), kTok);
          if (wec) break;
        }
        std::tie(rec, n) = co_await http::async_read(stream, buf, parser, kTok);
      }
      stream.expires_never();
      if (rec) {
        if (rec == http::error::body_limit) {
          co_await ErrorAndClose(stream, buf, http::status::payload_too_large,
                                 "request body exceeds the gateway's limit of " +
                                     std::to_string(cfg.max_body_bytes) +
                                     " bytes (raise it with --max-body-bytes)",
                                 "body_too_large");
        } else if (rec == http::error::header_limit) {
          co_await ErrorAndClose(stream, buf, http::status::request_header_fields_too_large,
                                 "request headers exceed 64 KiB", "headers_too_large");
        } else if (rec.category() ==
                       beast::http::make_error_code(http::error::bad_target).category() &&
                   rec != http::error::end_of_stream && rec != http::error::partial_message) {
          co_await ErrorAndClose(stream, buf, http::status::bad_request,
                                 "malformed HTTP request: " + rec.message(), "bad_request");
        }
        break;  // eof, timeout, reset or cancelled by a drain
      }
      bool keep = co_await Handle(w, stream, buf, watch, head, parser.release());
      if (!keep) break;
    }
    stream.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream.socket().close(ec);
    w.sessions.erase(it);
    active_sessions.fetch_sub(1);
  }

  awaitable<bool> Handle(Worker& w, TimedSocket& stream, beast::flat_buffer& buf,
                         std::shared_ptr<Watch>& watch, std::string& head,
                         http::request<http::string_body> req) {
    Nanos start = clock.Now();
    std::string_view target = req.target();
    std::string_view path = target.substr(0, target.find('?'));
    Route route = Classify(path);
    std::string request_id;
    if (auto rid = req["x-request-id"]; !rid.empty() && rid.size() <= 256) {
      request_id.assign(rid);
    } else {
      request_id = NewRequestId();
    }
    bool keep_alive = req.keep_alive();
    const bool is_get = req.method() == http::verb::get;
    const bool is_post = req.method() == http::verb::post;
    const bool is_head = req.method() == http::verb::head;
    const Extra head_extra{.head_only = is_head};

    switch (route) {
      case Route::kHealthz:
        co_return co_await WriteResponse(stream, http::status::ok, keep_alive, request_id,
                                         "application/json", "{\"status\":\"ok\"}", head_extra);
      case Route::kReadyz: {
        size_t avail = pool.AvailableCount(clock.Now());
        bool ready = avail > 0 && !draining.load();
        std::string body =
            ready ? "{\"status\":\"ready\",\"available_endpoints\":" + std::to_string(avail) + "}"
                  : ErrorBody(draining.load() ? "the gateway is draining"
                                              : "no model server endpoint is "
                                                "available",
                              "service_unavailable", "not_ready");
        co_return co_await WriteResponse(
            stream, ready ? http::status::ok : http::status::service_unavailable, keep_alive,
            request_id, "application/json", std::move(body), head_extra);
      }
      case Route::kMetrics:
        co_return co_await WriteResponse(stream, http::status::ok, keep_alive, request_id,
                                         "text/plain; version=0.0.4; charset=utf-8",
                                         RenderMetrics(), head_extra);
      case Route::kPool:
        co_return co_await WriteResponse(stream, http::status::ok, keep_alive, request_id,
                                         "application/json", PoolJson(), head_extra);
      case Route::kCapacity:
        co_return co_await WriteResponse(stream, http::status::ok, keep_alive, request_id,
                                         "application/json", CapacityJson(), head_extra);
      default:
        break;
    }

    in_flight->Add(1);
    Call call{w,     stream, buf,        watch, head,   std::move(request_id),
              route, false,  keep_alive, start, is_head};
    bool keep = false;
    if (route == Route::kOther) {
      keep = co_await WriteError(call, http::status::not_found,
                                 "no route for " + std::string(req.method_string()) + " " +
                                     std::string(path) +
                                     "; the gateway serves /v1/chat/completions, /v1/completions, "
                                     "/v1/embeddings and /v1/models",
                                 "invalid_request_error", "not_found");
    } else if (route == Route::kModels) {
      if (!is_get) {
        keep = co_await WriteError(call, http::status::method_not_allowed,
                                   "/v1/models only accepts GET", "invalid_request_error",
                                   "method_not_allowed", {.allow = "GET"});
      } else {
        keep = co_await Models(call);
      }
    } else if (!is_post) {
      keep = co_await WriteError(call, http::status::method_not_allowed,
                                 std::string(path) + " only accepts POST", "invalid_request_error",
                                 "method_not_allowed", {.allow = "POST"});
    } else {
      keep = co_await Proxy(call, req);
    }
    in_flight->Add(-1);
    double seconds = ToSeconds(clock.Now() - start);
    duration[static_cast<int>(route)]->Observe(seconds);
    RequestCounter(w, route, call.status, call.endpoint).Inc();
    spdlog::debug("{} {} {} {} {:.1f}ms id={}", req.method_string(), path, call.status,
                  call.endpoint ? call.endpoint->address() : "-", seconds * 1000, call.request_id);
    co_return keep;
  }

  // ---------------------------------------------------------------- proxying

  awaitable<bool> Proxy(Call& call, http::request<http::string_body>& req) {
    BodyInfo info = InspectBody(req.body());
    if (!info.error.empty()) {
      co_return co_await WriteError(call, http::status::bad_request, info.error,
                                    "invalid_request_error", info.code);
    }
    call.stream = info.stream;

    // The objective decides the priority: higher wins, negative is sheddable.
    int priority = 0;
    std::string_view objective = req["x-gateway-inference-objective"];
    if (!objective.empty()) {
      auto it = cfg.objectives.find(std::string(objective));
      if (it == cfg.objectives.end()) {
        // (The message is built outside the co_await: GCC 12 mishandles some temporaries in
        // co_await operands.)
        std::string known;
        for (const auto& [name, p] : cfg.objectives) known += (known.empty() ? "" : ", ") + name;
        if (known.empty()) known = "none";
        std::string message = "unknown objective '" + std::string(objective) +
                              "' in x-gateway-inference-objective (configured: " + known + ")";
        co_return co_await WriteError(call, http::status::bad_request, message,
                                      "invalid_request_error", "unknown_objective");
      }
      priority = it->second;
    } else if (!cfg.default_objective.empty()) {
      priority = cfg.objectives.at(cfg.default_objective);  // checked by Validate()
    }

    Nanos now = clock.Now();
    if (priority < 0 && pool.Saturation(now, saturation_cfg) >= 1.0) {
      co_return co_await Shed(call, priority);
    }
    sched::RequestInfo ri;
    ri.path = RouteLabel(call.route);
    ri.model = info.model;
    ri.stream = info.stream;
    ri.body_bytes = req.body().size();
    ri.prompt = info.prompt;
    ri.session_id = req["x-session-id"];
    ri.priority = priority;
    sched::PickResult pick = picker->Pick(ri, pool, now);
    if (pick.empty()) {
      if (std::string served; UnservedModel(info.model, now, &served)) {
        std::string message = "the model '" + info.model +
                              "' is not served by any endpoint of this gateway (served: " + served +
                              ")";
        co_return co_await WriteError(call, http::status::not_found, message,
                                      "invalid_request_error", "model_not_found");
      }
      if (priority < 0) co_return co_await Shed(call, priority);
      co_return co_await NoEndpoints(call);
    }
    if (cfg.forward_priority && priority != 0 && !info.has_priority && req.body().size() > 1 &&
        req.body().front() == '{') {
      // vLLM's priority scheduling serves lower values first.
      std::string field = "\"priority\":" + std::to_string(-priority);
      const size_t next = req.body().find_first_not_of(" \t\r\n", 1);
      if (next != std::string::npos && req.body()[next] != '}') field += ',';
      req.body().insert(1, field);
    }

    ArmWatch(call);
    bool keep = false;
    std::string failures;
    bool all_connect_failures = true;
    const uint32_t attempts = std::min<uint32_t>(pick.count, 2);
    for (uint32_t a = 0; a < attempts && !call.watch->client_gone; ++a) {
      pool::Endpoint& ep = pool.at(pick.order[a]);
      if (a > 0) retries->Inc();
      call.endpoint = &ep;
      ep.AddInFlight(1);
      AttemptResult r = co_await Attempt(call, req, ep, keep);
      ep.AddInFlight(-1);
      if (r.outcome == Outcome::kDone) break;
      if (r.outcome == Outcome::kClientGone) break;
      if (r.outcome == Outcome::kTimeout) {
        DisarmWatch(call);
        keep = co_await WriteError(call, http::status::gateway_timeout,
                                   "the model server at " + ep.address() +
                                       " did not start responding within " +
                                       std::to_string(cfg.ttfb_timeout.count()) + " ms",
                                   "upstream_timeout", "upstream_timeout", {.endpoint = &ep});
        break;
      }
      if (r.outcome != Outcome::kConnectFailed) all_connect_failures = false;
      failures += (failures.empty() ? "" : "; ") + ep.address() + ": " + r.detail;
      if (a + 1 == attempts && !call.watch->client_gone) {
        DisarmWatch(call);
        if (all_connect_failures && pool.AvailableCount(clock.Now()) == 0) {
          call.endpoint = nullptr;
          keep = co_await NoEndpoints(call);
        } else {
          keep = co_await WriteError(call, http::status::bad_gateway,
                                     "the model server failed before responding (" + failures + ")",
                                     "upstream_error", "upstream_failed", {.endpoint = &ep});
        }
      }
    }
    if (call.watch->client_gone) {
      client_disconnects->Inc();
      call.status = 499;  // nginx's "client closed request"
      keep = false;
    }
    DisarmWatch(call);
    co_return keep;
  }

  // True when every available endpoint has published its model list and none lists `model`
  // (then the client named a wrong model: 404, not a capacity problem). *served lists them.
  bool UnservedModel(const std::string& model, Nanos now, std::string* served) {
    std::set<std::string> all;
    bool any = false;
    for (size_t i = 0; i < pool.size(); ++i) {
      const auto& ep = pool.at(i);
      if (!ep.Available(now)) continue;
      auto models = ep.ServedModels();
      if (models.empty()) return false;  // unknown: cannot tell
      any = true;
      for (auto& m : models) {
        if (m == model) return false;
        all.insert(std::move(m));
      }
    }
    for (const auto& m : all) *served += (served->empty() ? "" : ", ") + m;
    return any;
  }

  awaitable<bool> Shed(Call& call, int priority) {
    shed->With({"saturated"}).Inc();
    int retry_after = static_cast<int>((cap_retry_after_ms.load() + 999) / 1000);
    retry_after = std::max(1, retry_after);
    char sat[32];
    std::snprintf(sat, sizeof sat, "%.2f", cap_saturation.load());
    co_return co_await WriteError(call, http::status::too_many_requests,
                                  std::string("the model server pool is saturated (saturation ") +
                                      sat + "); sheddable requests (priority " +
                                      std::to_string(priority) +
                                      ") are refused until capacity returns, retry after " +
                                      std::to_string(retry_after) + " s",
                                  "rate_limit_exceeded", "saturated",
                                  {.dropped_reason = "saturated", .retry_after = retry_after});
  }

  std::string PoolJson() {
    Nanos now = clock.Now();
    nlohmann::ordered_json eps = nlohmann::ordered_json::array();
    for (size_t i = 0; i < pool.size(); ++i) {
      const auto& ep = pool.at(i);
      auto load = ep.Load();
      auto snap = ep.Metrics();
      nlohmann::ordered_json e;
      e["address"] = ep.address();
      e["engine"] = ep.config().engine.empty() ? cfg.default_engine : ep.config().engine;
      e["available"] = ep.Available(now);
      e["stale"] = load.Stale(now, saturation_cfg.stale_after);
      e["waiting"] = load.waiting;
      e["running"] = load.running;
      e["kv_usage"] = load.kv_usage;
      e["in_flight"] = ep.InFlight();
      e["saturation"] = load.Saturation(now, saturation_cfg);
      auto served = ep.ServedModels();
      e["models"] = !served.empty() ? served : snap ? snap->models : std::vector<std::string>{};
      e["running_lora_adapters"] = snap ? snap->running_lora_adapters : std::vector<std::string>{};
      e["waiting_lora_adapters"] = snap ? snap->waiting_lora_adapters : std::vector<std::string>{};
      std::string err = ep.LastScrapeError();
      if (err.empty() && !ep.ProbeOk()) err = ep.LastError();
      e["last_error"] = err;
      e["scrape_age_ms"] =
          load.has_metrics
              ? std::chrono::duration_cast<std::chrono::milliseconds>(now - load.scrape_time)
                    .count()
              : -1;
      eps.push_back(std::move(e));
    }
    nlohmann::ordered_json out;
    out["saturation"] = pool.Saturation(now, saturation_cfg);
    out["endpoints"] = std::move(eps);
    return out.dump();
  }

  std::string CapacityJson() {
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "{\"saturation\":%.4f,\"sheddable_capacity\":%lld,\"retry_after_ms\":%lld,"
                  "\"endpoints\":%zu,\"fresh_endpoints\":%d}",
                  cap_saturation.load(), static_cast<long long>(cap_sheddable.load()),
                  static_cast<long long>(cap_retry_after_ms.load()), pool.size(), cap_fresh.load());
    return buf;
  }

  awaitable<bool> NoEndpoints(Call& call) {
    Nanos now = clock.Now();
    Nanos recovery = pool.EarliestRecovery();
    int retry_after = static_cast<int>(
        std::max<int64_t>(1, std::chrono::duration_cast<std::chrono::seconds>(
                                 std::max(recovery - now, Nanos{cfg.health_interval}))
                                     .count() +
                                 1));
    co_return co_await WriteError(call, http::status::service_unavailable,
                                  "no model server endpoint is available to serve this request (" +
                                      std::to_string(pool.size()) +
                                      " configured, none reachable or healthy)",
                                  "service_unavailable", "no_endpoints",
                                  {.dropped_reason = "no-endpoints", .retry_after = retry_after});
  }

  // Watching the client for a hang-up while the request is upstream: a readiness wait (no read,
  // no syscall in the common case). When the socket turns readable we peek: end-of-stream or
  // an error means the client left, and the upstream connection is closed at once so the model
  // server stops generating and frees the request's KV cache. Bytes (a pipelined request) just
  // end the watch.
  void ArmWatch(Call& call) {
    Watch& w = *call.watch;
    const uint64_t gen = ++w.gen;
    w.armed = true;
    w.client_gone = false;
    w.upstream = nullptr;
    tcp::socket& sock = call.client.socket();
    sock.async_wait(tcp::socket::wait_read,
                    [wp = call.watch, gen, &sock](const beast::error_code& ec) {
                      if (ec || wp->gen != gen || !wp->armed) return;  // disarmed: touch nothing
                      char c;
                      ssize_t n = ::recv(sock.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
                      if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR))) return;
                      wp->client_gone = true;
                      if (wp->upstream) {
                        beast::error_code ig;
                        wp->upstream->stream.socket().shutdown(tcp::socket::shutdown_both, ig);
                        wp->upstream->stream.socket().close(ig);
                      }
                    });
  }

  void DisarmWatch(Call& call) {
    Watch& w = *call.watch;
    if (!w.armed) return;
    w.armed = false;
    ++w.gen;
    w.upstream = nullptr;
    beast::error_code ig;
    call.client.socket().cancel(ig);
  }

  std::unique_ptr<UpConn> PopIdle(Worker& w, size_t ep) {
    auto& v = w.idle[ep];
    if (v.empty()) return nullptr;
    auto c = std::move(v.back());
    v.pop_back();
    return c;
  }

  void PushIdle(Worker& w, size_t ep, std::unique_ptr<UpConn> c) {
    auto& v = w.idle[ep];
    if (v.size() >= cfg.max_idle_upstream_conns || draining.load()) return;
    c->buf.clear();
    v.push_back(std::move(c));
  }

  awaitable<std::pair<std::unique_ptr<UpConn>, AttemptResult>> Connect(Worker& w,
                                                                       pool::Endpoint& ep) {
    auto conn = std::make_unique<UpConn>(w.ioc.get_executor(), w.deadlines);
    conn->stream.expires_after(cfg.connect_timeout);
    auto [ec, e] = co_await net::async_connect(conn->stream.socket(), resolved[ep.index()], kTok);
    conn->stream.expires_never();
    if (ec) {
      ep.RecordConnectFailure(clock.Now());
      const bool timed_out = TimedOut(ec, conn->stream);
      if (timed_out) ec = net::error::timed_out;
      const char* reason = timed_out ? "connect_timeout" : "connect_refused";
      UpstreamError(ep, reason, ec.message());
      co_return std::pair{
          nullptr, AttemptResult{Outcome::kConnectFailed, "cannot connect (" + ec.message() + ")"}};
    }
    beast::error_code ig;
    conn->stream.socket().set_option(tcp::no_delay(true), ig);
    co_return std::pair{std::move(conn), AttemptResult{Outcome::kDone, {}}};
  }

  // Serialises the upstream request head into conn->head (reused, so no allocation once warm):
  // same method, target and end-to-end headers as the client's, our Host and x-request-id.
  void BuildUpstreamHead(const Call& call, const http::request<http::string_body>& req,
                         const pool::Endpoint& ep, std::string& h) {
    h.clear();
    h.append(req.method_string()).append(" ").append(req.target()).append(" HTTP/1.1\r\nHost: ");
    h.append(ep.address()).append("\r\n");
    for (const auto& f : req) {
      if (IsHopByHop(f.name())) continue;
      if (f.name() == http::field::unknown && beast::iequals(f.name_string(), "x-request-id"))
        continue;
      h.append(f.name_string()).append(": ").append(f.value()).append("\r\n");
    }
    h.append("x-request-id: ").append(call.request_id).append("\r\n");
    h.append("Content-Length: ").append(std::to_string(req.body().size())).append("\r\n\r\n");
  }

  // One endpoint: send the request, and once the response header arrives, relay the response.
  awaitable<AttemptResult> Attempt(Call& call, const http::request<http::string_body>& req,
                                   pool::Endpoint& ep, bool& keep) {
    Worker& w = call.w;
    std::unique_ptr<UpConn> conn = PopIdle(w, ep.index());
    bool reused = conn != nullptr;
    std::optional<http::response_parser<http::buffer_body>> rp;
    for (;;) {
      rp.emplace();
      if (!conn) {
        auto [c, r] = co_await Connect(w, ep);
        if (!c) co_return r;
        conn = std::move(c);
      }
      if (call.watch->client_gone) co_return AttemptResult{Outcome::kClientGone, {}};
      call.watch->upstream = conn.get();
      BuildUpstreamHead(call, req, ep, conn->head);
      conn->stream.expires_after(cfg.ttfb_timeout);
      std::array<net::const_buffer, 2> out{net::buffer(conn->head), net::buffer(req.body())};
      auto [ec, n] = co_await net::async_write(conn->stream, out, kTok);
      if (!ec) {
        rp->header_limit(kHeaderLimit);
        rp->body_limit(boost::none);
        std::tie(ec, n) = co_await http::async_read_header(conn->stream, conn->buf, *rp, kTok);
      }
      conn->stream.expires_never();
      if (!ec) break;
      call.watch->upstream = nullptr;
      if (call.watch->client_gone) co_return AttemptResult{Outcome::kClientGone, {}};
      if (TimedOut(ec, conn->stream)) {
        UpstreamError(ep, "ttfb_timeout", "no response header in time");
        co_return AttemptResult{Outcome::kTimeout, {}};
      }
      if (reused) {
        // A pooled keep-alive connection the server had already closed: reconnect once.
        conn.reset();
        reused = false;
        continue;
      }
      UpstreamError(ep, "closed_before_response", ec.message());
      co_return AttemptResult{Outcome::kFailedBeforeResponse,
                              "closed the connection before responding (" + ec.message() + ")"};
    }
    ep.RecordSuccess();
    co_return co_await Relay(call, ep, std::move(conn), *rp, keep);
  }

  // Writes a gather list to the client, bounded by the stream idle timeout.
  template <typename Buffers>
  awaitable<beast::error_code> WriteClient(TimedSocket& s, const Buffers& buffers) {
    s.expires_after(cfg.stream_idle_timeout);
    auto [ec, n] = co_await net::async_write(s, buffers, kTok);
    s.expires_never();
    co_return ec;
  }

  awaitable<AttemptResult> Relay(Call& call, pool::Endpoint& ep, std::unique_ptr<UpConn> conn,
                                 http::response_parser<http::buffer_body>& rp, bool& keep) {
    Worker& w = call.w;
    auto& up_res = rp.get();
    call.status = up_res.result_int();
    const bool sse = up_res[http::field::content_type].starts_with("text/event-stream");
    const auto content_length = rp.content_length();
    const bool chunked = !content_length;
    keep = call.keep_alive && !draining.load();

    // The response head, serialised by hand into the session's reusable buffer.
    std::string& h = call.head;
    h.clear();
    h.append("HTTP/1.1 ").append(std::to_string(call.status)).append(" ");
    h.append(http::obsolete_reason(up_res.result())).append("\r\n");
    for (const auto& f : up_res) {
      if (IsHopByHop(f.name())) continue;
      h.append(f.name_string()).append(": ").append(f.value()).append("\r\n");
    }
    h.append("x-gateway-destination-endpoint: ").append(ep.address()).append("\r\n");
    h.append("x-request-id: ").append(call.request_id).append("\r\n");
    if (chunked) {
      h.append("Transfer-Encoding: chunked\r\n");
    } else {
      h.append("Content-Length: ").append(std::to_string(*content_length)).append("\r\n");
    }
    if (!keep) h.append("Connection: close\r\n");
    h.append("\r\n");

    auto client_gone = [&]() -> AttemptResult {
      beast::error_code ig;
      conn->stream.socket().shutdown(tcp::socket::shutdown_both, ig);
      conn->stream.socket().close(ig);
      call.watch->upstream = nullptr;
      call.watch->client_gone = true;
      keep = false;
      return AttemptResult{Outcome::kClientGone, {}};
    };

    std::unique_ptr<char[]> chunk;
    if (!w.relay_bufs.empty()) {
      chunk = std::move(w.relay_bufs.back());
      w.relay_bufs.pop_back();
    } else {
      chunk.reset(new char[kRelayBufBytes]);
    }
    // The head goes out together with the first body bytes when they arrived with it (one
    // write, one TCP segment for a small response); otherwise at once, so a client waiting on a
    // slow first token still sees the status promptly.
    bool head_pending = true;
    bool first = true;
    const char* failure = nullptr;
    beast::error_code fail_ec;
    for (;;) {
      size_t got = 0;
      // Read what is available; keep parsing while more is already buffered (no socket read),
      // so one client write carries everything that arrived together.
      while (!rp.is_done() && !(head_pending && conn->buf.size() == 0) && got < kRelayBufBytes) {
        const size_t room = kRelayBufBytes - got;
        up_res.body().data = chunk.get() + got;
        up_res.body().size = room;
        conn->stream.expires_after(cfg.stream_idle_timeout);
        auto [ec, n] = co_await http::async_read_some(conn->stream, conn->buf, rp, kTok);
        conn->stream.expires_never();
        if (ec == http::error::need_buffer) ec = {};
        if (call.watch->client_gone) break;
        if (ec) {
          if (TimedOut(ec, conn->stream)) ec = net::error::timed_out;
          failure = IsTimeout(ec) ? "stream_idle_timeout" : "disconnected_mid_stream";
          fail_ec = ec;
          break;
        }
        const size_t produced = room - up_res.body().size;
        got += produced;
        // A read that parsed only a chunk header produced nothing yet: go on to its data.
        if (produced == 0 && conn->buf.size() > 0) continue;
        if (!CanParseBuffered(conn->buf, chunked)) break;
      }
      if (call.watch->client_gone) break;
      if (failure && !head_pending && got == 0) break;
      const bool done = rp.is_done() && !failure;
      if (got == 0 && !head_pending && !(done && chunked)) {
        if (done) break;
        continue;
      }
      if (got > 0 && first) {
        first = false;
        if (call.stream) ttft->Observe(ToSeconds(clock.Now() - call.start));
      }
      // Backpressure: the next upstream read starts only after this client write completes.
      boost::container::static_vector<net::const_buffer, 5> out;
      char size_line[24];
      if (head_pending) out.push_back(net::buffer(h));
      if (got > 0) {
        if (chunked) {
          out.push_back(ChunkSizeLine(size_line, got));
          out.push_back(net::buffer(chunk.get(), got));
          out.push_back(net::buffer(kCrlf));
        } else {
          out.push_back(net::buffer(chunk.get(), got));
        }
      }
      if (done && chunked) out.push_back(net::buffer(kLastChunk));
      head_pending = false;
      if (auto wec = co_await WriteClient(call.client, out); wec || call.watch->client_gone) {
        call.watch->client_gone = true;
        break;
      }
      if (done || failure) break;
    }
    w.relay_bufs.push_back(std::move(chunk));
    if (call.watch->client_gone) co_return client_gone();

    call.watch->upstream = nullptr;
    if (failure) {
      UpstreamError(ep, failure, fail_ec.message());
      keep = false;  // a truncated body can only be signalled by closing, unless SSE below
      beast::error_code ig;
      conn->stream.socket().close(ig);
      if (chunked && sse) {
        // Tell the client in-band, as an SSE error event, then end the stream properly; the
        // client's message ends cleanly, so its connection stays usable (keep-alive).
        std::string event = ErrorEvent(
            std::string("the model server at ") + ep.address() +
                (IsTimeout(fail_ec) ? " stopped sending for longer than the stream idle timeout"
                                    : " closed the stream before it finished") +
                " (" + fail_ec.message() + ")",
            "upstream_error",
            IsTimeout(fail_ec) ? "upstream_stream_timeout" : "upstream_disconnected");
        char size_line[24];
        std::array<net::const_buffer, 4> out{ChunkSizeLine(size_line, event.size()),
                                             net::buffer(event), net::buffer(kCrlf),
                                             net::buffer(kLastChunk)};
        auto ec = co_await WriteClient(call.client, out);
        keep = !ec && call.keep_alive && !draining.load();
      }
      co_return AttemptResult{Outcome::kDone, {}};
    }
    if (rp.keep_alive()) PushIdle(w, ep.index(), std::move(conn));
    co_return AttemptResult{Outcome::kDone, {}};
  }

  // ---------------------------------------------------------------- /v1/models

  // GET `target` from one endpoint (small bodies only). Returns the body on a 2xx.
  // One keep-alive GET of a small body on an open connection (TimedSocket on the event loops,
  // beast::tcp_stream on the control loop), bounded by `timeout`.
  template <typename Stream>
  awaitable<beast::error_code> GetOnce(Stream& s, beast::flat_buffer& buf, const pool::Endpoint& ep,
                                       std::string_view target, milliseconds timeout,
                                       http::response_parser<http::string_body>& rp) {
    http::request<http::empty_body> req{http::verb::get, target, 11};
    req.set(http::field::host, ep.address());
    req.keep_alive(true);
    rp.body_limit(kUpstreamSmallBodyLimit);
    s.expires_after(timeout);
    auto [ec, n] = co_await http::async_write(s, req, kTok);
    if (!ec) std::tie(ec, n) = co_await http::async_read(s, buf, rp, kTok);
    s.expires_never();
    co_return ec;
  }

  awaitable<std::optional<std::string>> Fetch(Worker& w, pool::Endpoint& ep,
                                              std::string_view target, std::string* error) {
    auto conn = PopIdle(w, ep.index());
    for (int attempt = 0; attempt < 2; ++attempt) {
      bool reused = conn != nullptr;
      if (!conn) {
        auto [c, r] = co_await Connect(w, ep);
        if (!c) {
          *error = r.detail;
          co_return std::nullopt;
        }
        conn = std::move(c);
      }
      http::response_parser<http::string_body> rp;
      auto ec = co_await GetOnce(conn->stream, conn->buf, ep, target,
                                 std::min(cfg.ttfb_timeout, milliseconds(10'000)), rp);
      if (ec) {
        conn.reset();
        if (reused) continue;
        *error = ec.message();
        co_return std::nullopt;
      }
      int status = rp.get().result_int();
      bool ka = rp.get().keep_alive();
      std::string body = std::move(rp.get().body());
      if (ka) PushIdle(w, ep.index(), std::move(conn));
      if (status / 100 != 2) {
        *error = "HTTP " + std::to_string(status);
        co_return std::nullopt;
      }
      co_return body;
    }
    co_return std::nullopt;
  }

  awaitable<bool> Models(Call& call) {
    Nanos now = clock.Now();
    nlohmann::ordered_json data = nlohmann::ordered_json::array();
    std::set<std::string> seen;
    std::string errors;
    size_t answered = 0;
    for (size_t i = 0; i < pool.size(); ++i) {
      auto& ep = pool.at(i);
      if (!ep.Available(now)) continue;
      std::string err;
      auto body = co_await Fetch(call.w, ep, "/v1/models", &err);
      if (!body) spdlog::warn("/v1/models: {} did not answer: {}", ep.address(), err);
      if (!body) {
        errors += (errors.empty() ? "" : "; ") + ep.address() + ": " + err;
        continue;
      }
      auto doc = nlohmann::ordered_json::parse(*body, nullptr, false);
      if (doc.is_discarded() || !doc.contains("data") || !doc["data"].is_array()) {
        errors += (errors.empty() ? "" : "; ") + ep.address() + ": not an OpenAI model list";
        continue;
      }
      ++answered;
      for (auto& m : doc["data"]) {
        if (!m.is_object() || !m.contains("id") || !m["id"].is_string()) continue;
        if (seen.insert(m["id"].get<std::string>()).second) data.push_back(m);
      }
    }
    if (answered == 0) {
      if (pool.AvailableCount(clock.Now()) == 0) co_return co_await NoEndpoints(call);
      co_return co_await WriteError(call, http::status::bad_gateway,
                                    "no model server answered /v1/models (" + errors + ")",
                                    "upstream_error", "upstream_failed");
    }
    call.status = 200;
    nlohmann::ordered_json out = {{"object", "list"}, {"data", std::move(data)}};
    co_return co_await WriteResponse(call.client, http::status::ok, call.keep_alive,
                                     call.request_id, "application/json", out.dump());
  }

  // ---------------------------------------------------------------- control loop

  awaitable<void> AcceptLoop() {
    size_t next = 0;
    for (;;) {
      Worker& w = *workers[next++ % workers.size()];
      auto [ec, sock] = co_await acceptor.async_accept(w.ioc, kTok);
      if (ec) {
        if (ec == net::error::operation_aborted || !acceptor.is_open()) co_return;
        spdlog::warn("accept failed: {}", ec.message());
        net::steady_timer t(control, std::chrono::milliseconds(50));
        co_await t.async_wait(kTok);  // e.g. out of file descriptors: back off briefly
        continue;
      }
      net::co_spawn(w.ioc, Session(w, std::move(sock)), [](std::exception_ptr e) {
        if (!e) return;
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& ex) {
          spdlog::error("session ended by an unexpected error: {}", ex.what());
        }
      });
    }
  }

  // Enforces the deadlines of one event loop's sockets (see DeadlineSet).
  awaitable<void> SweepLoop(Worker& w) {
    net::steady_timer t(w.ioc);
    for (;;) {
      t.expires_after(kSweepPeriod);
      auto [ec] = co_await t.async_wait(kTok);
      if (ec) co_return;
      w.deadlines.Sweep(SteadyNowNs());
    }
  }

  // A keep-alive GET on the control loop; `conn` is (re)connected as needed. Returns false with
  // *error set when no HTTP response came back.
  awaitable<bool> ControlGet(std::optional<beast::tcp_stream>& conn, beast::flat_buffer& buf,
                             pool::Endpoint& ep, std::string_view target, milliseconds timeout,
                             int* status, std::string* body, std::string* error) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      bool fresh = false;
      if (!conn) {
        fresh = true;
        conn.emplace(control);
        buf.clear();
        conn->expires_after(timeout);
        auto [cec, e] = co_await conn->async_connect(resolved[ep.index()], kTok);
        if (cec) {
          *error = "connect: " + cec.message();
          conn.reset();
          co_return false;
        }
        beast::error_code ig;
        conn->socket().set_option(tcp::no_delay(true), ig);
      }
      http::response_parser<http::string_body> rp;
      auto ec = co_await GetOnce(*conn, buf, ep, target, timeout, rp);
      if (ec) {
        conn.reset();
        if (!fresh) continue;  // a stale keep-alive connection: reconnect once
        *error = std::string(target) + ": " + ec.message();
        co_return false;
      }
      *status = rp.get().result_int();
      *body = std::move(rp.get().body());
      if (!rp.get().keep_alive()) conn.reset();
      co_return true;
    }
    co_return false;
  }

  // Reads one endpoint's /metrics every scrape interval and publishes the parsed snapshot (or
  // the error, which makes the endpoint stale). Runs on the control loop, never the data plane.
  awaitable<void> ScrapeLoop(size_t i) {
    auto& ep = pool.at(i);
    std::optional<beast::tcp_stream> conn;
    beast::flat_buffer buf;
    net::steady_timer timer(control);
    std::string body, error;
    const auto timeout = std::max(milliseconds(500), cfg.stale_after);
    while (!draining.load()) {
      auto started = std::chrono::steady_clock::now();
      int status = 0;
      error.clear();
      bool ok = co_await ControlGet(conn, buf, ep, "/metrics", timeout, &status, &body, &error);
      Nanos now = clock.Now();
      if (ok && status == 200) {
        pool::EndpointMetrics m;
        error = pool::ParseEngineMetrics(engines[i], body, now, &m);
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
        }
      } else if (ok) {
        error = "/metrics answered HTTP " + std::to_string(status);
      }
      if (!error.empty()) {
        ep.RecordScrapeError(now, error);
        scrape_errors[i]->Inc();
        if (error != last_scrape_log[i])
          spdlog::warn("endpoint {}: cannot read metrics: {}", ep.address(), error);
      } else if (!last_scrape_log[i].empty()) {
        spdlog::info("endpoint {}: metrics readable again", ep.address());
      }
      last_scrape_log[i] = error;
      timer.expires_at(started + cfg.scrape_interval);
      co_await timer.async_wait(kTok);
    }
  }

  // Pool-level capacity signal for /v1/capacity and the gauges: saturation, how many more
  // sheddable requests fit, and when to retry, from how fast the queues have been draining.
  awaitable<void> CapacityLoop() {
    net::steady_timer timer(control);
    double prev_waiting = -1;
    auto prev_time = std::chrono::steady_clock::now();
    double drain_rate = 0;  // waiting requests per second leaving the queues (EWMA)
    const auto period =
        std::max(milliseconds(20), std::min(cfg.scrape_interval, milliseconds(250)));
    while (!draining.load()) {
      Nanos now = clock.Now();
      double sat_sum = 0, waiting = 0, excess = 0;
      int64_t room = 0;
      int fresh = 0;
      for (size_t i = 0; i < pool.size(); ++i) {
        const auto& ep = pool.at(i);
        auto load = ep.Load();
        double sat = load.Saturation(now, saturation_cfg);
        sat_sum += sat;
        if (!ep.Available(now) || load.Stale(now, saturation_cfg.stale_after)) continue;
        ++fresh;
        waiting += load.waiting;
        excess += std::max(0.0, load.waiting - cfg.queue_threshold + 1);
        room += std::max<int64_t>(
            0, static_cast<int64_t>((1.0 - sat) * cfg.queue_threshold) - ep.RoutedSinceScrape());
      }
      double saturation = pool.size() ? sat_sum / pool.size() : 1.0;
      auto t = std::chrono::steady_clock::now();
      double dt = std::chrono::duration<double>(t - prev_time).count();
      if (prev_waiting >= 0 && dt > 0) {
        double rate = std::max(0.0, (prev_waiting - waiting) / dt);
        drain_rate = 0.8 * drain_rate + 0.2 * rate;
      }
      prev_waiting = waiting;
      prev_time = t;
      int64_t retry_ms = 1000;
      if (saturation >= 1.0) {
        retry_ms = drain_rate > 0.1
                       ? static_cast<int64_t>(1000.0 * std::max(1.0, excess) / drain_rate)
                       : 2000;
        retry_ms = std::clamp<int64_t>(retry_ms, 1000, 30'000);
      } else {
        retry_ms = std::max<int64_t>(50, cfg.scrape_interval.count());
      }
      cap_saturation.store(saturation);
      cap_sheddable.store(saturation >= 1.0 ? 0 : room);
      cap_retry_after_ms.store(retry_ms);
      cap_fresh.store(fresh);
      pool_saturation->Set(saturation);
      pool_capacity->Set(static_cast<double>(saturation >= 1.0 ? 0 : room));
      timer.expires_after(period);
      co_await timer.async_wait(kTok);
    }
  }

  awaitable<void> ProbeLoop(size_t index) {
    auto& ep = pool.at(index);
    net::steady_timer timer(control);
    std::optional<beast::tcp_stream> models_conn;
    beast::flat_buffer models_buf;
    while (!draining.load()) {
      std::string error;
      bool ok = co_await Probe(ep, &error);
      if (ok) {
        // Which models (base and LoRA adapters) this endpoint serves, for model-aware routing.
        int status = 0;
        std::string body, merr;
        if (co_await ControlGet(models_conn, models_buf, ep, "/v1/models",
                                std::max(milliseconds(1000), cfg.health_interval), &status, &body,
                                &merr) &&
            status == 200) {
          auto doc = nlohmann::json::parse(body, nullptr, false);
          std::vector<std::string> ids;
          if (!doc.is_discarded() && doc.contains("data") && doc["data"].is_array()) {
            for (const auto& m : doc["data"])
              if (m.is_object() && m.contains("id") && m["id"].is_string())
                ids.push_back(m["id"].get<std::string>());
          }
          ep.SetServedModels(std::move(ids));
        }
      }
      if (ep.RecordProbe(ok, error)) {
        if (ok) {
          spdlog::info("endpoint {} is healthy again", ep.address());
        } else {
          spdlog::warn("endpoint {} failed its health check: {}", ep.address(), error);
        }
      }
      timer.expires_after(cfg.health_interval);
      co_await timer.async_wait(kTok);
    }
  }

  // GET /health on a fresh connection (so a server that stopped accepting fails the probe);
  // any answer below 500 counts as alive.
  awaitable<bool> Probe(pool::Endpoint& ep, std::string* error) {
    std::optional<beast::tcp_stream> conn;
    beast::flat_buffer buf;
    int status = 0;
    std::string body;
    const auto timeout =
        std::max(milliseconds(1000), std::min(2 * cfg.health_interval, milliseconds(5000)));
    if (!co_await ControlGet(conn, buf, ep, "/health", timeout, &status, &body, error))
      co_return false;
    if (status >= 500) {
      *error = "/health answered HTTP " + std::to_string(status);
      co_return false;
    }
    co_return true;
  }

  void BeginDrain() {
    if (draining.exchange(true)) return;
    net::post(control, [this] {
      spdlog::info("draining: stopped accepting; waiting up to {} ms for {} connection(s)",
                   cfg.drain_timeout.count(), active_sessions.load());
      beast::error_code ec;
      acceptor.close(ec);
      for (auto& w : workers) {
        net::post(w->ioc, [wp = w.get()] {
          for (SessionState* s : wp->sessions)
            if (s->idle) s->stream->socket().cancel();
          for (auto& v : wp->idle) v.clear();
        });
      }
      net::co_spawn(control, DrainWatch(), net::detached);
    });
  }

  awaitable<void> DrainWatch() {
    auto deadline = std::chrono::steady_clock::now() + cfg.drain_timeout;
    net::steady_timer t(control);
    while (active_sessions.load() > 0 && std::chrono::steady_clock::now() < deadline) {
      t.expires_after(std::chrono::milliseconds(20));
      co_await t.async_wait(kTok);
    }
    int left = active_sessions.load();
    if (left > 0) {
      spdlog::warn("drain timeout: closing {} connection(s) still open", left);
    } else {
      spdlog::info("drained: all connections finished");
    }
    for (auto& w : workers) {
      w->guard.reset();
      w->ioc.stop();
    }
    control.stop();
  }

  GatewayConfig cfg;
  Clock& clock;
  pool::Pool pool;
  std::unique_ptr<sched::Picker> picker;
  // Declared before the control loop: a pending accept on `control` holds a socket of a worker
  // loop, so the control loop (and its handlers) must be destroyed first.
  std::vector<std::unique_ptr<Worker>> workers;
  net::io_context control{1};
  tcp::acceptor acceptor;
  std::vector<tcp::resolver::results_type> resolved;
  std::atomic<bool> draining{false};
  std::atomic<int> active_sessions{0};
  uint16_t bound_port = 0;

  metrics::Registry registry;
  metrics::Family<metrics::Counter>* requests_total;
  metrics::Gauge* in_flight;
  metrics::Histogram* duration[static_cast<int>(Route::kOther) + 1]{};
  metrics::Histogram* ttft;
  metrics::Family<metrics::Counter>* upstream_errors;
  metrics::Counter* retries;
  metrics::Counter* client_disconnects;
  std::vector<metrics::Gauge*> endpoint_up, endpoint_in_flight, endpoint_saturation;
  std::vector<metrics::Counter*> scrape_errors;
  metrics::Gauge* pool_saturation;
  metrics::Gauge* pool_capacity;
  metrics::Family<metrics::Counter>* shed;
  pool::SaturationConfig saturation_cfg;
  std::vector<pool::Engine> engines;         // per endpoint
  std::vector<std::string> last_scrape_log;  // per endpoint; control loop only
  // The capacity signal, recomputed by CapacityLoop and read lock-free by /v1/capacity.
  std::atomic<double> cap_saturation{1.0};
  std::atomic<int64_t> cap_sheddable{0};
  std::atomic<int64_t> cap_retry_after_ms{1000};
  std::atomic<int> cap_fresh{0};
};

Gateway::Gateway(GatewayConfig cfg) : impl_(std::make_unique<Impl>(std::move(cfg))) {}

Gateway::~Gateway() {
  for (auto& w : impl_->workers) {
    w->guard.reset();
    w->ioc.stop();
    if (w->thread.joinable()) w->thread.join();
  }
}

std::string Gateway::Start() {
  auto& I = *impl_;
  if (!I.cfg.scheduler_yaml.empty()) {
    if (auto err = sched::ParseSchedulerConfig(std::string_view(I.cfg.scheduler_yaml), &I.picker);
        !err.empty())
      return "scheduling: " + err;
  } else {
    const auto framework = sched::PolicyNames();
    if (std::find(framework.begin(), framework.end(), I.cfg.policy) != framework.end()) {
      I.picker = sched::MakePolicyPicker(I.cfg.policy, I.saturation_cfg);
    } else {
      I.picker = sched::MakePicker(I.cfg.policy);
    }
  }
  if (!I.picker) return "unknown policy '" + I.cfg.policy + "'";
  tcp::resolver resolver(I.control);
  for (size_t i = 0; i < I.pool.size(); ++i) {
    const auto& ep = I.pool.at(i).config();
    beast::error_code ec;
    auto results = resolver.resolve(ep.host, std::to_string(ep.port), ec);
    if (ec) return "cannot resolve endpoint " + ep.Address() + ": " + ec.message();
    I.resolved.push_back(std::move(results));
  }

  beast::error_code ec;
  auto addr = net::ip::make_address(I.cfg.host, ec);
  if (ec) return "invalid --host '" + I.cfg.host + "': use an IP address such as 0.0.0.0";
  tcp::endpoint listen_ep(addr, I.cfg.port);
  I.acceptor.open(listen_ep.protocol(), ec);
  if (!ec) I.acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) I.acceptor.bind(listen_ep, ec);
  if (!ec) I.acceptor.listen(1024, ec);
  if (ec) {
    return "cannot listen on " + I.cfg.host + ":" + std::to_string(I.cfg.port) + ": " +
           ec.message();
  }
  I.bound_port = I.acceptor.local_endpoint().port();

  int threads =
      I.cfg.threads > 0 ? I.cfg.threads : std::max(1u, std::thread::hardware_concurrency());
  for (int t = 0; t < threads; ++t) {
    auto w = std::make_unique<Impl::Worker>();
    w->idle.resize(I.pool.size());
    w->guard.emplace(w->ioc.get_executor());
    I.workers.push_back(std::move(w));
  }
  for (auto& w : I.workers) {
    net::co_spawn(w->ioc, I.SweepLoop(*w), net::detached);
    w->thread = std::thread([wp = w.get()] {
      for (;;) {
        try {
          wp->ioc.run();
          return;
        } catch (const std::exception& e) {
          spdlog::error("event loop error: {}", e.what());
        }
      }
    });
  }
  net::co_spawn(I.control, I.AcceptLoop(), net::detached);
  if (I.cfg.health_interval.count() > 0) {
    for (size_t i = 0; i < I.pool.size(); ++i)
      net::co_spawn(I.control, I.ProbeLoop(i), net::detached);
  }
  if (I.cfg.scrape_interval.count() > 0) {
    for (size_t i = 0; i < I.pool.size(); ++i)
      net::co_spawn(I.control, I.ScrapeLoop(i), net::detached);
  }
  net::co_spawn(I.control, I.CapacityLoop(), net::detached);
  std::string eps;
  for (size_t i = 0; i < I.pool.size(); ++i) eps += (i ? "," : "") + I.pool.at(i).address();
  spdlog::info("tidegate serve: {} event loop(s), policy {}, {} endpoint(s): {}", threads,
               I.picker->name(), I.pool.size(), eps);
  spdlog::info("listening on http://{}:{}", I.cfg.host, I.bound_port);
  return {};
}

uint16_t Gateway::port() const { return impl_->bound_port; }

void Gateway::BeginDrain() { impl_->BeginDrain(); }

int Gateway::RunUntilSignal() {
  auto& I = *impl_;
  ::signal(SIGPIPE, SIG_IGN);
  net::signal_set signals(I.control, SIGINT, SIGTERM);
  std::function<void(const beast::error_code&, int)> on_signal;
  on_signal = [&](const beast::error_code& ec, int sig) {
    if (ec) return;
    if (I.draining.load()) {
      spdlog::warn("second signal: stopping now");
      for (auto& w : I.workers) w->ioc.stop();
      I.control.stop();
      return;
    }
    spdlog::info("received {}, draining", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    I.BeginDrain();
    signals.async_wait(on_signal);
  };
  signals.async_wait(on_signal);
  I.control.run();
  for (auto& w : I.workers) {
    w->guard.reset();
    w->ioc.stop();
    if (w->thread.joinable()) w->thread.join();
  }
  return 0;
}

}  // namespace tidegate::gateway
