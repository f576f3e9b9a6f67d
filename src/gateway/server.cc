// The gateway's event loops and client sessions: HTTP parsing, the admin answers, and the
// Director's decisions carried out (waiting at the gateway, refusals, proxying through
// gateway/proxy.h). With proxy.cc, the only translation units of the gateway that include
// Boost.Beast; see gateway.h for the contract.
#include <fmt/ranges.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/algorithm/string/predicate.hpp>
#include <boost/asio.hpp>
#include <charconv>
#include <functional>
#include <optional>

#include "auth/keys.h"
#include "common/clock.h"
#include "common/fd_limit.h"
#include "common/rate_limit.h"
#include "common/units.h"
#include "control/director.h"
#include "gateway/admin.h"
#include "gateway/dashboard.h"
#include "gateway/discovery_sink.h"
#include "gateway/extension.h"
#include "gateway/gateway.h"
#include "gateway/gateway_metrics.h"
#include "gateway/http1.h"
#include "gateway/kv_events_feed.h"
#include "gateway/net.h"
#include "gateway/proxy.h"
#include "gateway/request.h"
#include "gateway/routes.h"
#include "gateway/wire.h"
#include "http/client.h"
#include "metrics/registry.h"
#include "pool/endpoint.h"
#include "pool/engine_metrics.h"
#include "pool/prober.h"
#include "pool/saturation.h"
#include "pool/scraper.h"
#include "sched/config.h"
#include "sched/latency.h"
#include "sched/picker.h"
#include "wire/errors.h"
#include "wire/wire.h"

namespace tidegate::gateway {

namespace {

// A header by our name, else by llm-d's alias.
std::string_view Header(const http1::RequestHead& req, http1::Known name, http1::Known alias) {
  std::string_view v = req.Get(name);
  return v.empty() ? req.Get(alias) : v;
}

// Points every view of `h` that lies in [from, from + n) at the same bytes copied to `to`.
void RebaseViews(http1::RequestHead* h, const char* from, size_t n, const char* to) {
  auto move = [&](std::string_view& v) {
    if (v.data() >= from && v.data() < from + n) v = {to + (v.data() - from), v.size()};
  };
  move(h->method);
  move(h->target);
  move(h->fields);
  move(h->connection);
  for (auto& k : h->known) move(k);
}

constexpr size_t kClientBufBytes = 16 * 1024;

constexpr auto kTickPeriod = std::chrono::milliseconds(20);

}  // namespace

struct Gateway::Impl {
  explicit Impl(GatewayConfig c)
      : cfg(std::move(c)),
        clock(SystemClock::Instance()),
        pool(cfg.endpoints),
        detector(std::make_shared<const pool::SaturationDetector>(cfg.SaturationSettings())),
        gm(registry, pool),
        acceptor(control),
        admin_acceptor(control) {}

  // ---------------------------------------------------------------- simple responses

  Task<bool> Write(TimedSocket& s, http::status status, bool keep_alive,
                   const std::string& request_id, std::string_view content_type, std::string body,
                   const Extra& extra = {}) {
    co_return co_await WriteResponse(s, status, keep_alive && !draining.load(),
                                     cfg.stream_idle_timeout, request_id, content_type,
                                     std::move(body), extra);
  }

  // Sends a final error on a connection we are about to close, then reads and discards what the
  // client is still sending for a moment, so the response is not lost to a TCP reset.
  Task<void> ErrorAndClose(TimedSocket& s, http::status status, std::string message,
                           const char* code) {
    co_await Write(s, status, false, NewRequestId(), "application/json",
                   wire::ErrorBody(message, "invalid_request_error", code));
    beast::error_code ec;
    s.socket().shutdown(tcp::socket::shutdown_send, ec);
    size_t drained = 0;
    char sink[16 * 1024];
    s.expires_after(std::chrono::milliseconds(2000));
    while (drained < 64 * 1024 * 1024) {
      auto [rec, n] = co_await s.async_read_some(net::buffer(sink), kTok);
      if (rec) break;
      drained += n;
    }
    s.expires_never();
  }

  metrics::Counter& RequestCounter(Worker& w, Route route, int status, const pool::Endpoint* ep) {
    uint64_t key = (static_cast<uint64_t>(route) << 48) | (static_cast<uint64_t>(status) << 32) |
                   (ep ? ep->index() + 1 : 0);
    auto it = w.request_counters.find(key);
    if (it != w.request_counters.end()) return *it->second;
    auto& c = gm.requests_total->With(
        {RouteLabel(route), std::to_string(status), ep ? ep->address() : std::string("none")});
    w.request_counters.emplace(key, &c);
    return c;
  }

  // ---------------------------------------------------------------- client sessions

  // Reads from the client until `pred` holds or the read fails (eof, reset, idle timeout, or
  // cancelled by a drain); the idle timeout applies to every read.
  template <typename Pred>
  Task<bool> ReadClientUntil(TimedSocket& stream, ReadBuffer& in, size_t max, Pred pred) {
    while (!pred()) {
      in.Compact(max);
      if (in.end == in.cap) co_return false;
      stream.expires_after(cfg.client_idle_timeout);
      auto [ec, n] = co_await stream.async_read_some(in.free_space(), kTok);
      stream.expires_never();
      if (ec) co_return false;
      in.end += n;
    }
    co_return true;
  }

