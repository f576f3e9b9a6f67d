// http/client.h — a small HTTP/1.1 client and admin server for tidegate's own processes (the
// async processor, the benchmark driver): keep-alive, TCP_NODELAY, deadlines, SSE timing.
//
// Contract:
//  * ParseHttpUrl() accepts "http://HOST[:PORT][/base]" and "https://..." (port 443 by default)
//    and fails with a message naming the URL. An https URL is spoken over TLS 1.2+ with the
//    server's certificate verified against TlsOptions::ca_file (the system store when empty) and
//    its name checked against HOST (an IP or a DNS name); SNI is sent for DNS names. A
//    certificate that does not verify fails the connect.
//  * Client::Send() performs one exchange on a pooled keep-alive connection (a new one when none
//    is idle), never past ClientRequest::deadline (connect, write and the whole read). A stale
//    pooled connection that fails before any response byte is retried once on a fresh one. The
//    response body is read in full (no size limit); when the body is an SSE stream
//    (text/event-stream) the arrival of the first and last `data:` events (excluding [DONE]) and
//    their count are recorded, so callers can measure time to first token and time per output
//    token without a second parse. status == 0 means no complete response: `error` says why and
//    `timed_out` tells a deadline from a transport failure. Retry-After (seconds) is returned
//    in milliseconds. A connection is reused only after a complete, keep-alive response.
//    With max_body_bytes, a longer response body fails the exchange ("body exceeds N bytes");
//    with fresh_connection, the exchange uses a new connection and closes it (health probes:
//    a server that stopped accepting must fail).
//  * AdminServer serves GET requests from a handler (path → status, content type, body), e.g.
//    /metrics and /healthz. It closes connections after 60 s idle.
// Thread-safety: a Client and an AdminServer belong to the executor they were created with and
// must be used from it only (one thread, or a strand). Beast is kept inside client.cc.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tidegate::http {

struct Url {
  std::string host;
  uint16_t port = 80;
  std::string base_path;  // "" or "/prefix" (no trailing slash)
  bool tls = false;       // https
  std::string ToString() const;
};

// For https: whom to trust, and an optional client certificate (PEM files).
struct TlsOptions {
  std::string ca_file;              // "" = the system's trust store
  std::string cert_file, key_file;  // client certificate, both or neither
};
bool ParseHttpUrl(std::string_view url, Url* out, std::string* error);

using Headers = std::vector<std::pair<std::string, std::string>>;
using SteadyTime = std::chrono::steady_clock::time_point;

struct ClientRequest {
  std::string_view method = "POST";
  std::string_view target;  // path and query, appended to the URL's base path
  std::string_view body;
  const Headers* headers = nullptr;  // extra headers (content-type json is added for bodies)
  SteadyTime deadline;               // the whole exchange must finish by then
  size_t max_body_bytes = 0;         // a larger response body is an error (0 = no limit)
  bool fresh_connection = false;     // neither take nor keep a pooled connection
};

struct ClientResponse {
  int status = 0;  // 0: no complete response (see error / timed_out)
  std::string body;
  std::string error;
  bool timed_out = false;
  bool connect_failed = false;  // the TCP connection could not be made (nothing was sent)
  int64_t retry_after_ms = -1;  // from Retry-After (seconds), -1 when absent
  std::string dropped_reason;   // x-gateway-request-dropped-reason (or llm-d's alias)
  std::string content_type;
  // Timings (steady clock): when the request was written, the first response byte, and the
  // first / last SSE data event; sse_events counts data events other than [DONE].
  SteadyTime sent{}, first_byte{}, first_event{}, last_event{};
  int sse_events = 0;
};

class Client {
 public:
  Client(boost::asio::any_io_executor ex, Url url, size_t max_idle = 64, TlsOptions tls = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  boost::asio::awaitable<ClientResponse> Send(ClientRequest req);
  const Url& url() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct AdminResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};
using AdminHandler = std::function<AdminResponse(std::string_view path)>;

class AdminServer {
 public:
  AdminServer(boost::asio::any_io_executor ex, AdminHandler handler);
  ~AdminServer();
  // Binds host:port (port 0 = any free port) and starts accepting; returns an error or "".
  std::string Start(const std::string& host, uint16_t port);
  uint16_t port() const;
  void Stop();

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace tidegate::http
