// sched/policies.h — the named scheduling policies, all built on the plugin framework.
//
// Contract: MakePicker() (sched/picker.h) builds a fresh Picker for one of these names:
//   "tidegate-default"  stale-filter, model-filter, saturation-filter, slo-admission-filter,
//                       prefix-cache-scorer 3, latency-scorer 4 {relative}, queue-scorer 1,
//                       kv-cache-utilization-scorer 1, lora-affinity-scorer 1,
//                       session-affinity-scorer 1 (rationale in policies.cc).
//   "tidegate-precise"  stale-filter, model-filter, saturation-filter, queue-scorer 2,
//                       kv-cache-utilization-scorer 1, precise-prefix-cache-scorer 5,
//                       lora-affinity-scorer 1, session-affinity-scorer 1 (the engines' KV
//                       events say which blocks each one holds).
//   "gie-default"       GIE's default profile: stale-filter, queue-scorer 2,
//                       kv-cache-utilization-scorer 2, prefix-cache-scorer 3.
//   "predicted-latency" stale-filter, model-filter, saturation-filter, prefix-cache-scorer 2,
//                       latency-scorer 4 (sched/latency.h: least predicted TTFT + TPOT, SLO
//                       headroom bin-packing), active-request-scorer 1, lora-affinity-scorer 1,
//                       session-affinity-scorer 1.
//   "least-request"     active-request-scorer 1: fewest requests in flight from this gateway,
//                       random tie-break.
//   "round-robin"       round-robin-scorer 1.
// Each call builds fresh plugin state (its own prefix index and session table).
// Thread-safety: the returned Picker is safe for concurrent use.
#pragma once

#include <string>
#include <vector>

#include "sched/picker.h"

namespace tidegate::sched {

std::vector<std::string> PolicyNames();

}  // namespace tidegate::sched