  Task<void> Session(Worker& w, Socket sock, bool admin = false) {
    beast::error_code ec;
    sock.set_option(tcp::no_delay(true), ec);
    TimedSocket stream(std::move(sock), w.deadlines);
    // TLS on the public port: the handshake is bounded by the header timeout. The context is
    // held for the connection's life (a SIGHUP swaps in a new one for new connections).
    // (tls_on is fixed at start: no atomic shared_ptr load, which takes a lock, without TLS.)
    std::shared_ptr<net::ssl::context> tls = admin || !tls_on ? nullptr : tls_ctx.load();
    if (tls) {
      stream.StartTls(*tls);
      stream.expires_after(cfg.header_timeout);
      auto [hec] = co_await stream.tls()->async_handshake(net::ssl::stream_base::server, kTok);
      stream.expires_never();
      if (hec) {
        gm.tls_handshake_failures->Inc();
        spdlog::debug("TLS handshake failed: {}", hec.message());
        stream.socket().close(ec);
        active_sessions.fetch_sub(1);
        co_return;
      }
    }
    auto ctl = std::make_shared<SessionCtl>(w.ioc.get_executor());
    SessionState state{&stream, false, ctl};
    ReadBuffer in(kClientBufBytes);
    std::string head_copy, head;
    std::string& body = ctl->body;
    auto it = w.sessions.insert(w.sessions.end(), &state);  // (counted in AcceptLoop)

    for (;;) {
      if (draining.load()) break;
      // The request head.
      http1::RequestHead rh;
      http1::HeadStatus hs = http1::HeadStatus::kIncomplete;
      state.idle = in.size() == 0;
      // Idle between requests: the keep-alive timeout. From the head's first byte: the header
      // timeout for the whole head (and the client idle timeout for each read within it).
      int64_t head_deadline = in.size() > 0 ? SteadyNowNs() + NsOf(cfg.header_timeout) : 0;
      bool got_head = true;
      for (;;) {
        rh = {};
        hs = http1::ParseRequestHead(in.view(), &rh);
        if (hs != http1::HeadStatus::kIncomplete) break;
        in.Compact(http1::kMaxHeadBytes + kClientBufBytes);
        if (in.end == in.cap) {
          got_head = false;
          break;
        }
        const int64_t now = SteadyNowNs();
        if (head_deadline == 0) {
          stream.expires_after(cfg.keepalive_timeout);
        } else {
          stream.expires_at_ns(std::min(head_deadline, now + NsOf(cfg.client_idle_timeout)));
        }
        auto [rec, n] = co_await stream.async_read_some(in.free_space(), kTok);
        const bool timed_out = stream.timed_out();
        stream.expires_never();
        if (rec) {
          got_head = false;
          if (timed_out && head_deadline != 0) {
            // (The message is built before the co_await: GCC 12 destroys temporaries of a
            // conditional expression inside a co_await operand twice.)
            std::string msg;
            if (SteadyNowNs() >= head_deadline) {
              msg = "the request head did not arrive within the header timeout (" +
                    FormatDuration(cfg.header_timeout) + ")";
            } else {
              msg = IdleTimeoutMessage("head");
            }
            co_await ErrorAndClose(stream, http::status::request_timeout, std::move(msg),
                                   "request_timeout");
          }
          break;
        }
        in.end += n;
        if (head_deadline == 0) head_deadline = SteadyNowNs() + NsOf(cfg.header_timeout);
        state.idle = false;
      }
      state.idle = false;
      if (!got_head) break;  // eof, timeout, reset or cancelled by a drain
      if (hs == http1::HeadStatus::kInvalid) {
        const auto status = static_cast<http::status>(rh.error_status);
        const char* code = rh.error_status == 431   ? "headers_too_large"
                           : rh.error_status == 501 ? "not_implemented"
                                                    : "bad_request";
        co_await ErrorAndClose(
            stream, status,
            std::string(rh.error_status == 431 ? "" : "malformed HTTP request: ") + rh.error, code);
        break;
      }
      // The body, into the session's buffer. When it is not all here yet, the head is copied
      // out first, so reading more cannot disturb the views into it.
      body.clear();
      // Uploads to an extension's routes (the Batch API's files) have its own limit.
      const bool ext_route = extension && extension->Serves(PathOf(rh.target));
      const uint64_t body_limit = ext_route ? extension->MaxBodyBytes() : cfg.max_body_bytes;
      if (rh.body == http1::BodyKind::kLength && rh.content_length > body_limit) {
        co_await ErrorAndClose(stream, http::status::payload_too_large,
                               BodyTooLargeMessage(ext_route, body_limit), "body_too_large");
        break;
      }
      const char* head_at = in.data();
      const size_t head_bytes = rh.head_bytes;
      in.start += head_bytes;
      bool head_kept = false;
      auto keep_head = [&] {
        if (head_kept) return;
        head_kept = true;
        head_copy.assign(head_at, head_bytes);
        RebaseViews(&rh, head_at, head_bytes, head_copy.data());
      };
      bool body_ok = true, too_large = false, over_budget = false;
      BodyHold hold(body_budget);  // gives the bytes back when the request ends
      if (rh.body == http1::BodyKind::kLength) {
        const size_t want = static_cast<size_t>(rh.content_length);
        if (!hold.Take(static_cast<int64_t>(want))) {
          co_await ErrorAndClose(stream, http::status::service_unavailable, OverBudgetMessage(),
                                 "too_many_buffered_bytes");
          break;
        }
        if (in.size() < want) {
          keep_head();
          if (rh.expect_continue) {
            static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
            auto [wec, wn] = co_await net::async_write(stream, net::buffer(kContinue), kTok);
            if (wec) break;
          }
        }
        body_ok = co_await ReadClientUntil(stream, in, kClientBufBytes, [&] {
          const size_t take = std::min(in.size(), want - body.size());
          body.append(in.data(), take);
          in.start += take;
          return body.size() == want;
        });
      } else if (rh.body == http1::BodyKind::kChunked) {
        http1::ChunkDecoder chunks;
        body_ok = co_await ReadClientUntil(stream, in, kClientBufBytes, [&] {
          size_t extra = 0;
          const size_t got = chunks.Decode(in.data(), in.size(), &extra);
          body.append(in.data(), got);
          // The bytes after the body (a pipelined request) now follow the decoded data.
          in.start += got;
          in.end = in.start + extra;
          if (body.size() > body_limit) too_large = true;
          if (!hold.Take(static_cast<int64_t>(got))) over_budget = true;
          const bool stop = chunks.done() || chunks.failed() || too_large || over_budget;
          if (!stop) keep_head();  // more will be read into the buffer
          return stop;
        });
        if (body_ok && chunks.failed()) {
          co_await ErrorAndClose(stream, http::status::bad_request,
                                 "malformed HTTP request: malformed chunked body", "bad_request");
          break;
        }
      }
      if (over_budget && !too_large) {
        co_await ErrorAndClose(stream, http::status::service_unavailable, OverBudgetMessage(),
                               "too_many_buffered_bytes");
        break;
      }
      if (too_large) {
        co_await ErrorAndClose(stream, http::status::payload_too_large,
                               BodyTooLargeMessage(ext_route, body_limit), "body_too_large");
        break;
      }
      if (!body_ok) {
        // The client left, or went silent in the middle of its body: say so when it is still
        // there to hear it.
        if (stream.timed_out()) {
          std::string msg = IdleTimeoutMessage("body");
          co_await ErrorAndClose(stream, http::status::request_timeout, std::move(msg),
                                 "request_timeout");
        }
        break;
      }
      if (in.size() == 0) in.start = in.end = 0;
      ++ctl->request_gen;
      bool keep = co_await Handle(w, stream, ctl, head, rh, body, admin);
      if (!keep) break;
    }
    stream.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream.socket().close(ec);
    w.sessions.erase(it);
    active_sessions.fetch_sub(1);
  }

  // (A function, not a conditional inside the co_await operand: GCC 12 destroys the temporaries
  // of a conditional expression there twice.)
  std::string RenderMetrics() {
    std::string text = registry.Render();
    if (const sched::LatencyScorer* lat = director->picker().latency()) text += lat->MetricsText();
    if (extension) text += extension->Metrics();
    return text;
  }

  static std::string_view PathOf(std::string_view target) {
    return target.substr(0, target.find('?'));
  }
  static std::string BodyTooLargeMessage(bool ext_route, uint64_t limit) {
    if (ext_route)
      return "request body exceeds the limit of " + std::to_string(limit) +
             " bytes for this route (a batch input file is at most 200 MB)";
    return "request body exceeds the gateway's limit of " + std::to_string(limit) +
           " bytes (raise it with --max-body-bytes)";
  }

  // Runs f() on the extension's worker threads and resumes on the calling loop.
  template <typename F>
  Task<std::invoke_result_t<F&>> OffExtensionPool(F f) {
    using R = std::invoke_result_t<F&>;
    auto task = [f = std::move(f)]() mutable -> net::awaitable<R> { co_return f(); };
    co_return co_await net::co_spawn(*extension_pool, std::move(task),
                                     net::use_awaitable_t<Executor>{});
  }

