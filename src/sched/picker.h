// sched/picker.h — the endpoint-selection seam.
//
// Contract: given what the gateway knows about a request and the pool, a Picker returns an
// ordered fallback list of endpoint indices (best first, at most kMaxChoices, only available
// endpoints, and only those in RequestInfo::subset when one is given). The caller tries them in
// order: the first, then — if it refuses the connection or fails before any byte reached the client
// — the next. An empty list comes with the reason (EmptyReason): no endpoint is available, none
// serves the model, a sheddable request found every endpoint saturated, or
// (RequestInfo::require_room) none has room right now. Every policy is a scheduling-framework
// profile (sched/framework.h) created by name through MakePicker(), the one registration path.
//
// Feedback, so that affinity and prediction learn from what really happened:
//  * Pick() commits its first choice: the endpoint's routed-since-scrape count is bumped and the
//    plugins record the route (prefix index, session table).
//  * OnFallback(failed, next) is called when the request did not get a response from `failed`
//    (connect refused, closed before responding) and goes to `next` instead (kNone: nowhere):
//    the routing to `failed` is taken back and `next` recorded as above.
//  * OnOutcome() is called once the request finished: which endpoint served it, its status,
//    TTFT, output tokens and duration. It bumps that endpoint's completed-since-scrape count.
// The caller keeps the in-flight counts (pool::Endpoint::AddInFlight).
// Thread-safety: Pick() and the hooks are called concurrently from every event loop;
// implementations keep only atomic, mutex-guarded or thread-local mutable state.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "pool/endpoint.h"
#include "pool/saturation.h"

namespace tidegate::sched {

class LatencyScorer;

// Extra room the caller knows of: an endpoint without room for lower priorities may still take
// a request of `priority` (e.g. engines that preempt lower-priority running requests).
class RoomOverride {
 public:
  virtual ~RoomOverride() = default;
  virtual bool HasRoomFor(uint32_t endpoint, int priority) const = 0;
};

// The endpoints a request may go to, when the caller narrows the pool (the proxy's subset hint
// in the ext_proc protocol). An endpoint outside it is never picked; none inside → kNoEndpoints.
class EndpointSubset {
 public:
  virtual ~EndpointSubset() = default;
  virtual bool Contains(const pool::Endpoint& ep) const = 0;
};

struct RequestInfo {
  uint64_t id = 0;         // unique per request when non-zero (caches per-request work)
  std::string_view path;   // e.g. "/v1/chat/completions"
  std::string_view model;  // the body's "model"
  bool stream = false;
  size_t body_bytes = 0;
  std::string_view prompt;      // prompt text (chat messages flattened), for prefix affinity
  std::string_view adapter;     // LoRA adapter requested, if any
  std::string_view session_id;  // x-session-id, for session affinity
  int priority = 0;             // objective priority; negative = sheddable
  // Only endpoints with room (pool::SaturationDetector::HasRoom, or room_override) may be
  // picked.
  bool require_room = false;
  const RoomOverride* room_override = nullptr;
  const EndpointSubset* subset = nullptr;  // null = the whole pool
  // x-slo-ttft-ms / x-slo-tpot-ms (and their llm-d aliases); -1 = none.
  double slo_ttft_ms = -1, slo_tpot_ms = -1;
};

enum class EmptyReason : uint8_t {
  kNone,            // not empty
  kNoEndpoints,     // no endpoint is available (down, backing off, or filtered as stale)
  kModelNotServed,  // every candidate is known not to serve the model
  kSaturated,       // a sheddable request found every candidate saturated
  kNoRoom,          // candidates exist, but none has room right now (require_room)
  kSloAtRisk,       // a sheddable request would push real-time work past its SLO everywhere
};
std::string_view EmptyReasonName(EmptyReason r);

struct PickResult {
  static constexpr size_t kMaxChoices = 4;
  std::array<uint32_t, kMaxChoices> order{};
  uint32_t count = 0;
  EmptyReason reason = EmptyReason::kNoEndpoints;  // meaningful when empty()
  void Push(uint32_t i) {
    if (count < kMaxChoices) order[count++] = i;
    reason = EmptyReason::kNone;
  }
  bool empty() const { return count == 0; }
};

// How a request ended, for OnOutcome().
struct Outcome {
  static constexpr uint32_t kNone = UINT32_MAX;
  uint32_t endpoint = kNone;   // the endpoint that answered (kNone: none did)
  int status = 0;              // HTTP status sent to the client (0: none, 499: client left)
  Nanos ttft{-1};              // request received → first body bytes relayed (-1: none)
  int64_t output_tokens = -1;  // SSE data events or usage.completion_tokens (-1: unknown)
  Nanos duration{0};           // request received → last byte
  Nanos queued{0};             // time spent waiting in the gateway's queues
};

class Picker {
 public:
  virtual ~Picker() = default;
  virtual std::string_view name() const = 0;
  virtual PickResult Pick(const RequestInfo& req, const pool::Pool& pool, Nanos now) = 0;
  virtual void OnFallback(const RequestInfo& req, const pool::Pool& pool, uint32_t failed,
                          uint32_t next, Nanos now) = 0;
  virtual void OnOutcome(const RequestInfo& req, const pool::Pool& pool, const Outcome& outcome,
                         Nanos now) = 0;
  // The endpoint in this slot left the pool and drained: forget what is known about it (its slot
  // may later hold another server). Safe from any thread, concurrently with Pick().
  virtual void OnEndpointGone(uint32_t endpoint) {}
  // The saturation detector the picker's filters and room checks use.
  virtual const pool::SaturationDetector& detector() const = 0;
  // The policy's latency predictor (its latency-scorer), or null: /v1/pool and /metrics show it.
  virtual const LatencyScorer* latency() const { return nullptr; }
};

// Built-in policy names (sched/policies.h): "tidegate-default", "gie-default",
// "least-request", "round-robin". `detector` is shared with the caller (admission, capacity);
// null gives a detector with default settings. Returns nullptr for an unknown name.
std::unique_ptr<Picker> MakePicker(std::string_view name,
                                   std::shared_ptr<const pool::SaturationDetector> detector = {});
std::vector<std::string> PickerNames();

// A fast thread-local random number (splitmix64), for tie-breaks.
uint64_t FastRandom();

}  // namespace tidegate::sched
