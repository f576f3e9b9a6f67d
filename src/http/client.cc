// http/client.cc — Beast-based implementation of http/client.h (the only Beast user outside the
// gateway and simulator servers).
#include "http/client.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <charconv>

#include "http/tls.h"
#include "wire/wire.h"

namespace tidegate::http {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = net::ip::tcp;
using net::awaitable;

namespace {
constexpr auto kTok = net::as_tuple(net::use_awaitable);

std::string ErrorText(const beast::error_code& ec) {
  if (ec == beast::error::timeout) return "timed out";
  return ec.message();
}
}  // namespace

std::string Url::ToString() const {
  return (tls ? "https://" : "http://") + host + ":" + std::to_string(port) + base_path;
}

bool ParseHttpUrl(std::string_view url, Url* out, std::string* error) {
  std::string_view rest = url;
  const bool tls = rest.rfind("https://", 0) == 0;
  if (!tls && rest.rfind("http://", 0) != 0) {
    *error = "'" + std::string(url) +
             "' is not an http:// or https:// URL (expected http://HOST[:PORT])";
    return false;
  }
  rest.remove_prefix(tls ? 8 : 7);
  size_t slash = rest.find('/');
  std::string_view hostport = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? "" : rest.substr(slash);
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);
  Url u;
  u.tls = tls;
  if (tls) u.port = 443;
  size_t colon = hostport.rfind(':');
  if (colon != std::string_view::npos && hostport.find(']') == std::string_view::npos) {
    std::string_view p = hostport.substr(colon + 1);
    unsigned v = 0;
    auto [ptr, ec] = std::from_chars(p.data(), p.data() + p.size(), v);
    if (ec != std::errc() || ptr != p.data() + p.size() || v == 0 || v > 65535) {
      *error = "'" + std::string(url) + "' has an invalid port";
      return false;
    }
    u.port = static_cast<uint16_t>(v);
    hostport = hostport.substr(0, colon);
  }
  if (hostport.empty()) {
    *error = "'" + std::string(url) + "' has no host";
    return false;
  }
  u.host = std::string(hostport);
  u.base_path = std::string(path);
  *out = std::move(u);
  return true;
}

// ---------------------------------------------------------------------------------------------
// Client

struct Conn {
  explicit Conn(net::any_io_executor ex) : stream(ex) {}
  beast::tcp_stream stream;
  std::unique_ptr<net::ssl::stream<beast::tcp_stream&>> tls;  // https: over `stream`
  beast::flat_buffer buf;
  SteadyTime idle_since{};
};

// Runs one Beast operation on the connection's stream, TLS or plain (both complete alike).
template <typename Op>
auto OnStream(Conn& c, Op&& op) {
  if (c.tls) return op(*c.tls);
  return op(c.stream);
}

std::shared_ptr<net::ssl::context> MakeClientTlsContext(const TlsOptions& o, std::string* error) {
  auto ctx = std::make_shared<net::ssl::context>(net::ssl::context::tls_client);
  beast::error_code ec;
  SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
  if (o.ca_file.empty()) {
    ctx->set_default_verify_paths(ec);
  } else {
    ctx->load_verify_file(o.ca_file, ec);
  }
  if (ec) {
    *error =
        "cannot load the CA " + (o.ca_file.empty() ? "store" : o.ca_file) + ": " + ec.message();
    return nullptr;
  }
  if (!o.cert_file.empty()) {
    ctx->use_certificate_chain_file(o.cert_file, ec);
    if (!ec) ctx->use_private_key_file(o.key_file, net::ssl::context::pem, ec);
    if (ec) {
      *error = "cannot use the client certificate " + o.cert_file + ": " + ec.message();
      return nullptr;
    }
  }
  ctx->set_verify_mode(net::ssl::verify_peer);
  return ctx;
}