  // A route of the extension (the Batch API): authenticated like the API, served off the loop.
  Task<bool> ServeExtension(TimedSocket& stream, const std::string& request_id,
                            const http1::RequestHead& req, std::string_view path,
                            std::string_view target, const std::string& body, bool keep_alive) {
    ExtensionRequest er;
    er.method = req.method;
    er.path = path;
    er.query = target.size() > path.size() ? target.substr(path.size() + 1) : std::string_view();
    er.body = body;
    http1::ForEachEndToEndHeader(req, [&](std::string_view name, std::string_view value) {
      if (boost::iequals(name, "content-type")) er.content_type = value;
    });
    std::string tenant;
    if (keys_on) {
      std::shared_ptr<auth::KeyTable> key_table = keys.load();
      auth::CheckResult r = key_table->Check(req.Get(http1::Known::kAuthorization), "standard", 0,
                                             clock.Now(), false);
      auth::KeyTable::Release(r);
      if (r.verdict != auth::Verdict::kOk) {
        const int status = auth::VerdictStatus(r.verdict);
        Extra ex;
        ex.retry_after = r.retry_after_s;
        if (status == 401) ex.www_authenticate = "Bearer";
        const std::string_view type = status == 401   ? "authentication_error"
                                      : status == 403 ? "permission_error"
                                                      : "rate_limit_error";
        co_return co_await Write(
            stream, static_cast<http::status>(status), keep_alive, request_id, "application/json",
            wire::ErrorBody(r.message, type, auth::VerdictCode(r.verdict)), ex);
      }
      if (r.tenant) tenant = r.tenant->config().tenant;
    }
    er.owner = tenant;
    Extension* ext = extension.get();
    ExtensionReply reply = co_await OffExtensionPool([ext, &er] { return ext->Handle(er); });
    Extra ex;
    if (!reply.allow.empty()) ex.allow = reply.allow.c_str();
    ex.head_only = req.method == "HEAD";
    co_return co_await Write(stream, static_cast<http::status>(reply.status), keep_alive,
                             request_id, reply.content_type, std::move(reply.body), ex);
  }

  Task<bool> Handle(Worker& w, TimedSocket& stream, std::shared_ptr<SessionCtl>& ctl,
                    std::string& head, const http1::RequestHead& req, std::string& body,
                    bool admin) {
    Nanos start = clock.Now();
    std::string_view target = req.target;
    std::string_view path = target.substr(0, target.find('?'));
    Route route = Classify(path);
    std::string& request_id = ctl->request_id;
    if (auto rid = req.Get(http1::Known::kRequestId); !rid.empty() && rid.size() <= 256) {
      request_id.assign(rid);
    } else {
      char id[36];
      NewRequestId(id);
      request_id.assign(id, sizeof id);
    }
    bool keep_alive = req.keep_alive;
    const bool is_get = req.method == "GET";
    const bool is_post = req.method == "POST";
    const bool is_head = req.method == "HEAD";
    const Extra head_extra{.head_only = is_head};

    // The operator's routes live on the admin listener; the admin listener serves nothing else.
    const bool health = route == Route::kHealthz || route == Route::kReadyz;
    if (admin && !IsAdminRoute(route) && !health) {
      co_return co_await Write(
          stream, http::status::not_found, keep_alive, request_id, "application/json",
          wire::ErrorBody("the admin listener serves GET /metrics, /v1/pool, /v1/pool/kv-blocks, "
                          "/v1/capacity, "
                          "/dashboard, /healthz and /readyz; inference is on the public port",
                          "invalid_request_error", "not_found"),
          head_extra);
    }
    if (IsAdminRoute(route) && !admin && !admin_on_public) {
      co_return co_await Write(
          stream, http::status::not_found, keep_alive, request_id, "application/json",
          wire::ErrorBody(std::string(path) + " is served on the admin listener (" + admin_url +
                              "), not on the public port",
                          "invalid_request_error", "not_found"),
          head_extra);
    }
    if ((IsAdminRoute(route) || health) && !is_get && !is_head) {
      co_return co_await Write(stream, http::status::method_not_allowed, keep_alive, request_id,
                               "application/json",
                               wire::ErrorBody(std::string(path) + " only accepts GET and HEAD",
                                               "invalid_request_error", "method_not_allowed"),
                               Extra{.allow = "GET, HEAD"});
    }

    switch (route) {
      case Route::kHealthz:
        co_return co_await Write(stream, http::status::ok, keep_alive, request_id,
                                 "application/json", "{\"status\":\"ok\"}", head_extra);
      case Route::kReadyz: {
        Readiness r = CheckReadiness(pool, draining.load(), clock.Now());
        co_return co_await Write(
            stream, r.ready ? http::status::ok : http::status::service_unavailable, keep_alive,
            request_id, "application/json", std::move(r.body), head_extra);
      }
      case Route::kMetrics:
        gm.RefreshEndpointGauges(pool, *detector, clock.Now());
        if (kv_feed) kv_feed->Tick();
        // Read at render time: no shared gauge is touched per request or connection.
        gm.buffered_bytes->Set(static_cast<double>(body_budget.used.load()));
        gm.client_connections->Set(static_cast<double>(active_sessions.load()));
        co_return co_await Write(stream, http::status::ok, keep_alive, request_id,
                                 "text/plain; version=0.0.4; charset=utf-8", RenderMetrics(),
                                 head_extra);
      case Route::kPool:
        if (kv_feed) kv_feed->Tick();
        co_return co_await Write(
            stream, http::status::ok, keep_alive, request_id, "application/json",
            PoolJson(pool, *director, cfg.default_engine, clock.Now(), kv_feed.get()), head_extra);
      case Route::kKvBlocks: {
        std::string_view query = target.find('?') == std::string_view::npos
                                     ? std::string_view()
                                     : target.substr(target.find('?') + 1);
        std::string endpoint;
        for (std::string_view rest = query; !rest.empty();) {
          std::string_view item = rest.substr(0, rest.find('&'));
          rest = item.size() == rest.size() ? std::string_view() : rest.substr(item.size() + 1);
          if (item.starts_with("endpoint=")) endpoint = std::string(item.substr(9));
        }
        std::string body;
        const bool found = KvBlocksJson(pool, endpoint, &body);
        co_return co_await Write(stream, found ? http::status::ok : http::status::not_found,
                                 keep_alive, request_id, "application/json", body, head_extra);
      }
      case Route::kCapacity:
        co_return co_await Write(stream, http::status::ok, keep_alive, request_id,
                                 "application/json", CapacityJson(*director), head_extra);
      case Route::kDashboard:
        co_return co_await Write(stream, http::status::ok, keep_alive, request_id,
                                 "text/html; charset=utf-8", std::string(DashboardPage()),
                                 head_extra);
      case Route::kDashboardData: {
        int64_t since = 0;
        std::string_view query =
            target.size() > path.size() ? target.substr(path.size() + 1) : std::string_view();
        if (auto at = query.find("since="); at != std::string_view::npos) {
          std::string_view v = query.substr(at + 6);
          v = v.substr(0, v.find('&'));
          std::from_chars(v.data(), v.data() + v.size(), since);
        }
        co_return co_await Write(
            stream, http::status::ok, keep_alive, request_id, "application/json",
            dashboard->DataJson(since, UnixMs(), pool, *director, cfg.default_engine, clock.Now()),
            head_extra);
      }
      default:
        break;
    }
    if (route == Route::kOther && extension && extension->Serves(path)) {
      const bool keep =
          co_await ServeExtension(stream, request_id, req, path, target, body, keep_alive);
      // An upload (up to 200 MB) must not stay allocated for the rest of the connection.
      if (body.capacity() > cfg.max_body_bytes) std::string().swap(body);
      co_return keep;
    }

    // API keys: who is calling, as which tenant, with which objective, within its limits.
    std::shared_ptr<auth::KeyTable> key_table;
    auth::CheckResult authr;
    if (keys_on && (IsApiRoute(route) || route == Route::kModels)) key_table = keys.load();
    if (key_table) {
      std::string_view objective =
          Header(req, http1::Known::kObjective, http1::Known::kObjectiveAlias);
      if (objective.empty()) objective = cfg.default_objective;
      auto known = cfg.objectives.find(std::string(objective.empty() ? "standard" : objective));
      // An unknown objective is the Director's 400; a models listing names none.
      const bool check_objective = IsApiRoute(route) && known != cfg.objectives.end();
      authr = key_table->Check(req.Get(http1::Known::kAuthorization),
                               objective.empty() ? "standard" : objective,
                               check_objective ? known->second : 0, clock.Now(), check_objective);
      if (authr.verdict != auth::Verdict::kOk) {
        gm.auth_rejections
            ->With({authr.tenant ? authr.tenant->config().tenant : std::string("-"),
                    std::string(auth::VerdictCode(authr.verdict))})
            .Inc();
        Extra ex;
        ex.retry_after = authr.retry_after_s;
        if (auth::VerdictStatus(authr.verdict) == 401) ex.www_authenticate = "Bearer";
        const std::string_view type =
            auth::VerdictStatus(authr.verdict) == 401   ? "authentication_error"
            : auth::VerdictStatus(authr.verdict) == 403 ? "permission_error"
                                                        : "rate_limit_error";
        co_return co_await Write(
            stream, static_cast<http::status>(auth::VerdictStatus(authr.verdict)), keep_alive,
            request_id, "application/json",
            wire::ErrorBody(authr.message, type, auth::VerdictCode(authr.verdict)), ex);
      }
    }
    struct SlotRelease {
      const auth::CheckResult& r;
      ~SlotRelease() { auth::KeyTable::Release(r); }
    } release{authr};

    gm.in_flight->Add(1);
    Call call{w, stream, ctl, head, request_id, route, false, keep_alive, start, is_head};
    call.http10 = req.http10;
    if (authr.tenant) {
      call.tenant = authr.tenant->config().tenant;
      call.strip_authorization = true;
    }
    bool keep = false;
    if (route == Route::kOther) {
      keep = co_await proxy->WriteError(call, http::status::not_found,
                                        "no route for " + std::string(req.method) + " " +
                                            std::string(path) +
                                            "; the gateway serves /v1/chat/completions, "
                                            "/v1/completions, /v1/embeddings and /v1/models",
                                        "invalid_request_error", "not_found");
    } else if (route == Route::kModels) {
      if (!is_get) {
        keep = co_await proxy->WriteError(call, http::status::method_not_allowed,
                                          "/v1/models only accepts GET", "invalid_request_error",
                                          "method_not_allowed", {.allow = "GET"});
      } else {
        keep = co_await Models(call);
      }
    } else if (!is_post) {
      keep = co_await proxy->WriteError(
          call, http::status::method_not_allowed, std::string(path) + " only accepts POST",
          "invalid_request_error", "method_not_allowed", {.allow = "POST"});
    } else {
      keep = co_await Api(call, req, body);
      call.ticket = nullptr;  // it lived in Api()
    }
    gm.in_flight->Add(-1);
    if (IsApiRoute(route)) (call.sheddable ? gm.requests_async : gm.requests_realtime)->Inc();
    double seconds = ToSeconds(clock.Now() - start);
    gm.duration[static_cast<int>(route)]->Observe(seconds);
    RequestCounter(w, route, call.status, call.endpoint).Inc();
    if (call.status >= 400 || !call.error.empty()) {
      LogError(req, path, call, seconds);
    } else {
      spdlog::debug("{} {} {} {} {:.1f}ms id={}", req.method, path, call.status,
                    call.endpoint ? call.endpoint->address() : "-", seconds * 1000,
                    call.request_id);
    }
    co_return keep;
  }

