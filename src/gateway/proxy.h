// gateway/proxy.h — carrying out a route decision: the upstream attempts and the streaming
// relay (Beast; internal to the gateway).
//
// Contract: Proxy::Serve() sends the client's request to the pick's first endpoint over a
// pooled keep-alive connection (reconnecting once if a pooled connection turns out closed). A
// refused connection, or an upstream that fails before sending a response header, is retried
// once on the pick's next endpoint (the Director is told, so the reservation and the affinity
// move with it); nothing is retried once bytes reached the client. The response is relayed as
// it arrives: the next upstream read starts only after the previous client write completed
// (backpressure), and everything already buffered goes out in one write. A client that leaves
// closes the upstream connection at once. An upstream that breaks a chunked SSE stream gets the
// client a final error event and a clean end of stream; other broken bodies close the client
// connection. A running sheddable request evicted by the Director gets a 429 `evicted` when
// nothing was sent yet, else an `evicted` error event. Serve() fills the call's outcome figures
// (status, endpoint, TTFT, output tokens) and returns whether the client connection may be kept.
// The hang-up watch (ArmWatch/DisarmWatch) is a readiness wait on the client socket that peeks
// on wake-up: end-of-stream or an error means the client left. While proxying it is armed only
// once the request has been upstream for kWatchDelay (by the loop's 50 ms sweep), so a hang-up is
// noticed within about 70 ms and a quick request pays no readiness registration.
// Thread-safety: a Proxy is shared by every event loop; a Call belongs to one loop.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "control/director.h"
#include "gateway/config.h"
#include "gateway/gateway_metrics.h"
#include "gateway/http1.h"
#include "gateway/net.h"
#include "gateway/routes.h"
#include "pool/endpoint.h"

namespace tidegate::gateway {

// Optional headers on a gateway-generated response.
struct Extra {
  std::string_view dropped_reason = {};
  int retry_after = -1;
  const pool::Endpoint* endpoint = nullptr;
  const char* allow = nullptr;
  const char* www_authenticate = nullptr;
  bool head_only = false;  // answering a HEAD request: headers (with Content-Length), no body
};

// Everything one request carries through its handling.
struct Call {
  Worker& w;
  TimedSocket& client;
  std::shared_ptr<SessionCtl>& ctl;
  std::string& head;        // the session's response-head buffer
  std::string& request_id;  // the session's buffer (reused: no allocation once warm)
  Route route;
  bool stream = false;
  bool keep_alive = true;
  Nanos start;
  bool head_only = false;
  // An HTTP/1.0 client: a body of unknown length is sent close-delimited (no chunked coding,
  // which HTTP/1.0 does not have), and the connection then closes.
  bool http10 = false;
  // The client authenticated to the gateway: its Authorization header is not forwarded.
  bool strip_authorization = false;
  std::string_view tenant = {};  // the API key's tenant ("" without keys)
  // How long each attempt waits for the response head (ttfb_timeout, or the SLO bound).
  std::chrono::milliseconds ttfb_timeout{120'000};
  pool::Endpoint* endpoint = nullptr;
  int status = 0;
  control::Ticket* ticket = nullptr;  // valid only while the API request is handled
  bool sheddable = false;
  // Why the request ended in an error (an error code, or the relay's failure), for the log.
  std::string_view error = {};
  // Outcome figures, filled by the relay.
  Nanos ttft{-1};
  int64_t output_tokens = -1;
  bool bytes_sent = false;  // response bytes reached the client
};

// Writes a complete gateway-generated response. Returns whether the connection may be kept.
Task<bool> WriteResponse(TimedSocket& s, http::status status, bool keep_alive,
                         std::chrono::milliseconds write_timeout, const std::string& request_id,
                         std::string_view content_type, std::string body, const Extra& extra = {});

// Arms the watch now (a request waiting at the gateway), or — ArmWatchDeferred — once the
// request has been upstream for kWatchDelay (ArmDueWatch, from the loop's sweep).
inline constexpr std::chrono::milliseconds kWatchDelay{20};
void ArmWatch(TimedSocket& client, const std::shared_ptr<SessionCtl>& ctl);
inline void ArmWatch(Call& call) { ArmWatch(call.client, call.ctl); }
void ArmWatchDeferred(Call& call);
void ArmDueWatch(SessionState& s, int64_t now_ns);
void DisarmWatch(Call& call);

class Proxy {
 public:
  Proxy(const GatewayConfig& cfg, Clock& clock, pool::Pool& pool, control::Director& director,
        GatewayMetrics& metrics, const std::atomic<bool>& draining);
  // Builds the TLS client context for https:// endpoints (from cfg.upstream_tls); "" or an
  // error naming the file.
  std::string InitUpstreamTls();

  Task<bool> Serve(Call& call, const http1::RequestHead& req, const std::string& body,
                   const sched::PickResult& pick);
  // An OpenAI-style error response for `call` (sets call.status).
  Task<bool> WriteError(Call& call, http::status status, std::string_view message,
                        std::string_view type, std::string_view code, Extra extra = {});
  Task<bool> WriteReject(Call& call, const control::Reject& r);

 private:
  enum class Outcome {
    kDone,
    kConnectFailed,
    kFailedBeforeResponse,
    kTimeout,
    kClientGone,
    kEvicted
  };
  struct AttemptResult {
    Outcome outcome;
    std::string detail;
  };

  // This loop's state for the endpoint (reset when its slot holds a new endpoint object).
  static Worker::Upstream& UpstreamOf(Worker& w, const pool::Endpoint& ep);
  std::unique_ptr<UpConn> PopIdle(Worker& w, const pool::Endpoint& ep);
  void PushIdle(Worker& w, const pool::Endpoint& ep, std::unique_ptr<UpConn> c);
  void UpstreamError(const pool::Endpoint& ep, const char* reason, const std::string& detail);
  // An UpstreamError that counts toward the endpoint's outlier ejection (and logs one).
  void UpstreamFailure(pool::Endpoint& ep, const char* reason, const std::string& detail);
  Task<std::pair<std::unique_ptr<UpConn>, AttemptResult>> Connect(Worker& w, pool::Endpoint& ep);
  void BuildUpstreamHead(const Call& call, const http1::RequestHead& req, size_t body_bytes,
                         const pool::Endpoint& ep, std::string& h);
  Task<AttemptResult> Attempt(Call& call, const http1::RequestHead& req, const std::string& body,
                              pool::Endpoint& ep, bool& keep);
  Task<AttemptResult> Relay(Call& call, pool::Endpoint& ep, std::unique_ptr<UpConn> conn,
                            const http1::ResponseHead& rh, bool& keep);
  template <typename Buffers>
  Task<beast::error_code> WriteClient(TimedSocket& s, const Buffers& buffers);

  const GatewayConfig& cfg_;
  Clock& clock_;
  pool::Pool& pool_;
  control::Director& director_;
  GatewayMetrics& m_;
  const std::atomic<bool>& draining_;
  std::shared_ptr<net::ssl::context> upstream_tls_;  // null unless an endpoint is https://
};

}  // namespace tidegate::gateway
