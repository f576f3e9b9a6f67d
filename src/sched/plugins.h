// sched/plugins.h — the built-in filters and scorers, registered by type name.
//
// Contract: RegisterBuiltinPlugins() adds these types (names mirror GIE / llm-d):
//   filters  "stale-filter"            drop endpoints whose metrics are stale (if every candidate
//                                      is stale, keep them all: route blind rather than refuse;
//                                      parameter keepAllIfAllStale, default true)
//            "model-filter"            drop endpoints known not to serve the request's model or
//                                      adapter (endpoints that report no model names are kept)
//            "saturation-filter"       for sheddable requests (priority < 0) drop endpoints whose
//                                      saturation (pool/saturation.h) is ≥ 1 (stale counts as
//                                      saturated)
//            "slo-admission-filter"    for sheddable requests drop endpoints where, with it added,
//                                      the next real-time request is predicted to miss the
//                                      real-time SLO (sched/latency.h; parameters ttftSloMs,
//                                      tpotSloMs, default the tightest seen in the last 60 s)
//   scorers  "queue-scorer"            (max−q)/(max−min) over candidates, q = waiting (+ requests
//                                      routed since the scrape that have not finished; parameter
//                                      countRouted, default true); all 1 when every q is equal
//            "kv-cache-utilization-scorer"  1 − KV usage
//            "running-requests-scorer" (max−r)/(max−min) over running requests
//            "active-request-scorer"   (max−f)/(max−min) over this gateway's in-flight requests
//            "round-robin-scorer"      rotation: 1 for the candidate whose turn it is, then
//                                      decreasing in rotation order
//            "prefix-cache-scorer"     matched leading blocks / prompt blocks (parameters
//                                      blockSize 64 characters, maxPrefixBlocksToMatch 256,
//                                      lruCapacityPerServer 31250, or per server from the cache
//                                      size its engine reports); learns the route when a
//                                      request is sent, forgets it when the endpoint gave no
//                                      response
//            "lora-affinity-scorer"    adapter running 1.0, free adapter slot 0.8, adapter
//                                      waiting 0.6, else 0 (0 for every endpoint when the request
//                                      names no adapter)
//            "session-affinity-scorer" 1.0 for the endpoint the request's session id was last
//                                      routed to (parameter capacity: table slots, default 65536)
//            "latency-scorer"          least predicted TTFT + tpotWeight × TPOT; with SLO
//                                      headers the endpoints predicted to meet them first
//                                      (sched/latency.h; parameters tpotWeight 10, quantile 0.9,
//                                      forgetting 0.995, binPack false,
//                                      relative false)
//   markers  "max-score-picker", "single-profile-handler" (accepted for GIE configs).
// Thread-safety: see sched/framework.h.
#pragma once

#include "sched/framework.h"

namespace tidegate::sched {

void RegisterBuiltinPlugins(PluginRegistry* registry);

}  // namespace tidegate::sched