  // One info line per request that ended in an error, so an operator can find it by its
  // x-request-id (rate-limited: a storm of failures must not become a storm of log lines).
  // Sheddable requests refused for capacity are the normal case, not an error: not logged.
  void LogError(const http1::RequestHead& req, std::string_view path, const Call& call,
                double seconds) {
    if (call.status == 429 && call.sheddable) return;
    if (!error_log.Allow(clock.Now())) return;
    if (const uint64_t n = error_log.TakeSuppressed(); n > 0)
      spdlog::info("({} more request errors were not logged)", n);
    spdlog::info("request failed: {} {} status {} reason {} endpoint {} after {:.1f} ms id={}",
                 req.method, path, call.status,
                 call.error.empty() ? std::string_view("upstream_status") : call.error,
                 call.endpoint ? call.endpoint->address() : "-", seconds * 1000, call.request_id);
  }

  // ---------------------------------------------------------------- API requests

  Task<bool> Api(Call& call, const http1::RequestHead& req, std::string& body) {
    if (extension) {
      // A line of a cancelled batch that the async processor had not sent yet.
      if (std::string_view code = extension->Refuses(call.request_id); !code.empty()) {
        co_return co_await proxy->WriteError(
            call, http::status::conflict,
            "this request belongs to a batch that was cancelled or has expired",
            "invalid_request_error", code);
      }
    }
    BodyInfo info = InspectBody(body);
    call.stream = info.stream;
    call.ttfb_timeout = TtfbTimeoutFor(
        info.stream, Header(req, http1::Known::kSloTtftMs, http1::Known::kSloTtftMsAlias));
    SessionCtl& ctl = *call.ctl;
    ctl.prompt.assign(info.prompt);  // stable while the request waits and runs
    ctl.evicted = false;
    using K = http1::Known;
    RoutingHeaders rh;
    rh.objective = Header(req, K::kObjective, K::kObjectiveAlias);
    // With API keys the tenant is the key's, whatever the client's header says.
    rh.fairness_id =
        call.tenant.empty() ? Header(req, K::kFairnessId, K::kFairnessIdAlias) : call.tenant;
    rh.slo_ttft_ms = Header(req, K::kSloTtftMs, K::kSloTtftMsAlias);
    rh.slo_tpot_ms = Header(req, K::kSloTpotMs, K::kSloTpotMsAlias);
    rh.ttl_ms = req.Get(K::kTtlMs);
    rh.session_id = req.Get(K::kSessionId);
    control::RequestView v =
        MakeRequestView(next_request.fetch_add(1, std::memory_order_relaxed),
                        RouteLabel(call.route), info, body.size(), ctl.prompt, rh);

    control::Ticket ticket;
    SessionWaiter waiter(call.ctl, call.w.ioc.get_executor());
    ticket.waiter = &waiter;
    call.ticket = &ticket;
    control::Decision d = director->Admit(ticket, v, clock.Now());
    call.sheddable = ticket.priority < 0;
    if (d.kind == control::DecisionKind::kWait) {
      std::optional<control::Decision> resolved = co_await Wait(call, ticket);
      if (!resolved || ctl.client_gone) {
        // The client hung up while waiting: it left the queue (or gives back its endpoint).
        if (resolved && resolved->kind == control::DecisionKind::kRoute)
          director->Finish(ticket, {.status = 499}, clock.Now());
        gm.client_disconnects->Inc();
        call.status = 499;
        co_return false;
      }
      d = std::move(*resolved);
    }
    if (d.kind == control::DecisionKind::kReject)
      co_return co_await proxy->WriteReject(call, d.reject);

    // vLLM's priority scheduling serves lower values first; a client can only lower its own.
    ApplyPriority(body, info.has_priority, cfg.forward_priority, -ticket.priority);
    bool keep = co_await proxy->Serve(call, req, body, d.pick);
    sched::Outcome o;
    o.endpoint =
        call.endpoint ? static_cast<uint32_t>(call.endpoint->index()) : sched::Outcome::kNone;
    o.status = call.status;
    o.ttft = call.ttft;
    o.output_tokens = call.output_tokens;
    const Nanos now = clock.Now();
    o.duration = now - call.start;
    director->Finish(ticket, o, now);
    co_return keep;
  }

