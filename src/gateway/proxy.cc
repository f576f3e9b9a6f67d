// The upstream attempts and the streaming relay (contract in gateway/proxy.h).
#include "gateway/proxy.h"

#include <spdlog/spdlog.h>

#include <boost/container/static_vector.hpp>
#include <charconv>
#include <cstring>

#include "gateway/http1.h"
#include "gateway/sse.h"
#include "gateway/wire.h"
#include "http/tls.h"
#include "wire/errors.h"
#include "wire/wire.h"

namespace tidegate::gateway {

using namespace std::string_view_literals;

namespace {

constexpr std::string_view kCrlf = "\r\n", kLastChunk = "0\r\n\r\n";

// The "<hex size>\r\n" line that opens a chunk of `n` bytes, formatted into `buf`.
net::const_buffer ChunkSizeLine(char (&buf)[24], size_t n) {
  char* end = std::to_chars(buf, buf + 20, n, 16).ptr;
  *end++ = '\r';
  *end++ = '\n';
  return net::buffer(buf, static_cast<size_t>(end - buf));
}

// Appends the decimal form of `v` (std::to_chars: no locale, no allocation).
template <typename T>
void AppendNumber(std::string& s, T v) {
  char buf[24];
  s.append(buf, static_cast<size_t>(std::to_chars(buf, buf + sizeof buf, v).ptr - buf));
}

}  // namespace

Task<bool> WriteResponse(TimedSocket& s, http::status status, bool keep_alive,
                         std::chrono::milliseconds write_timeout, const std::string& request_id,
                         std::string_view content_type, std::string body, const Extra& extra) {
  http::response<http::string_body> res{status, 11};
  res.set(http::field::server, "tidegate");
  res.set(http::field::content_type, content_type);
  if (!request_id.empty()) res.set(wire::kRequestId, request_id);
  if (extra.endpoint) res.set(wire::kDestinationEndpoint, extra.endpoint->address());
  if (!extra.dropped_reason.empty()) {
    res.set(wire::kDroppedReason, extra.dropped_reason);
    res.set(wire::kDroppedReasonAlias, extra.dropped_reason);
  }
  if (extra.retry_after >= 0) res.set(http::field::retry_after, std::to_string(extra.retry_after));
  if (extra.allow) res.set(http::field::allow, extra.allow);
  if (extra.www_authenticate) res.set(http::field::www_authenticate, extra.www_authenticate);
  res.keep_alive(keep_alive);
  res.body() = std::move(body);
  res.prepare_payload();
  s.expires_after(write_timeout);
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

void ArmWatch(TimedSocket& client, const std::shared_ptr<SessionCtl>& ctl) {
  SessionCtl& c = *ctl;
  const uint64_t gen = ++c.watch_gen;
  c.armed = true;
  c.watch_due_ns = 0;
  Socket& sock = client.socket();
  sock.async_wait(tcp::socket::wait_read, [cp = ctl, gen, &sock](const beast::error_code& ec) {
    if (ec || cp->watch_gen != gen || !cp->armed) return;  // disarmed
    char ch;
    ssize_t n = ::recv(sock.native_handle(), &ch, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR))) return;
    cp->client_gone = true;
    cp->wake.cancel();  // a request waiting at the gateway leaves at once
    if (cp->upstream) {
      beast::error_code ig;
      cp->upstream->stream.socket().shutdown(tcp::socket::shutdown_both, ig);
      cp->upstream->stream.socket().close(ig);
    }
  });
}

void ArmWatchDeferred(Call& call) {
  SessionCtl& c = *call.ctl;
  c.client_gone = false;
  c.upstream = nullptr;
  c.watch_due_ns =
      SteadyNowNs() + std::chrono::duration_cast<std::chrono::nanoseconds>(kWatchDelay).count();
}

void ArmDueWatch(SessionState& s, int64_t now_ns) {
  if (!s.ctl || s.ctl->watch_due_ns == 0 || now_ns < s.ctl->watch_due_ns || s.ctl->armed) return;
  ArmWatch(*s.stream, s.ctl);
}

void DisarmWatch(Call& call) {
  SessionCtl& c = *call.ctl;
  c.watch_due_ns = 0;
  if (!c.armed) return;
  c.armed = false;
  ++c.watch_gen;
  c.upstream = nullptr;
  beast::error_code ig;
  call.client.socket().cancel(ig);
}