// A pooled connection idle for longer than this is dropped instead of reused: servers close
// idle keep-alive connections (tidegate after 75 s, nginx after 75 s, many after 60 s), and a
// request written to a connection the server has just closed fails.
constexpr auto kMaxIdleAge = std::chrono::seconds(30);

struct Client::Impl {
  Impl(net::any_io_executor e, Url u, size_t m, TlsOptions t)
      : ex(e), url(std::move(u)), max_idle(m), resolver(e) {
    host_header = url.host + ":" + std::to_string(url.port);
    if (url.tls) tls_ctx = MakeClientTlsContext(t, &tls_error);
  }
  std::shared_ptr<net::ssl::context> tls_ctx;
  std::string tls_error;
  net::any_io_executor ex;
  Url url;
  size_t max_idle;
  tcp::resolver resolver;
  std::vector<tcp::endpoint> endpoints;  // resolved once
  std::vector<std::unique_ptr<Conn>> idle;
  std::string host_header;

  awaitable<std::unique_ptr<Conn>> Connect(SteadyTime deadline, ClientResponse* resp) {
    if (endpoints.empty()) {
      auto [ec, results] = co_await resolver.async_resolve(url.host, std::to_string(url.port),
                                                           tcp::resolver::numeric_service, kTok);
      if (ec) {
        resp->error = "cannot resolve " + url.host + ": " + ec.message();
        resp->connect_failed = true;
        co_return nullptr;
      }
      // Several sends may resolve at once; the first answer is kept. Each connect works on its
      // own copy, so no coroutine iterates the list while another one fills it.
      if (endpoints.empty())
        for (const auto& r : results) endpoints.push_back(r.endpoint());
    }
    auto c = std::make_unique<Conn>(ex);
    c->stream.expires_at(deadline);
    std::vector<tcp::endpoint> targets = endpoints;
    auto [ec, ep] = co_await c->stream.async_connect(targets, kTok);
    if (ec) {
      resp->error = "cannot connect to " + host_header + ": " + ErrorText(ec);
      resp->timed_out = ec == beast::error::timeout;
      resp->connect_failed = true;
      co_return nullptr;
    }
    c->stream.socket().set_option(tcp::no_delay(true));
    if (url.tls) {
      if (!tls_ctx) {
        resp->error = "TLS to " + host_header + ": " + tls_error;
        resp->connect_failed = true;
        co_return nullptr;
      }
      c->tls = std::make_unique<net::ssl::stream<beast::tcp_stream&>>(c->stream, *tls_ctx);
      PrepareClientTls(*c->tls, url.host);
      auto [hec] = co_await c->tls->async_handshake(net::ssl::stream_base::client, kTok);
      if (hec) {
        resp->error = "TLS handshake with " + host_header + ": " + ErrorText(hec);
        resp->timed_out = hec == beast::error::timeout;
        resp->connect_failed = true;
        co_return nullptr;
      }
    }
    co_return c;
  }
};

Client::Client(net::any_io_executor ex, Url url, size_t max_idle, TlsOptions tls)
    : impl_(std::make_unique<Impl>(ex, std::move(url), max_idle, std::move(tls))) {}
Client::~Client() = default;
const Url& Client::url() const { return impl_->url; }

namespace {
// Scans newly arrived SSE bytes for complete `data:` lines, recording event timings.
void ScanSse(const std::string& body, size_t* pos, ClientResponse* r) {
  for (;;) {
    size_t nl = body.find('\n', *pos);
    if (nl == std::string::npos) return;
    std::string_view line(body.data() + *pos, nl - *pos);
    *pos = nl + 1;
    if (line.rfind("data:", 0) != 0) continue;
    line.remove_prefix(5);
    while (!line.empty() && line.front() == ' ') line.remove_prefix(1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line == "[DONE]") continue;
    auto now = std::chrono::steady_clock::now();
    if (r->sse_events == 0) r->first_event = now;
    r->last_event = now;
    ++r->sse_events;
  }
}
}  // namespace

