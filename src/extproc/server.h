// extproc/server.h — the ext_proc endpoint picker: Envoy's ExternalProcessor gRPC service as
// the Gateway API Inference Extension's Endpoint Picker Protocol uses it, a second front door
// beside the HTTP proxy, deciding through the same Director, pool, scheduler and metrics.
//
// Contract: Start() listens on host:port (gRPC, plaintext) and serves
// envoy.service.ext_proc.v3.ExternalProcessor/Process and the gRPC health service (services
// "liveness", "readiness" — serving while the pool has an available endpoint and the gateway is
// not draining — and the ExternalProcessor's own name). Per stream (one HTTP request):
//  * request headers are held; the body (FULL_DUPLEX_STREAMED) is gathered to its end (or to the
//    request trailers), then inspected and the request admitted exactly as the HTTP front door
//    does (gateway/request.h builds the view; the subset hint narrows the pool);
//  * kRoute → the header mutation and the "envoy.lb" metadata with the ordered list, then the
//    body streamed back in pieces of at most 62,000 bytes; kWait → the stream holds until the
//    Director places the request (a stream that ends meanwhile is cancelled out of the queue);
//    kReject, or a malformed/too large body → an ImmediateResponse, and the stream stays open;
//  * the response phase: the served endpoint (metadata or header) moves the reservation when it
//    is not the first pick (Director::Fallback), the response body is streamed back unchanged
//    while its first bytes give the TTFT and its SSE events / usage the output tokens; at the end
//    of the response (or of the stream) the outcome goes to Director::Finish and the gateway's
//    request metrics, as for a proxied request.
// Thread-safety: Start() and Stop() from one thread; the streams run on gRPC's own threads
// and one Asio thread of the server's (the waiting requests' hand-over and the readiness
// update) — no event loop of the HTTP gateway is ever blocked.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "gateway/gateway.h"

namespace tidegate::extproc {

class Server {
 public:
  explicit Server(gateway::SharedState shared);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Listens on host:port (port 0 = a free one). Returns an error message, or empty.
  std::string Start(const std::string& host, uint16_t port);
  uint16_t port() const;
  // Stops accepting streams and ends those open (bounded by a short deadline).
  void Stop();

  struct Impl;  // (internal: shared with the stream reactors in server.cc)

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace tidegate::extproc