Proxy::Proxy(const GatewayConfig& cfg, Clock& clock, pool::Pool& pool, control::Director& director,
             GatewayMetrics& metrics, const std::atomic<bool>& draining)
    : cfg_(cfg),
      clock_(clock),
      pool_(pool),
      director_(director),
      m_(metrics),
      draining_(draining) {}

std::string Proxy::InitUpstreamTls() {
  // Built even when no endpoint is https:// yet, since discovery may add one later; an error
  // stops start-up only when one is configured now (later ones fail to connect, logged).
  bool any = false;
  for (size_t i = 0; i < pool_.size(); ++i) any |= pool_.at(i).config().tls;
  std::string err;
  auto ctx = ::tidegate::http::MakeClientTlsContext(cfg_.upstream_tls, &err);
  if (!ctx) {
    if (any) return "upstream TLS: " + err;
    spdlog::warn("upstream TLS unavailable ({}): https:// endpoints found later cannot be used",
                 err);
    return {};
  }
  upstream_tls_ = std::move(ctx);
  return {};
}

Task<bool> Proxy::WriteError(Call& call, http::status status, std::string_view message,
                             std::string_view type, std::string_view code, Extra extra) {
  call.status = static_cast<int>(status);
  call.error = code;
  extra.head_only = call.head_only;
  co_return co_await WriteResponse(call.client, status, call.keep_alive && !draining_.load(),
                                   cfg_.stream_idle_timeout, call.request_id, "application/json",
                                   wire::ErrorBody(message, type, code), extra);
}

Task<bool> Proxy::WriteReject(Call& call, const control::Reject& r) {
  Extra extra;
  extra.dropped_reason = wire::DropReasonName(r.drop);
  extra.retry_after = r.retry_after_s;
  co_return co_await WriteError(call, static_cast<http::status>(r.status), r.message, r.type,
                                r.code, extra);
}

void Proxy::UpstreamError(const pool::Endpoint& ep, const char* reason, const std::string& detail) {
  m_.upstream_errors->With({ep.address(), reason}).Inc();
  spdlog::warn("upstream {} {}: {}", ep.address(), reason, detail);
}

void Proxy::UpstreamFailure(pool::Endpoint& ep, const char* reason, const std::string& detail) {
  UpstreamError(ep, reason, detail);
  const Nanos now = clock_.Now();
  if (ep.RecordUpstreamFailure(now, cfg_.outlier, reason)) {
    m_.ejections->With({ep.address(), reason}).Inc();
    spdlog::warn(
        "endpoint {} ejected for {} ms: {} (its health checks do not end an ejection)",
        ep.address(),
        std::chrono::duration_cast<std::chrono::milliseconds>(ep.EjectedUntil() - now).count(),
        ep.EjectionReason());
  }
}

Worker::Upstream& Proxy::UpstreamOf(Worker& w, const pool::Endpoint& ep) {
  if (w.upstream.size() <= ep.index()) w.upstream.resize(ep.index() + 1);
  Worker::Upstream& u = w.upstream[ep.index()];
  if (u.uid != ep.uid()) {
    u.idle.clear();
    u.resolved = false;
    u.addrs = {};
    u.uid = ep.uid();
  }
  return u;
}

std::unique_ptr<UpConn> Proxy::PopIdle(Worker& w, const pool::Endpoint& ep) {
  auto& v = UpstreamOf(w, ep).idle;
  if (v.empty()) return nullptr;
  auto c = std::move(v.back());
  v.pop_back();
  return c;
}

void Proxy::PushIdle(Worker& w, const pool::Endpoint& ep, std::unique_ptr<UpConn> c) {
  auto& v = UpstreamOf(w, ep).idle;
  if (v.size() >= cfg_.max_idle_upstream_conns || draining_.load() || !ep.Active()) return;
  c->in.start = c->in.end = 0;
  v.push_back(std::move(c));
}

