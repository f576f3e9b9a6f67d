// pool/prober.h — active health checks and the served-model lists of every endpoint.
//
// Contract: Start() spawns one loop per endpoint on `ex` (a control loop). Every `interval`
// each loop GETs /health on a fresh connection (so a server that stopped accepting fails; any
// answer below 500 counts as alive, within max(1 s, min(2 × interval, 5 s))) and records the
// verdict (Endpoint::RecordProbe: down after two failures in a row, up after one success;
// changes are logged). When the server is alive it also reads GET /v1/models and records the
// model ids and entries, the adapters among them (entries whose `parent` names another model)
// and the first entry's `owned_by` (Endpoint::SetServedModels), for model-aware routing, the
// merged /v1/models and engine detection. With interval 0 no health verdicts are recorded and the
// model lists are read every 5 s. FirstRoundDone() is true while every active endpoint has been
// tried once by its current loop (an endpoint that just joined makes it false until then). Added(i)
// starts the loop of an endpoint that joined the pool later (or came back); a loop ends by itself
// once its endpoint is no longer active, and when a newer loop for its slot started. Stop() makes
// the loops end at their next wake-up. Thread-safety: construct, Start() and Stop() from one
// thread; Added() and FirstRoundDone() from any thread; the loops run on `ex`.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <memory>

#include "common/clock.h"
#include "http/client.h"
#include "pool/endpoint.h"

namespace tidegate::pool {

class Prober {
 public:
  Prober(boost::asio::any_io_executor ex, Pool& pool, Nanos interval, http::TlsOptions tls = {});
  ~Prober();
  void Start();
  void Added(size_t index);
  void Stop();
  bool FirstRoundDone() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace tidegate::pool