  // Waits for the Director to place (or refuse) a waiting request. nullopt: the client hung
  // up and the request left the queue.
  Task<std::optional<control::Decision>> Wait(Call& call, control::Ticket& ticket) {
    SessionCtl& ctl = *call.ctl;
    ctl.resolved = false;
    ctl.client_gone = false;
    ctl.upstream = nullptr;
    ArmWatch(call);
    bool cancel_tried = false;
    while (!ctl.resolved) {
      ctl.wake.expires_at(Timer::time_point::max());
      co_await ctl.wake.async_wait(kTok);
      if (ctl.resolved) break;
      if (ctl.client_gone && !cancel_tried) {
        cancel_tried = true;
        if (director->Cancel(ticket, clock.Now())) {
          DisarmWatch(call);
          co_return std::nullopt;
        }
        // Already placed or refused: its decision is on its way to this loop.
      }
    }
    const bool gone = ctl.client_gone;
    DisarmWatch(call);
    ctl.client_gone = gone;
    co_return std::move(ctl.decision);
  }

  // ---------------------------------------------------------------- /v1/models

  Task<bool> Models(Call& call) {
    // Right after start-up the prober may not have read every list yet: wait for its first
    // round (bounded).
    if (!prober->FirstRoundDone()) {
      Timer t(call.w.ioc);
      for (int i = 0; i < 150 && !prober->FirstRoundDone(); ++i) {
        t.expires_after(std::chrono::milliseconds(10));
        co_await t.async_wait(kTok);
      }
    }
    const Nanos now = clock.Now();
    size_t answered = 0;
    std::string body = MergedModels(pool, now, &answered);
    if (answered == 0) {
      if (pool.AvailableCount(now) == 0) {
        control::Reject r;
        r.status = 503;
        r.type = "service_unavailable";
        r.code = "no_endpoints";
        r.drop = wire::DropReason::kNoEndpoints;
        r.retry_after_s = 1;
        r.message = "no model server endpoint is available (" + std::to_string(pool.ActiveCount()) +
                    " in the pool, none reachable or healthy)";
        co_return co_await proxy->WriteReject(call, r);
      }
      co_return co_await proxy->WriteError(call, http::status::bad_gateway,
                                           "no model server answered /v1/models", "upstream_error",
                                           "upstream_failed");
    }
    call.status = 200;
    co_return co_await Write(call.client, http::status::ok, call.keep_alive, call.request_id,
                             "application/json", std::move(body));
  }

  // ---------------------------------------------------------------- control loop

  Task<void> AcceptLoop(Acceptor& from, bool admin) {
    size_t next = 0;
    RateLimiter accept_log(1, 3);
    for (;;) {
      Worker& w = *workers[next++ % workers.size()];
      auto [ec, sock] = co_await from.async_accept(w.ioc, kTok);
      if (ec) {
        if (ec == net::error::operation_aborted || !from.is_open()) co_return;
        gm.accept_errors->Inc();
        if (accept_log.Allow(clock.Now())) {
          const uint64_t quiet = accept_log.TakeSuppressed();
          spdlog::warn("accept failed: {}{}", ec.message(),
                       quiet ? " (" + std::to_string(quiet) + " more since the last line)" : "");
        }
        Timer t(control, std::chrono::milliseconds(50));
        co_await t.async_wait(kTok);  // e.g. out of file descriptors: back off briefly
        continue;
      }
      // Counted here, not when the session starts on its loop, so a burst of connects cannot
      // slip past the cap.
      // (The admin listener is not capped with the public port: an operator can still look.)
      if (active_sessions.fetch_add(1) >= max_connections + (admin ? 64 : 0)) {
        active_sessions.fetch_sub(1);
        gm.connections_refused->Inc();
        net::co_spawn(w.ioc, Refuse(std::move(sock)), net::detached);
        continue;
      }
      net::co_spawn(w.ioc, Session(w, std::move(sock), admin), [](std::exception_ptr e) {
        if (!e) return;
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& ex) {
          spdlog::error("session ended by an unexpected error: {}", ex.what());
        }
      });
    }
  }

  // Request bodies held in memory, by every session together (--max-buffered-bytes).
  struct BodyBudget {
    std::atomic<int64_t> used{0};
    int64_t limit = 0;
  };
  // One request's share of the budget, given back when it goes out of scope.
  class BodyHold {
   public:
    explicit BodyHold(BodyBudget& b) : b_(b) {}
    ~BodyHold() {
      if (held_ != 0) b_.used.fetch_sub(held_, std::memory_order_relaxed);
    }
    BodyHold(const BodyHold&) = delete;
    BodyHold& operator=(const BodyHold&) = delete;
    bool Take(int64_t n) {
      if (n <= 0) return true;
      if (b_.used.fetch_add(n, std::memory_order_relaxed) + n > b_.limit) {
        b_.used.fetch_sub(n, std::memory_order_relaxed);
        return false;
      }
      held_ += n;
      return true;
    }

   private:
    BodyBudget& b_;
    int64_t held_ = 0;
  };
  std::string OverBudgetMessage() const {
    return "the gateway holds its limit of " + std::to_string(body_budget.limit) +
           " bytes of request bodies at once (--max-buffered-bytes); retry shortly";
  }

  // How long one attempt waits for its response head: a streamed request with a TTFT SLO gives
  // up on a silent server after max(1 s, factor × SLO) and tries the next one.
  std::chrono::milliseconds TtfbTimeoutFor(bool stream, std::string_view slo_header) const {
    if (!stream || slo_header.empty() || cfg.ttfb_slo_factor <= 0) return cfg.ttfb_timeout;
    double slo_ms = 0;
    auto [p, ec] =
        std::from_chars(slo_header.data(), slo_header.data() + slo_header.size(), slo_ms);
    if (ec != std::errc() || p != slo_header.data() + slo_header.size() || !(slo_ms > 0))
      return cfg.ttfb_timeout;
    const double bound = std::max(1000.0, cfg.ttfb_slo_factor * slo_ms);
    if (bound >= static_cast<double>(cfg.ttfb_timeout.count())) return cfg.ttfb_timeout;
    return std::chrono::milliseconds(static_cast<int64_t>(bound));
  }

  // The 408 text for a client that went silent inside a request's head or body.
  std::string IdleTimeoutMessage(std::string_view part) const {
    return "the client stopped sending in the middle of the request " + std::string(part) +
           " for longer than the client idle timeout (" + FormatDuration(cfg.client_idle_timeout) +
           ")";
  }

  // Answers a connection over the cap with a complete 503 and closes it: the client learns why
  // at once, instead of hanging in the listen backlog.
  Task<void> Refuse(Socket sock) {
    if (tls_on) {  // no plaintext on a TLS port: just close
      beast::error_code ig;
      sock.close(ig);
      co_return;
    }
    const std::string body =
        wire::ErrorBody("the gateway is at its limit of " + std::to_string(max_connections) +
                            " client connections; retry shortly",
                        "service_unavailable", "too_many_connections");
    const std::string msg =
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        "Retry-After: 1\r\nConnection: close\r\nContent-Length: " +
        std::to_string(body.size()) + "\r\n\r\n" + body;
    beast::error_code ec;
    sock.set_option(tcp::no_delay(true), ec);
    // A short, bounded write to a fresh socket: the kernel's send buffer takes it whole.
    sock.non_blocking(true, ec);
    net::write(sock, net::buffer(msg), ec);
    sock.shutdown(tcp::socket::shutdown_both, ec);
    sock.close(ec);
    co_return;
  }

  // Enforces the deadlines of one event loop's sockets (see DeadlineSet) and arms the deferred
  // hang-up watches that came due.
  Task<void> SweepLoop(Worker& w) {
    Timer t(w.ioc);
    for (;;) {
      t.expires_after(kSweepPeriod);
      auto [ec] = co_await t.async_wait(kTok);
      if (ec) co_return;
      const int64_t now = SteadyNowNs();
      w.deadlines.Sweep(now);
      for (SessionState* s : w.sessions) ArmDueWatch(*s, now);
    }
  }