Task<std::pair<std::unique_ptr<UpConn>, Proxy::AttemptResult>> Proxy::Connect(Worker& w,
                                                                              pool::Endpoint& ep) {
  if (ep.config().tls && !upstream_tls_) {
    ep.RecordConnectFailure(clock_.Now());
    UpstreamError(ep, "connect_refused", "no upstream TLS context for an https:// endpoint");
    co_return std::pair{nullptr, AttemptResult{Outcome::kConnectFailed,
                                               "no upstream TLS context for an https:// endpoint"}};
  }
  // Addresses: an IP literal as it is; a host name resolved once per loop (Asio resolves on its
  // own thread, so the loop does not block).
  if (!UpstreamOf(w, ep).resolved) {
    beast::error_code aec;
    const auto ip = net::ip::make_address(ep.config().host, aec);
    std::vector<tcp::endpoint> addrs;
    if (!aec) {
      addrs.emplace_back(ip, ep.config().port);
    } else {
      tcp::resolver resolver(w.ioc.get_executor());
      auto [rec, found] =
          co_await resolver.async_resolve(ep.config().host, std::to_string(ep.config().port), kTok);
      if (rec) {
        ep.RecordConnectFailure(clock_.Now());
        UpstreamError(ep, "connect_refused", "cannot resolve " + ep.config().host);
        co_return std::pair{
            nullptr, AttemptResult{Outcome::kConnectFailed, "cannot resolve " + ep.config().host +
                                                                " (" + rec.message() + ")"}};
      }
      for (const auto& r : found) addrs.push_back(r.endpoint());
    }
    Worker::Upstream& u = UpstreamOf(w, ep);
    u.addrs = std::move(addrs);
    u.resolved = true;
  }
  auto conn = std::make_unique<UpConn>(w.ioc.get_executor(), w.deadlines);
  conn->stream.expires_after(cfg_.connect_timeout);
  auto [ec, e] = co_await net::async_connect(conn->stream.socket(), UpstreamOf(w, ep).addrs, kTok);
  conn->stream.expires_never();
  if (ec) {
    ep.RecordConnectFailure(clock_.Now());
    const bool timed_out = TimedOut(ec, conn->stream);
    if (timed_out) ec = net::error::timed_out;
    const char* reason = timed_out ? "connect_timeout" : "connect_refused";
    UpstreamError(ep, reason, ec.message());
    co_return std::pair{
        nullptr, AttemptResult{Outcome::kConnectFailed, "cannot connect (" + ec.message() + ")"}};
  }
  beast::error_code ig;
  conn->stream.socket().set_option(tcp::no_delay(true), ig);
  if (ep.config().tls && upstream_tls_) {
    // https:// endpoint: verify its certificate for its host name (or IP), within the connect
    // timeout.
    conn->stream.StartTls(*upstream_tls_);
    TlsStream& tls = *conn->stream.tls();
    ::tidegate::http::PrepareClientTls(tls, ep.config().host);
    conn->stream.expires_after(cfg_.connect_timeout);
    auto [hec] = co_await tls.async_handshake(net::ssl::stream_base::client, kTok);
    conn->stream.expires_never();
    if (hec) {
      ep.RecordConnectFailure(clock_.Now());
      UpstreamError(ep, "tls_handshake", hec.message());
      co_return std::pair{nullptr, AttemptResult{Outcome::kConnectFailed,
                                                 "TLS handshake failed (" + hec.message() + ")"}};
    }
  }
  co_return std::pair{std::move(conn), AttemptResult{Outcome::kDone, {}}};
}

// Serialises the upstream request head into `h` (reused, so no allocation once warm): same
// method, target and end-to-end headers as the client's, our Host and x-request-id.
void Proxy::BuildUpstreamHead(const Call& call, const http1::RequestHead& req, size_t body_bytes,
                              const pool::Endpoint& ep, std::string& h) {
  h.clear();
  h.append(req.method).append(" "sv).append(req.target).append(" HTTP/1.1\r\nHost: "sv);
  h.append(ep.address()).append("\r\n"sv);
  const bool strip_auth = call.strip_authorization;
  http1::ForEachEndToEndHeader(
      req, [&h, strip_auth](std::string_view name, std::string_view value) {
        using http1::detail::IEquals;
        if (strip_auth && name.size() == 13 && IEquals(name, "authorization")) return;
        if ((name.size() == 4 && IEquals(name, "host")) ||
            (name.size() == 6 && IEquals(name, "expect")) ||
            (name.size() == wire::kRequestId.size() && IEquals(name, wire::kRequestId)))
          return;
        h.append(name).append(": "sv).append(value).append("\r\n"sv);
      });
  h.append(wire::kRequestId).append(": "sv).append(call.request_id).append("\r\n"sv);
  h.append("Content-Length: "sv);
  AppendNumber(h, body_bytes);
  h.append("\r\n\r\n"sv);
}

