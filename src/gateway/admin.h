// gateway/admin.h — the gateway's operational answers (/v1/pool, /v1/capacity, /readyz and the
// merged /v1/models), rendered from the pool and the Director without any I/O.
//
// Contract:
//  * PoolJson(): every endpoint's state (address, engine, available, stale, waiting, running,
//    KV use, in flight, saturation as the detector sees it, models and adapters, last error,
//    scrape age) plus the pool's saturation and the flow-control queues (per band: priority,
//    requests, bytes, flows).
//  * CapacityJson(): the Director's capacity signal (wire::RenderCapacity).
//  * Readiness(): ready when at least one endpoint is available and the gateway is not
//    draining; the body says why not.
//  * MergedModels(): the OpenAI model list merged over the available endpoints' /v1/models
//    (first occurrence of an id wins); *answered counts the endpoints that had a list.
// Thread-safety: pure functions of thread-safe inputs.
#pragma once

#include <string>
#include <string_view>

#include "common/clock.h"
#include "control/director.h"
#include "pool/endpoint.h"

namespace tidegate::gateway {

class KvEventsFeed;
// `kv` (may be null) adds each endpoint's KV event feed ("kv_events").
std::string PoolJson(const pool::Pool& pool, const control::Director& director,
                     std::string_view default_engine, Nanos now, const KvEventsFeed* kv = nullptr);
// GET /v1/pool/kv-blocks?endpoint=HOST:PORT: the engine block hashes the precise index holds for
// that endpoint ({"endpoint", "live", "block_size", "block_hashes": [16 hex digits, sorted]}).
// False (and *body an error) when no active endpoint has that address.
bool KvBlocksJson(const pool::Pool& pool, std::string_view endpoint, std::string* body);
// The endpoint's engine as configured, or as recognised ("auto" until it is).
std::string EngineName(const pool::Endpoint& ep, std::string_view default_engine);
std::string CapacityJson(const control::Director& director);

struct Readiness {
  bool ready = false;
  std::string body;
};
Readiness CheckReadiness(const pool::Pool& pool, bool draining, Nanos now);

std::string MergedModels(const pool::Pool& pool, Nanos now, size_t* answered);

}  // namespace tidegate::gateway