  // The Director's clock: TTLs, eviction, the capacity signal, and dispatch on fresh metrics.
  Task<void> TickLoop() {
    Timer t(control);
    for (;;) {
      director->Tick(clock.Now());
      pool.Sweep(clock.Now());  // endpoints that left and have drained are dropped
      t.expires_after(kTickPeriod);
      auto [ec] = co_await t.async_wait(kTok);
      if (ec) co_return;
    }
  }

  static int64_t UnixMs() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }

  // The dashboard's sampling: in-flight counts every 100 ms, a point every second. Reads
  // atomics only; nothing on the data plane waits for it.
  Task<void> DashboardLoop() {
    Timer t(control);
    std::vector<Dashboard::InFlight> in_flight;
    DashboardTotals totals;
    auto next_point = std::chrono::steady_clock::now();
    for (;;) {
      in_flight.resize(pool.size());
      for (size_t i = 0; i < pool.size(); ++i)
        in_flight[i] = {pool.at(i).InFlight(), pool.at(i).SheddableInFlight()};
      const Nanos now = clock.Now();
      dashboard->Sample(now, in_flight);
      if (std::chrono::steady_clock::now() >= next_point) {
        next_point += std::chrono::seconds(1);
        if (next_point < std::chrono::steady_clock::now())
          next_point = std::chrono::steady_clock::now() + std::chrono::seconds(1);
        totals.requests_realtime = gm.requests_realtime->Value();
        totals.requests_async = gm.requests_async->Value();
        totals.ttft_counts.resize(gm.ttft->bounds().size() + 1);
        for (size_t i = 0; i < totals.ttft_counts.size(); ++i)
          totals.ttft_counts[i] = static_cast<double>(gm.ttft->BucketCount(i));
        dashboard->Close(now, UnixMs(), totals);
      }
      t.expires_after(std::chrono::milliseconds(100));
      auto [ec] = co_await t.async_wait(kTok);
      if (ec || draining.load()) co_return;
    }
  }

  // Reads the async processor's /metrics every second for the dashboard (--processor-metrics).
  // (Default-executor coroutine: tidegate::http::Client speaks any_io_executor.)
  // (The client is made outside the coroutine: GCC 12 destroys a default argument's temporary
  // twice in a coroutine frame. The frame holds it, so a loop still pending when the control
  // loop is destroyed at exit goes together with its client.)
  net::awaitable<void> ProcessorLoop(std::shared_ptr<::tidegate::http::Client> client_ptr,
                                     std::string target) {
    ::tidegate::http::Client& client = *client_ptr;
    namespace th = ::tidegate::http;
    net::steady_timer t(co_await net::this_coro::executor);
    const th::Headers headers;
    for (;;) {
      th::ClientRequest req;
      req.method = "GET";
      req.target = target;
      req.headers = &headers;
      req.deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(900);
      req.max_body_bytes = 4 << 20;
      th::ClientResponse r = co_await client.Send(req);
      ProcessorView v;
      v.url = cfg.processor_metrics;
      if (r.status != 200) {
        v.error = r.status == 0 ? r.error : "HTTP " + std::to_string(r.status);
      } else if (!ParseProcessorMetrics(r.body, &v)) {
        v.error = "the page is not Prometheus text";
      } else {
        v.up = true;
      }
      dashboard->SetProcessor(std::move(v));
      t.expires_after(std::chrono::seconds(1));
      auto [ec] = co_await t.async_wait(net::as_tuple(net::use_awaitable));
      if (ec || draining.load()) co_return;
    }
  }

  void BeginDrain() {
    if (draining.exchange(true)) return;
    net::post(control, [this] {
      spdlog::info("draining: stopped accepting; waiting up to {} ms for {} connection(s)",
                   cfg.drain_timeout.count(), active_sessions.load());
      beast::error_code ec;
      acceptor.close(ec);
      admin_acceptor.close(ec);
      for (auto& w : workers) {
        net::post(w->ioc, [wp = w.get()] {
          for (SessionState* s : wp->sessions)
            if (s->idle) s->stream->socket().cancel();
          for (auto& u : wp->upstream) u.idle.clear();
        });
      }
      net::co_spawn(control, DrainWatch(), net::detached);
    });
  }

  Task<void> DrainWatch() {
    auto deadline = std::chrono::steady_clock::now() + cfg.drain_timeout;
    Timer t(control);
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
    if (scraper) scraper->Stop();
    if (prober) prober->Stop();
    for (auto& w : workers) {
      w->guard.reset();
      w->ioc.stop();
    }
    control.stop();
  }

  GatewayConfig cfg;
  Clock& clock;
  pool::Pool pool;
  std::shared_ptr<const pool::SaturationDetector> detector;
  metrics::Registry registry;
  GatewayMetrics gm;
  std::unique_ptr<control::Director> director;
  // Declared before the control loop: a pending accept on `control` holds a socket of a worker
  // loop, so the control loop (and its handlers) must be destroyed first.
  std::vector<std::unique_ptr<Worker>> workers;
  net::io_context control{1};
  Acceptor acceptor;
  Acceptor admin_acceptor;
  bool admin_on_public = false;
  std::string admin_url;  // "http://host:port" of the admin listener
  std::unique_ptr<Proxy> proxy;
  std::unique_ptr<pool::Scraper> scraper;
  std::unique_ptr<pool::Prober> prober;
  std::unique_ptr<Dashboard> dashboard;
  // Routes served by an extension (the Batch API), on their own threads; null = none.
  std::shared_ptr<Extension> extension;
  std::unique_ptr<net::thread_pool> extension_pool;
  std::atomic<bool> draining{false};
  std::atomic<int> active_sessions{0};
  int max_connections = 0;  // set in Start()
  // Discovery (cfg.discovery): declared last, so the source's thread stops first.
  std::unique_ptr<DiscoverySink> discovery_sink;
  std::unique_ptr<KvEventsFeed> kv_feed;  // --kv-events; null = none
  std::unique_ptr<discovery::Source> discovery_source;
  // API keys (--api-keys); null = no authentication. Swapped whole on SIGHUP; a request keeps
  // the table it was checked against until it ends.
  std::atomic<std::shared_ptr<auth::KeyTable>> keys;

  // The public listener's TLS (--tls-cert/--tls-key); null = plain HTTP.
  std::atomic<std::shared_ptr<net::ssl::context>> tls_ctx;
  bool tls_on = false;   // set in Start(); a reload only swaps the context
  bool keys_on = false;  // set in Start(): --api-keys given

  // A TLS server context: TLS 1.2 with forward-secret AEAD suites, or TLS 1.3.
  static std::string MakeTlsContext(const std::string& cert, const std::string& key,
                                    std::shared_ptr<net::ssl::context>* out) {
    auto ctx = std::make_shared<net::ssl::context>(net::ssl::context::tls_server);
    beast::error_code ec;
    ctx->set_options(net::ssl::context::default_workarounds | net::ssl::context::no_sslv2 |
                         net::ssl::context::no_sslv3 | net::ssl::context::no_tlsv1 |
                         net::ssl::context::no_tlsv1_1 | net::ssl::context::single_dh_use,
                     ec);
    SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
    SSL_CTX_set_cipher_list(ctx->native_handle(),
                            "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!MD5:!RC4:!3DES");
    ctx->use_certificate_chain_file(cert, ec);
    if (ec) return "cannot use the certificate " + cert + ": " + ec.message();
    ctx->use_private_key_file(key, net::ssl::context::pem, ec);
    if (ec) return "cannot use the private key " + key + ": " + ec.message();
    if (SSL_CTX_check_private_key(ctx->native_handle()) != 1)
      return "the private key " + key + " does not match the certificate " + cert;
    *out = std::move(ctx);
    return {};
  }

  void ReloadTls() {
    if (cfg.tls_cert.empty()) return;
    std::shared_ptr<net::ssl::context> ctx;
    if (auto err = MakeTlsContext(cfg.tls_cert, cfg.tls_key, &ctx); !err.empty()) {
      spdlog::error("SIGHUP: keeping the current TLS certificate: {}", err);
      return;
    }
    tls_ctx.store(std::move(ctx));
    spdlog::info("SIGHUP: TLS certificate reloaded from {}", cfg.tls_cert);
  }

  // Re-reads --api-keys; a file that does not parse leaves the old keys in force.
  void ReloadKeys() {
    if (cfg.api_keys_file.empty()) {
      spdlog::info("SIGHUP: no --api-keys file to reload");
      return;
    }
    std::shared_ptr<auth::KeyTable> t;
    if (auto err = auth::LoadKeyFile(cfg.api_keys_file, &t); !err.empty()) {
      spdlog::error("SIGHUP: keeping the current API keys: {}", err);
      return;
    }
    spdlog::info("SIGHUP: API keys reloaded: {} key(s) for {} tenant(s)", t->size(),
                 t->TenantNames().size());
    keys.store(std::move(t));
  }
  BodyBudget body_budget;
  std::atomic<uint64_t> next_request{1};
  RateLimiter error_log{20, 100};  // request-error log lines: 20/s, bursts of 100
  uint16_t bound_port = 0;
  uint16_t admin_port = 0;
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
  std::unique_ptr<sched::Picker> picker;
  if (!I.cfg.scheduler_yaml.empty()) {
    if (auto err = sched::ParseSchedulerConfig(std::string_view(I.cfg.scheduler_yaml), &picker, {},
                                               I.detector);
        !err.empty())
      return "scheduling: " + err;
  } else {
    picker = sched::MakePicker(I.cfg.policy, I.detector);
  }
  if (!picker) return "unknown policy '" + I.cfg.policy + "'";
  const std::string picker_name(picker->name());
  control::DirectorConfig dc;
  dc.objectives = I.cfg.objectives;
  dc.default_objective = I.cfg.default_objective;
  dc.flow = I.cfg.flow;
  // Engines run with priority scheduling when the gateway forwards priorities to them.
  dc.flow.preemptive_engines = I.cfg.forward_priority;
  dc.scrape_interval = I.cfg.scrape_interval;
  I.director =
      std::make_unique<control::Director>(std::move(dc), I.pool, std::move(picker), I.registry);

  tcp::resolver resolver(I.control);
  for (size_t i = 0; i < I.pool.size(); ++i) {
    const auto& ep = I.pool.at(i).config();
    beast::error_code ec;
    auto results = resolver.resolve(ep.host, std::to_string(ep.port), ec);
    if (ec) return "cannot resolve endpoint " + ep.Address() + ": " + ec.message();
  }
  I.proxy = std::make_unique<Proxy>(I.cfg, I.clock, I.pool, *I.director, I.gm, I.draining);
  if (auto err = I.proxy->InitUpstreamTls(); !err.empty()) return "TLS: " + err;

  I.body_budget.limit = static_cast<int64_t>(I.cfg.max_buffered_bytes);
  if (I.cfg.tls_cert.empty() != I.cfg.tls_key.empty())
    return "--tls-cert and --tls-key go together";
  if (!I.cfg.tls_cert.empty()) {
    std::shared_ptr<net::ssl::context> ctx;
    if (auto err = Impl::MakeTlsContext(I.cfg.tls_cert, I.cfg.tls_key, &ctx); !err.empty())
      return "TLS: " + err;
    I.tls_ctx.store(std::move(ctx));
    I.tls_on = true;
  }
  if (!I.cfg.api_keys_file.empty()) {
    std::shared_ptr<auth::KeyTable> t;
    if (auto err = auth::LoadKeyFile(I.cfg.api_keys_file, &t); !err.empty())
      return "--api-keys: " + err;
    spdlog::info("API keys: {} key(s) for tenants {}; requests without a valid key get 401",
                 t->size(), fmt::join(t->TenantNames(), ", "));
    I.keys.store(std::move(t));
    I.keys_on = true;
  }
  // Descriptors: raise the soft limit, then cap client connections below it, keeping a reserve
  // for the control plane (scrapes, health checks, logs) so it keeps working when clients
  // would exhaust them.
  const OpenFilesLimit fds = RaiseOpenFilesLimit();
  const int64_t reserve = 64 + 4 * static_cast<int64_t>(I.pool.size());
  const int64_t soft = static_cast<int64_t>(std::min<uint64_t>(fds.soft, 1u << 30));
  I.max_connections =
      I.cfg.max_connections > 0
          ? I.cfg.max_connections
          : static_cast<int>(std::clamp<int64_t>((soft - reserve) / 2, 16, 1 << 20));
  if (!fds.error.empty()) {
    spdlog::warn("open files: cannot raise the limit from {} to {}: {}", fds.before, fds.hard,
                 fds.error);
  }
  spdlog::info("open files: limit {}{}; at most {} client connections{}", fds.soft,
               fds.soft > fds.before ? " (raised from " + std::to_string(fds.before) + ")" : "",
               I.max_connections, I.cfg.max_connections > 0 ? " (--max-connections)" : "");
  if (I.cfg.max_connections > 0 && 2 * static_cast<int64_t>(I.max_connections) + reserve > soft)
    spdlog::warn(
        "--max-connections {} may exhaust the open-files limit {} (each connection can "
        "hold an upstream one too)",
        I.max_connections, fds.soft);

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

  if (I.cfg.admin_address == "public") {
    I.admin_on_public = true;
    I.admin_url = "http://" + I.cfg.host + ":" + std::to_string(I.bound_port);
  } else {
    pool::EndpointConfig a;
    // Port 0 (a free one) is allowed here, unlike for endpoints.
    std::string text = I.cfg.admin_address;
    const bool any_port = text.size() > 2 && text.compare(text.size() - 2, 2, ":0") == 0;
    if (any_port) text.replace(text.size() - 1, 1, "1");
    if (auto err = pool::ParseEndpoint(text, &a); !err.empty())
      return "--admin-address '" + I.cfg.admin_address + "': " + err + " (or 'public')";
    if (any_port) a.port = 0;
    auto admin_addr = net::ip::make_address(a.host, ec);
    if (ec)
      return "--admin-address '" + I.cfg.admin_address + "': use an IP address such as 127.0.0.1";
    tcp::endpoint admin_ep(admin_addr, a.port);
    I.admin_acceptor.open(admin_ep.protocol(), ec);
    if (!ec) I.admin_acceptor.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) I.admin_acceptor.bind(admin_ep, ec);
    if (!ec) I.admin_acceptor.listen(64, ec);
    if (ec)
      return "cannot listen on the admin address " + I.cfg.admin_address + ": " + ec.message() +
             " (choose another with --admin-address HOST:PORT, or 'public')";
    I.admin_port = I.admin_acceptor.local_endpoint().port();
    I.admin_url = "http://" + a.host + ":" + std::to_string(I.admin_port);
  }

  int threads =
      I.cfg.threads > 0 ? I.cfg.threads : std::max(1u, std::thread::hardware_concurrency());
  for (int t = 0; t < threads; ++t) {
    auto w = std::make_unique<Worker>();
    w->upstream.resize(I.pool.size());
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
  net::co_spawn(I.control, I.AcceptLoop(I.acceptor, false), net::detached);
  if (!I.admin_on_public)
    net::co_spawn(I.control, I.AcceptLoop(I.admin_acceptor, true), net::detached);

  pool::ScraperConfig sc;
  sc.interval = I.cfg.scrape_interval;
  sc.timeout = I.cfg.stale_after;
  sc.tls = I.cfg.upstream_tls;
  sc.default_engine = I.cfg.default_engine;
  I.scraper =
      std::make_unique<pool::Scraper>(I.control.get_executor(), I.pool, std::move(sc), I.clock,
                                      I.registry, [&I] { I.director->Poke(I.clock.Now()); });
  I.prober = std::make_unique<pool::Prober>(I.control.get_executor(), I.pool,
                                            Nanos(I.cfg.health_interval), I.cfg.upstream_tls);
  I.prober->Start();
  I.scraper->Start();
  // Endpoints that join later get their probe and scrape loops; gone ones their state dropped.
  if (!I.cfg.tokenizer.empty()) {
    std::string err;
    std::shared_ptr<const tokenizer::Tokenizer> tok =
        tokenizer::Tokenizer::Load(I.cfg.tokenizer, &err);
    if (!tok) return "--tokenizer: " + err;
    spdlog::info(
        "tokenizer: {} ({} tokens; chat template: {})", I.cfg.tokenizer, tok->vocab_size(),
        tok->chat_template().reason().empty() ? "rendered" : tok->chat_template().reason());
    SetModelTokenizer(std::move(tok));
  }
  const bool precise =
      I.cfg.scheduler_yaml.empty()
          ? I.cfg.policy == "tidegate-precise"
          : I.cfg.scheduler_yaml.find("precise-prefix-cache-scorer") != std::string::npos;
  if (I.cfg.kv_events.enabled) {
    I.kv_feed = std::make_unique<KvEventsFeed>(I.cfg.kv_events, I.pool, sched::SharedKvBlockIndex(),
                                               I.registry);
    I.kv_feed->Refresh();
    spdlog::info("kv events: {}", I.kv_feed->Describe());
    if (I.cfg.tokenizer.empty())
      spdlog::warn(
          "kv events: no --tokenizer: prompts are matched in the simulator's stand-in "
          "token ids (4 bytes a token), which only `tidegate sim` without --tokenizer "
          "uses; give the model's tokenizer for a real engine");
    if (!precise)
      spdlog::info(
          "kv events: the policy does not use precise-prefix-cache-scorer (e.g. "
          "--policy tidegate-precise); the index is kept but not used for picking");
  } else if (precise) {
    spdlog::warn(
        "precise-prefix-cache-scorer without --kv-events: every endpoint is scored by "
        "the approximate prefix index");
  }
  I.pool.OnChange([&I](const pool::Pool::Change& change) {
    LogPoolChange(I.pool, change);
    for (size_t i : change.added) {
      I.prober->Added(i);
      I.scraper->Added(i);
    }
    if (I.kv_feed) {
      for (size_t i : change.gone) I.kv_feed->Gone(i);
      I.kv_feed->Refresh();
    }
    I.director->MembershipChanged(change, I.clock.Now());
  });
  if (!I.cfg.discovery.type.empty()) {
    std::string err;
    I.discovery_source = discovery::MakeSource(I.cfg.discovery, &err);
    if (!I.discovery_source) return err;
    I.discovery_sink = std::make_unique<DiscoverySink>(I.discovery_source->Type(), I.pool,
                                                       *I.director, I.clock, I.registry);
    if (auto e = I.discovery_source->Start(I.discovery_sink.get()); !e.empty())
      return "discovery " + I.discovery_source->Type() + ": " + e;
    spdlog::info("discovery: {}; {} endpoint(s) now", I.discovery_source->Describe(),
                 I.pool.ActiveCount());
    if (I.pool.ActiveCount() == 0)
      spdlog::warn("discovery: no endpoints yet; requests get 503 until some appear");
  }
  net::co_spawn(I.control, I.TickLoop(), net::detached);
  I.dashboard = std::make_unique<Dashboard>(I.pool, I.gm.endpoint_busy, I.gm.ttft->bounds());
  net::co_spawn(I.control, I.DashboardLoop(), net::detached);
  if (!I.cfg.processor_metrics.empty()) {
    ::tidegate::http::Url url;
    std::string err;
    if (!::tidegate::http::ParseHttpUrl(I.cfg.processor_metrics, &url, &err))
      return "--processor-metrics: " + err;
    // A URL without a path means the processor's usual /metrics.
    std::string target = url.base_path.empty() ? "/metrics" : "";
    auto client = std::make_shared<::tidegate::http::Client>(I.control.get_executor(), url);
    net::co_spawn(I.control, I.ProcessorLoop(std::move(client), target), net::detached);
  }

  std::string eps;
  for (size_t i = 0; i < I.pool.size(); ++i) eps += (i ? "," : "") + I.pool.at(i).address();
  const auto& f = I.cfg.flow;
  spdlog::info("tidegate serve: {} event loop(s), policy {}, {} endpoint(s): {}", threads,
               picker_name, I.pool.size(), eps);
  if (f.enabled) {
    spdlog::info(
        "flow control: on (queue up to {} requests, TTL {} ms, {} fairness, {} order, in-flight "
        "bound per endpoint {})",
        f.limits.max_requests, std::chrono::duration_cast<milliseconds>(f.ttl).count(),
        f.fairness == control::Fairness::kRoundRobin ? "round-robin" : "global-strict",
        f.ordering == control::Ordering::kFcfs ? "fcfs" : "edf",
        I.detector->config().max_in_flight_per_endpoint > 0
            ? std::to_string(I.detector->config().max_in_flight_per_endpoint)
            : std::string("none"));
  } else {
    spdlog::info("flow control: off (requests go straight to the best endpoint)");
  }
  spdlog::info("admin (/metrics, /v1/pool, /v1/capacity, /dashboard) on {}{}", I.admin_url,
               I.admin_on_public ? " (the public port: --admin-address public)" : "");
  if (!I.keys.load() && !addr.is_loopback())
    spdlog::warn(
        "listening on {} without API keys: anyone who can reach port {} can use the "
        "model servers (and set any objective); give --api-keys FILE",
        I.cfg.host, I.bound_port);
  spdlog::info("listening on {}://{}:{}", I.tls_ctx.load() ? "https" : "http", I.cfg.host,
               I.bound_port);
  return {};
}