Task<bool> Proxy::Serve(Call& call, const http1::RequestHead& req, const std::string& body,
                        const sched::PickResult& pick) {
  ArmWatchDeferred(call);
  bool keep = false;
  std::string failures;
  bool all_connect_failures = true;
  const uint32_t attempts = std::min<uint32_t>(pick.count, 2);
  for (uint32_t a = 0; a < attempts && !call.ctl->client_gone; ++a) {
    pool::Endpoint& ep = pool_.at(pick.order[a]);
    if (a > 0) {
      m_.retries->Inc();
      director_.Fallback(*call.ticket, pick.order[a - 1], pick.order[a], clock_.Now());
    }
    call.endpoint = &ep;
    AttemptResult r = co_await Attempt(call, req, body, ep, keep);
    if (r.outcome == Outcome::kDone || r.outcome == Outcome::kClientGone) break;
    if (r.outcome == Outcome::kEvicted) {
      DisarmWatch(call);
      keep = co_await WriteReject(call, call.ctl->evict_reject);
      break;
    }
    if (r.outcome == Outcome::kTimeout && a + 1 == attempts) {
      director_.Fallback(*call.ticket, pick.order[a], sched::Outcome::kNone, clock_.Now());
      DisarmWatch(call);
      std::string msg = "the model server at " + ep.address() +
                        " did not start responding within " +
                        std::to_string(call.ttfb_timeout.count()) + " ms" +
                        (failures.empty() ? "" : " (before it: " + failures + ")");
      keep = co_await WriteError(call, http::status::gateway_timeout, std::move(msg),
                                 "upstream_timeout", "upstream_timeout", {.endpoint = &ep});
      break;
    }
    if (r.outcome == Outcome::kTimeout) {
      // Nothing reached the client: the one retry goes to the next endpoint.
      failures += (failures.empty() ? "" : "; ") + ep.address() + ": no response head within " +
                  std::to_string(call.ttfb_timeout.count()) + " ms";
      all_connect_failures = false;
      continue;
    }
    if (r.outcome != Outcome::kConnectFailed) all_connect_failures = false;
    failures += (failures.empty() ? "" : "; ") + ep.address() + ": " + r.detail;
    if (a + 1 == attempts && !call.ctl->client_gone) {
      director_.Fallback(*call.ticket, pick.order[a], sched::Outcome::kNone, clock_.Now());
      DisarmWatch(call);
      if (all_connect_failures && pool_.AvailableCount(clock_.Now()) == 0) {
        call.endpoint = nullptr;
        control::Reject none;
        none.status = 503;
        none.type = "service_unavailable";
        none.code = "no_endpoints";
        none.drop = wire::DropReason::kNoEndpoints;
        none.retry_after_s = 1;
        none.message = "no model server endpoint is available to serve this request (" +
                       std::to_string(pool_.ActiveCount()) +
                       " in the pool, none reachable or healthy)";
        keep = co_await WriteReject(call, none);
      } else {
        keep = co_await WriteError(call, http::status::bad_gateway,
                                   "the model server failed before responding (" + failures + ")",
                                   "upstream_error", "upstream_failed", {.endpoint = &ep});
      }
    }
  }
  if (call.ctl->client_gone) {
    m_.client_disconnects->Inc();
    call.status = 499;  // nginx's "client closed request"
    call.error = "client_disconnected";
    keep = false;
  }
  DisarmWatch(call);
  co_return keep;
}

