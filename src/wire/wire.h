// wire/wire.h — the names and small messages tidegate's processes exchange over HTTP: the request
// and response headers of the gateway (ours and llm-d's aliases), the refusal reasons, and the
// /v1/capacity answer the async processor paces itself by.
//
// Contract: one place for every header name and drop reason, so the gateway, the processor, the
// benchmark and the tests cannot drift apart. RenderCapacity() and ParseCapacity() are inverse:
// ParseCapacity(RenderCapacity(c)) gives c back (doubles to 4 decimals). ParseCapacity accepts
// any JSON object with at least `saturation` and `sheddable_capacity` (older gateways), leaving
// the other fields at their defaults, and fails with a message for anything else.
// Thread-safety: pure functions and constants.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace tidegate::wire {

// Request headers the gateway reads. Each has llm-d's name as an alias (ours wins when both
// are present).
inline constexpr std::string_view kObjective = "x-gateway-inference-objective";
inline constexpr std::string_view kObjectiveAlias = "x-llm-d-inference-objective";
inline constexpr std::string_view kFairnessId = "x-gateway-inference-fairness-id";
inline constexpr std::string_view kFairnessIdAlias = "x-llm-d-inference-fairness-id";
inline constexpr std::string_view kSloTtftMs = "x-slo-ttft-ms";
inline constexpr std::string_view kSloTtftMsAlias = "x-llm-d-slo-ttft-ms";
inline constexpr std::string_view kSloTpotMs = "x-slo-tpot-ms";
inline constexpr std::string_view kSloTpotMsAlias = "x-llm-d-slo-tpot-ms";
// How long the request may wait in the gateway's queues, in milliseconds (llm-d's name only).
inline constexpr std::string_view kTtlMs = "x-llm-d-inference-ttl";
inline constexpr std::string_view kRequestId = "x-request-id";
inline constexpr std::string_view kSessionId = "x-session-id";
inline constexpr std::string_view kDefaultFlow = "default-flow";

// Response headers the gateway sets.
inline constexpr std::string_view kDestinationEndpoint = "x-gateway-destination-endpoint";
inline constexpr std::string_view kDroppedReason = "x-gateway-request-dropped-reason";
inline constexpr std::string_view kDroppedReasonAlias = "x-llm-d-request-dropped-reason";

// Values of the dropped-reason headers.
enum class DropReason { kNone, kSaturated, kTtlExpired, kEvicted, kNoEndpoints };
std::string_view DropReasonName(DropReason r);  // "saturated", "ttl-expired", ...; "" for kNone

// GET /v1/capacity.
struct Capacity {
  double saturation = 1.0;         // the pool's saturation (mean over endpoints; ≥ 1 = saturated)
  int64_t sheddable_capacity = 0;  // how many more sheddable requests fit now
  int64_t retry_after_ms = 1000;   // when to ask again after a refusal
  int64_t endpoints = 0;           // endpoints in the pool
  int64_t fresh_endpoints = 0;     // endpoints with fresh metrics
  int64_t queued = 0;              // requests waiting in the gateway's flow-control queues
};
std::string RenderCapacity(const Capacity& c);
bool ParseCapacity(std::string_view json, Capacity* out, std::string* error);

}  // namespace tidegate::wire