awaitable<ClientResponse> Client::Send(ClientRequest req) {
  Impl& im = *impl_;
  bhttp::request<bhttp::string_body> msg;
  msg.method(bhttp::string_to_verb(req.method));
  std::string target = im.url.base_path + std::string(req.target);
  msg.target(target);
  msg.version(11);
  msg.set(bhttp::field::host, im.host_header);
  msg.set(bhttp::field::user_agent, "tidegate");
  if (!req.body.empty()) msg.set(bhttp::field::content_type, "application/json");
  if (req.headers)
    for (const auto& [k, v] : *req.headers) msg.set(k, v);
  msg.body() = std::string(req.body);
  msg.prepare_payload();

  for (int attempt = 0;; ++attempt) {
    ClientResponse resp;
    std::unique_ptr<Conn> c;
    bool reused = false;
    // The retry after a failed reuse always takes a fresh connection: the other pooled ones
    // may have been closed by the server at the same moment.
    while (attempt == 0 && !req.fresh_connection && !im.idle.empty()) {
      c = std::move(im.idle.back());
      im.idle.pop_back();
      if (std::chrono::steady_clock::now() - c->idle_since <= kMaxIdleAge) {
        reused = true;
        break;
      }
      c.reset();  // too old: the server may close it any moment
    }
    if (!c) {
      c = co_await im.Connect(req.deadline, &resp);
      if (!c) co_return resp;
    }
    c->stream.expires_at(req.deadline);
    resp.sent = std::chrono::steady_clock::now();
    auto [wec, wn] =
        co_await OnStream(*c, [&](auto& s) { return bhttp::async_write(s, msg, kTok); });
    if (wec) {
      if (reused && attempt == 0 && wec != beast::error::timeout) continue;  // stale keep-alive
      resp.error = "writing the request to " + im.host_header + ": " + ErrorText(wec);
      resp.timed_out = wec == beast::error::timeout;
      co_return resp;
    }
    bhttp::response_parser<bhttp::string_body> parser;
    if (req.max_body_bytes > 0) {
      parser.body_limit(req.max_body_bytes);
    } else {
      parser.body_limit(boost::none);
    }
    auto [hec, hn] = co_await OnStream(
        *c, [&](auto& s) { return bhttp::async_read_header(s, c->buf, parser, kTok); });
    if (hec) {
      if (reused && attempt == 0 && hec != beast::error::timeout &&
          (hec == bhttp::error::end_of_stream || hec == net::error::connection_reset ||
           hec == net::error::eof))
        continue;
      resp.error = "reading the response from " + im.host_header + ": " + ErrorText(hec);
      resp.timed_out = hec == beast::error::timeout;
      co_return resp;
    }
    resp.first_byte = std::chrono::steady_clock::now();
    const auto& h = parser.get();
    resp.content_type = std::string(h[bhttp::field::content_type]);
    bool sse = resp.content_type.rfind("text/event-stream", 0) == 0;
    size_t scan = 0;
    while (!parser.is_done()) {
      auto [ec, n] = co_await OnStream(
          *c, [&](auto& s) { return bhttp::async_read_some(s, c->buf, parser, kTok); });
      if (ec) {
        resp.error =
            ec == bhttp::error::body_limit
                ? "the response body from " + im.host_header + " exceeds " +
                      std::to_string(req.max_body_bytes) + " bytes"
                : "reading the response body from " + im.host_header + ": " + ErrorText(ec);
        resp.timed_out = ec == beast::error::timeout;
        resp.body = parser.get().body();
        if (sse) ScanSse(resp.body, &scan, &resp);
        co_return resp;
      }
      if (sse) ScanSse(parser.get().body(), &scan, &resp);
    }
    auto& res = parser.get();
    resp.status = static_cast<int>(res.result_int());
    if (auto ra = res[bhttp::field::retry_after]; !ra.empty()) {
      int64_t secs = 0;
      auto [p, e] = std::from_chars(ra.data(), ra.data() + ra.size(), secs);
      if (e == std::errc() && secs >= 0) resp.retry_after_ms = secs * 1000;
    }
    resp.dropped_reason = std::string(res[wire::kDroppedReason]);
    if (resp.dropped_reason.empty())
      resp.dropped_reason = std::string(res[wire::kDroppedReasonAlias]);
    bool keep = res.keep_alive();
    resp.body = std::move(res.body());
    if (sse) ScanSse(resp.body, &scan, &resp);
    if (keep && !req.fresh_connection && im.idle.size() < im.max_idle) {
      c->stream.expires_never();
      c->idle_since = std::chrono::steady_clock::now();
      im.idle.push_back(std::move(c));
    }
    co_return resp;
  }
}