// One endpoint: send the request, read the response head, then relay the body.
Task<Proxy::AttemptResult> Proxy::Attempt(Call& call, const http1::RequestHead& req,
                                          const std::string& body, pool::Endpoint& ep, bool& keep) {
  Worker& w = call.w;
  std::unique_ptr<UpConn> conn = PopIdle(w, ep);
  bool reused = conn != nullptr;
  http1::ResponseHead rh;
  for (;;) {
    if (!conn) {
      auto [c, r] = co_await Connect(w, ep);
      if (!c) co_return r;
      conn = std::move(c);
    }
    if (call.ctl->client_gone) co_return AttemptResult{Outcome::kClientGone, {}};
    if (call.ctl->evicted) co_return AttemptResult{Outcome::kEvicted, {}};
    call.ctl->upstream = conn.get();
    conn->in.start = conn->in.end = 0;
    BuildUpstreamHead(call, req, body.size(), ep, conn->head);
    conn->stream.expires_after(call.ttfb_timeout);
    std::array<net::const_buffer, 2> out{net::buffer(conn->head), net::buffer(body)};
    auto [ec, n] = co_await net::async_write(conn->stream, out, kTok);
    // Read until a complete head (informational 1xx heads are skipped).
    const char* invalid = nullptr;
    while (!ec) {
      rh = {};
      const http1::HeadStatus hs = http1::ParseResponseHead(
          std::string_view(conn->in.buf.get() + conn->in.start, conn->in.end - conn->in.start),
          false, &rh);
      if (hs == http1::HeadStatus::kOk) {
        if (rh.status >= 100 && rh.status < 200 && rh.status != 101) {
          conn->in.start += rh.head_bytes;
          continue;
        }
        break;
      }
      if (hs == http1::HeadStatus::kInvalid) {
        invalid = rh.error;
        break;
      }
      conn->in.Compact(http1::kMaxHeadBytes + UpConn::kBufBytes);
      std::tie(ec, n) = co_await conn->stream.async_read_some(
          net::buffer(conn->in.buf.get() + conn->in.end, conn->in.cap - conn->in.end), kTok);
      if (!ec) conn->in.end += n;
    }
    conn->stream.expires_never();
    if (!ec && !invalid && rh.status == 101) invalid = "a 101 Switching Protocols response";
    if (!ec && !invalid) break;
    call.ctl->upstream = nullptr;
    if (call.ctl->client_gone) co_return AttemptResult{Outcome::kClientGone, {}};
    if (call.ctl->evicted) co_return AttemptResult{Outcome::kEvicted, {}};
    if (invalid) {
      UpstreamFailure(ep, "invalid_response", invalid);
      co_return AttemptResult{Outcome::kFailedBeforeResponse,
                              std::string("answered with an invalid response (") + invalid + ")"};
    }
    if (TimedOut(ec, conn->stream)) {
      UpstreamFailure(
          ep, "ttfb_timeout",
          "no response header within " + std::to_string(call.ttfb_timeout.count()) + " ms");
      co_return AttemptResult{Outcome::kTimeout, {}};
    }
    if (reused && conn->in.end == 0) {
      // A pooled keep-alive connection the server had already closed: reconnect once.
      conn.reset();
      reused = false;
      continue;
    }
    UpstreamFailure(ep, "closed_before_response", ec.message());
    co_return AttemptResult{Outcome::kFailedBeforeResponse,
                            "closed the connection before responding (" + ec.message() + ")"};
  }
  ep.RecordSuccess();
  ep.RecordServed();
  co_return co_await Relay(call, ep, std::move(conn), rh, keep);
}

// Writes a gather list to the client, bounded by the stream idle timeout.
template <typename Buffers>
Task<beast::error_code> Proxy::WriteClient(TimedSocket& s, const Buffers& buffers) {
  s.expires_after(cfg_.stream_idle_timeout);
  auto [ec, n] = co_await net::async_write(s, buffers, kTok);
  s.expires_never();
  co_return ec;
}