uint16_t Gateway::admin_port() const { return impl_->admin_port; }

uint16_t Gateway::port() const { return impl_->bound_port; }

void Gateway::SetExtension(std::shared_ptr<Extension> extension) {
  impl_->extension = std::move(extension);
  if (impl_->extension && !impl_->extension_pool)
    impl_->extension_pool = std::make_unique<net::thread_pool>(2);
}

void Gateway::BeginDrain() { impl_->BeginDrain(); }

SharedState Gateway::Shared() {
  auto& I = *impl_;
  return SharedState{I.cfg,      I.clock, I.pool,     *I.director,
                     I.registry, I.gm,    I.draining, I.next_request};
}

int Gateway::RunUntilSignal() {
  auto& I = *impl_;
  ::signal(SIGPIPE, SIG_IGN);
  net::signal_set signals(I.control, SIGINT, SIGTERM, SIGHUP);
  std::function<void(const beast::error_code&, int)> on_signal;
  on_signal = [&](const beast::error_code& ec, int sig) {
    if (ec) return;
    if (sig == SIGHUP) {
      I.ReloadKeys();
      I.ReloadTls();
      if (I.discovery_source) {
        spdlog::info("SIGHUP: discovery {} re-reads its origin", I.discovery_source->Type());
        I.discovery_source->Refresh();
      }
      signals.async_wait(on_signal);
      return;
    }
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
  if (I.discovery_source) I.discovery_source->Stop();
  for (auto& w : I.workers) {
    w->guard.reset();
    w->ioc.stop();
    if (w->thread.joinable()) w->thread.join();
  }
  return 0;
}

}  // namespace tidegate::gateway