// ---------------------------------------------------------------------------------------------
// AdminServer

struct AdminServer::Impl : std::enable_shared_from_this<AdminServer::Impl> {
  Impl(net::any_io_executor e, AdminHandler h) : ex(e), acceptor(e), handler(std::move(h)) {}
  net::any_io_executor ex;
  tcp::acceptor acceptor;
  AdminHandler handler;
  uint16_t port = 0;

  awaitable<void> Accept() {
    auto self = shared_from_this();
    for (;;) {
      auto [ec, sock] = co_await acceptor.async_accept(kTok);
      if (ec) {
        if (!acceptor.is_open()) co_return;
        continue;
      }
      sock.set_option(tcp::no_delay(true));
      net::co_spawn(ex, Session(std::move(sock)), net::detached);
    }
  }

  awaitable<void> Session(tcp::socket sock) {
    auto self = shared_from_this();
    beast::tcp_stream stream(std::move(sock));
    beast::flat_buffer buf;
    for (;;) {
      stream.expires_after(std::chrono::seconds(60));
      bhttp::request<bhttp::string_body> req;
      auto [ec, n] = co_await bhttp::async_read(stream, buf, req, kTok);
      if (ec) break;
      bhttp::response<bhttp::string_body> res;
      res.version(11);
      res.keep_alive(req.keep_alive());
      if (req.method() != bhttp::verb::get && req.method() != bhttp::verb::head) {
        res.result(bhttp::status::method_not_allowed);
        res.set(bhttp::field::allow, "GET");
        res.set(bhttp::field::content_type, "text/plain; charset=utf-8");
        res.body() = "only GET is served here\n";
      } else {
        std::string_view target = req.target();
        AdminResponse r = handler(target.substr(0, target.find('?')));
        res.result(static_cast<unsigned>(r.status));
        res.set(bhttp::field::content_type, r.content_type);
        res.body() = std::move(r.body);
      }
      res.prepare_payload();
      auto [wec, wn] = co_await bhttp::async_write(stream, res, kTok);
      if (wec || !res.keep_alive()) break;
    }
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  }
};

AdminServer::AdminServer(net::any_io_executor ex, AdminHandler handler)
    : impl_(std::make_shared<Impl>(ex, std::move(handler))) {}
AdminServer::~AdminServer() { Stop(); }

std::string AdminServer::Start(const std::string& host, uint16_t port) {
  beast::error_code ec;
  auto addr = net::ip::make_address(host, ec);
  if (ec) return "invalid listen address '" + host + "'";
  tcp::endpoint ep(addr, port);
  auto& a = impl_->acceptor;
  a.open(ep.protocol(), ec);
  if (!ec) a.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) a.bind(ep, ec);
  if (!ec) a.listen(net::socket_base::max_listen_connections, ec);
  if (ec) return "cannot listen on " + host + ":" + std::to_string(port) + ": " + ec.message();
  impl_->port = a.local_endpoint().port();
  net::co_spawn(impl_->ex, impl_->Accept(), net::detached);
  return "";
}

uint16_t AdminServer::port() const { return impl_->port; }

void AdminServer::Stop() {
  beast::error_code ec;
  if (impl_->acceptor.is_open()) impl_->acceptor.close(ec);
}

}  // namespace tidegate::http