Task<Proxy::AttemptResult> Proxy::Relay(Call& call, pool::Endpoint& ep,
                                        std::unique_ptr<UpConn> conn, const http1::ResponseHead& rh,
                                        bool& keep) {
  call.status = rh.status;
  const bool sse = rh.content_type.starts_with("text/event-stream");
  const bool json = rh.content_type.starts_with("application/json");
  // The client gets the body with a Content-Length when the upstream gave one, else chunked
  // (HTTP/1.1) or delimited by closing the connection (HTTP/1.0, which has no chunked coding).
  const bool unknown_length =
      rh.body == http1::BodyKind::kChunked || rh.body == http1::BodyKind::kUntilClose;
  const bool to_client_chunked = unknown_length && !call.http10;
  const bool close_delimited = unknown_length && call.http10;
  keep = call.keep_alive && !draining_.load() && !close_delimited;
  // The SSE stream as relayed so far: its data events (output tokens) and whether it stands at
  // an event boundary (an error event may only start there).
  SseScanner sse_scan;

  // The response head, serialised by hand into the session's reusable buffer.
  std::string& h = call.head;
  h.clear();
  h.append("HTTP/1.1 "sv);
  AppendNumber(h, rh.status);
  h.append(" "sv);
  if (!rh.reason.empty()) {
    h.append(rh.reason);
  } else {
    h.append(http::obsolete_reason(static_cast<http::status>(rh.status)));
  }
  h.append("\r\n"sv);
  http1::ForEachEndToEndHeader(rh, [&h](std::string_view name, std::string_view value) {
    if (http1::detail::IEquals(name, wire::kDestinationEndpoint) ||
        http1::detail::IEquals(name, wire::kRequestId))
      return;
    h.append(name).append(": "sv).append(value).append("\r\n"sv);
  });
  h.append(wire::kDestinationEndpoint).append(": "sv).append(ep.address()).append("\r\n"sv);
  h.append(wire::kRequestId).append(": "sv).append(call.request_id).append("\r\n"sv);
  if (to_client_chunked) {
    h.append("Transfer-Encoding: chunked\r\n"sv);
  } else if (close_delimited) {
    // No framing header: the body ends when the connection closes.
  } else if (rh.body == http1::BodyKind::kLength) {
    h.append("Content-Length: "sv);
    AppendNumber(h, rh.content_length);
    h.append("\r\n"sv);
  } else if (rh.status != 204 && rh.status != 304) {
    h.append("Content-Length: 0\r\n"sv);
  }
  if (!keep) h.append("Connection: close\r\n"sv);
  h.append("\r\n"sv);
  conn->in.start += rh.head_bytes;

  auto client_gone = [&]() -> AttemptResult {
    beast::error_code ig;
    conn->stream.socket().shutdown(tcp::socket::shutdown_both, ig);
    conn->stream.socket().close(ig);
    call.ctl->upstream = nullptr;
    call.ctl->client_gone = true;
    keep = false;
    return AttemptResult{Outcome::kClientGone, {}};
  };

  http1::ChunkDecoder chunks;
  uint64_t remaining = rh.content_length;
  bool head_pending = true;
  bool upstream_eof = false;
  bool done = false;
  size_t leftover = 0;  // bytes after the end of the body
  const char* failure = nullptr;
  beast::error_code fail_ec;
  for (;;) {
    // Frame what is buffered: the data bytes start at `data` (decoded in place).
    char* data = conn->in.buf.get() + conn->in.start;
    const size_t avail = conn->in.end - conn->in.start;
    size_t got = 0, extra = 0;
    switch (rh.body) {
      case http1::BodyKind::kNone:
        extra = avail;
        done = true;
        break;
      case http1::BodyKind::kLength:
        got = static_cast<size_t>(std::min<uint64_t>(avail, remaining));
        remaining -= got;
        extra = avail - got;
        done = remaining == 0;
        break;
      case http1::BodyKind::kChunked:
        got = chunks.Decode(data, avail, &extra);
        done = chunks.done();
        if (chunks.failed()) {
          failure = "malformed_chunked_body";
          fail_ec = http::error::bad_chunk;
        }
        break;
      case http1::BodyKind::kUntilClose:
        got = avail;
        done = upstream_eof;
        break;
    }
    conn->in.start = conn->in.end;  // consumed (the extra bytes now sit at data + got)
    leftover = extra;
    const bool evicted = failure && call.ctl->evicted;
    if (evicted && head_pending) {
      // Nothing reached the client yet: it gets the eviction as a plain 429.
      call.ctl->upstream = nullptr;
      co_return AttemptResult{Outcome::kEvicted, {}};
    }
    // The head goes out with the first body bytes when they arrived with it (one write, one
    // segment for a small response); otherwise at once, so a client waiting on a slow first
    // token still sees the status promptly.
    if (got > 0 || head_pending || (done && to_client_chunked)) {
      if (got > 0) {
        if (call.ttft.count() < 0) {
          call.ttft = clock_.Now() - call.start;
          if (call.stream) m_.ttft->Observe(ToSeconds(call.ttft));
        }
        if (sse) {
          sse_scan.Feed(std::string_view(data, got));
          if (sse_scan.DataEvents() > 0) call.output_tokens = sse_scan.DataEvents();
        } else if (json) {
          CountJsonTokens(std::string_view(data, got), &call.output_tokens);
        }
      }
      // Backpressure: the next upstream read starts only after this client write completes.
      boost::container::static_vector<net::const_buffer, 5> out;
      char size_line[24];
      if (head_pending) out.push_back(net::buffer(h));
      if (got > 0) {
        if (to_client_chunked) {
          out.push_back(ChunkSizeLine(size_line, got));
          out.push_back(net::buffer(data, got));
          out.push_back(net::buffer(kCrlf));
        } else {
          out.push_back(net::buffer(data, got));
        }
      }
      if (done && to_client_chunked) out.push_back(net::buffer(kLastChunk));
      head_pending = false;
      call.bytes_sent = true;
      if (auto wec = co_await WriteClient(call.client, out); wec || call.ctl->client_gone) {
        call.ctl->client_gone = true;
        break;
      }
    }
    if (done || failure) break;
    // Read more: the buffer is free again (the extra bytes only exist once the body is done).
    conn->in.start = conn->in.end = 0;
    conn->stream.expires_after(cfg_.stream_idle_timeout);
    auto [ec, n] =
        co_await conn->stream.async_read_some(net::buffer(conn->in.buf.get(), conn->in.cap), kTok);
    conn->stream.expires_never();
    if (call.ctl->client_gone) break;
    if (ec == net::error::eof && rh.body == http1::BodyKind::kUntilClose) {
      upstream_eof = true;
      continue;
    }
    if (ec) {
      if (TimedOut(ec, conn->stream)) ec = net::error::timed_out;
      failure = IsTimeout(ec) ? "stream_idle_timeout" : "disconnected_mid_stream";
      fail_ec = ec;
      if (call.ctl->evicted && head_pending) continue;  // reported above as a plain 429
      break;
    }
    conn->in.end = n;
  }
  if (call.ctl->client_gone) co_return client_gone();

  call.ctl->upstream = nullptr;
  if (failure) {
    const bool evicted = call.ctl->evicted;
    call.error = evicted ? std::string_view("evicted") : std::string_view(failure);
    if (!evicted) UpstreamFailure(ep, failure, fail_ec.message());
    keep = false;  // a truncated body can only be signalled by closing, unless SSE below
    beast::error_code ig;
    conn->stream.socket().close(ig);
    if ((to_client_chunked || close_delimited) && sse) {
      // Tell the client in-band, as an SSE error event, then end the stream properly; the
      // client's message ends cleanly, so its connection stays usable (keep-alive). An event
      // the upstream left unfinished is ended first (a blank line), so the error event is an
      // event of its own and not glued onto the partial one.
      std::string event =
          evicted
              ? wire::ErrorEvent(call.ctl->evict_reject.message, call.ctl->evict_reject.type,
                                 call.ctl->evict_reject.code)
              : wire::ErrorEvent(
                    std::string("the model server at ") + ep.address() +
                        (IsTimeout(fail_ec) ? " stopped sending for longer than the stream idle "
                                              "timeout"
                                            : " closed the stream before it finished") +
                        " (" + fail_ec.message() + ")",
                    "upstream_error",
                    IsTimeout(fail_ec) ? "upstream_stream_timeout" : "upstream_disconnected");
      if (!sse_scan.AtEventBoundary())
        event.insert(0, sse_scan.TrailingNewlines() == 1 ? "\n" : "\n\n");
      char size_line[24];
      beast::error_code ec;
      if (close_delimited) {
        std::array<net::const_buffer, 1> out{net::buffer(event)};
        ec = co_await WriteClient(call.client, out);
        keep = false;
      } else {
        std::array<net::const_buffer, 4> out{ChunkSizeLine(size_line, event.size()),
                                             net::buffer(event), net::buffer(kCrlf),
                                             net::buffer(kLastChunk)};
        ec = co_await WriteClient(call.client, out);
        keep = !ec && call.keep_alive && !draining_.load();
      }
    }
    co_return AttemptResult{Outcome::kDone, {}};
  }
  if (rh.keep_alive && leftover == 0 && rh.body != http1::BodyKind::kUntilClose) {
    conn->in.start = conn->in.end = 0;
    PushIdle(call.w, ep, std::move(conn));
  }
  co_return AttemptResult{Outcome::kDone, {}};
}

}  // namespace tidegate::gateway
