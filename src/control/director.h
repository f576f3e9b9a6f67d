// control/director.h — request control: what happens to each API request, decided apart from
// any socket.
//
// Contract: the gateway's HTTP shell parses a request into a RequestView and asks Admit(),
// which returns a typed Decision:
//   kRoute   an ordered endpoint list (sched::PickResult); the first endpoint already counts
//            the request in flight (a reservation), so concurrent decisions see it;
//   kWait    the request waits at the gateway (flow control); the ticket's waiter is called
//            exactly once later with a kRoute or kReject decision, unless Cancel() took the
//            request out first;
//   kReject  a RejectKind with its HTTP status, Retry-After, message and dropped reason.
// The shell only carries decisions out, and reports back: Fallback() when an endpoint gave no
// response and the next one is tried, Finish() when the request ended (which frees its
// reservation, feeds the outcome to the scheduler and lets waiting requests in), Cancel() when
// a waiting client hung up, Tick() periodically (TTLs, eviction, the capacity signal), and
// Poke() when fresh metrics arrived.
//
// Rules:
//  * Objective: the objective header (or the default objective) names a configured objective
//    and its priority; unknown → kUnknownObjective (400). Priority < 0 is sheddable.
//  * Header values (TTL, SLOs, fairness id) that do not parse → kInvalid (400), as does a body
//    the shell could not parse (RequestView::body_error).
//  * Sheddable requests are never queued: a saturated pool (the saturation detector's mean ≥ 1)
//    or no endpoint with room → kSaturated (429, with the saturation the decision saw and the
//    capacity signal's Retry-After).
//  * Requests with priority ≥ 0, with flow control on: routed at once when no request of the
//    same or a higher priority is waiting and an endpoint has room; otherwise queued (bounds,
//    eviction and TTL as in control/flow_control.h). Dispatch binds the endpoint only then
//    (late binding): whenever a request finishes, metrics arrive or Tick() runs, the waiting
//    requests are placed, highest band first, while endpoints have room. With flow control
//    off, they are routed at once to the best endpoint whatever its load (never refused for
//    capacity).
//  * An empty pick that is not for lack of room is a kModelNotFound (404, the model is served
//    nowhere) or kNoEndpoints (503) reject; for a waiting request too, at dispatch.
//  * TTL: min(x-llm-d-inference-ttl, the band's TTL); on expiry kTtlExpired (503). A band that
//    is full refuses the newcomer (429 saturated); a full gateway evicts the newest request of
//    the lowest lower band (429 evicted).
//  * With preemptive engines (FlowControlConfig::preemptive_engines) the engine serves higher
//    priorities first, so for a request of priority p only the gateway's requests of priority
//    >= p in flight there stand in its way: an endpoint without room still takes it while those
//    are fewer than the engine's batch limit (learnt from its metrics) plus the queue threshold,
//    or, before the batch limit is known, while the lower-priority ones outnumber them.
//  * Optional eviction of running sheddable work (evict_sheddable_after > 0): when a request
//    of priority ≥ 0 has waited longer than that, the most recently dispatched running sheddable
//    request is evicted (its ticket's Evicted() is called with a kEvicted reject), at most one
//    per Tick().
// Time is a parameter everywhere; the Director reads no clock and does no I/O, so every rule is
// unit-tested on a manual clock.
// Thread-safety: all methods are safe from any thread. Waiter callbacks are invoked with the
// Director's lock held: they must only hand the decision over (post it to an event loop) and
// must not call back into the Director.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "control/flow_control.h"
#include "metrics/registry.h"
#include "pool/capacity.h"
#include "pool/endpoint.h"
#include "pool/saturation.h"
#include "sched/picker.h"
#include "wire/wire.h"

namespace tidegate::control {

struct FlowControlConfig {
  bool enabled = true;
  FlowControlLimits limits;
  Nanos ttl = std::chrono::seconds(30);  // default and largest wait for every band
  std::map<int, Nanos> band_ttl;         // per-priority override
  Fairness fairness = Fairness::kRoundRobin;
  Ordering ordering = Ordering::kFcfs;
  Nanos evict_sheddable_after{0};  // 0 = never evict running sheddable requests
  // The engines schedule by priority and preempt lower-priority running requests (vLLM's
  // priority scheduling, with the gateway forwarding the priority): an endpoint without room
  // still takes a request of higher priority than one the gateway has running there.
  bool preemptive_engines = false;
};

struct DirectorConfig {
  std::map<std::string, int> objectives = {{"standard", 0}, {"sheddable", -1}};
  std::string default_objective;  // "" = priority 0
  FlowControlConfig flow;
  Nanos scrape_interval = std::chrono::milliseconds(50);  // for the capacity signal
};

// What the shell parsed of one request. Every view must stay valid until the request finished
// (the Director keeps the ticket's RequestInfo while the request waits).
struct RequestView {
  std::string_view path;
  std::string_view model;
  bool stream = false;
  size_t body_bytes = 0;
  std::string_view prompt;
  std::string_view session_id;
  std::string_view objective;                         // header value ("" = default objective)
  std::string_view fairness_id;                       // header value ("" = default-flow)
  std::string_view slo_ttft_ms, slo_tpot_ms, ttl_ms;  // header values as sent ("" = none)
  std::string_view body_error, body_error_code;       // the body did not parse
  const sched::EndpointSubset* subset = nullptr;      // null = any endpoint of the pool
  uint64_t id = 0;                                    // unique request number
};

enum class RejectKind {  // (the order is that of the style table in director.cc)
  kInvalid,
  kUnknownObjective,
  kModelNotFound,
  kSaturated,
  kTtlExpired,
  kEvicted,
  kNoEndpoints
};
std::string_view RejectKindName(RejectKind k);  // "invalid", "unknown-objective", ...

struct Reject {
  RejectKind kind = RejectKind::kInvalid;
  int status = 400;
  int retry_after_s = -1;  // -1: no Retry-After
  std::string message;
  std::string_view type = "invalid_request_error";  // OpenAI error type
  std::string_view code;                            // OpenAI error code
  wire::DropReason drop = wire::DropReason::kNone;
};

enum class DecisionKind { kRoute, kWait, kReject };

struct Decision {
  DecisionKind kind = DecisionKind::kReject;
  sched::PickResult pick;
  Reject reject;
};

// The shell's side of a waiting or running request.
class Waiter {
 public:
  virtual ~Waiter() = default;
  // A waiting request was dispatched (kRoute) or refused (kReject: TTL, eviction, no endpoint).
  virtual void Resolve(const Decision& d) = 0;
  // A running sheddable request is evicted to make room (a kEvicted reject).
  virtual void Evicted(const Reject& r) = 0;
};

// Per-request state, owned by the shell (it lives as long as the request); the Director keeps
// a pointer to it while the request waits or runs.
struct Ticket {
  Waiter* waiter = nullptr;  // set before Admit()
  // Filled by Admit().
  sched::RequestInfo info;
  std::string_view objective;
  std::string flow;
  int priority = 0;
  Nanos arrival{0};
  Nanos dispatched{0};
  Nanos ttl{0};
  uint32_t reserved = sched::Outcome::kNone;  // endpoint holding the in-flight reservation
  bool queued = false;
  bool finished = false;
  bool in_sheddable_list = false;  // guarded by the Director's lock
};

struct QueueSnapshot {
  std::vector<BandStats> bands;
  size_t requests = 0;
  uint64_t bytes = 0;
};

class Director : private sched::RoomOverride {
 public:
  Director(DirectorConfig cfg, pool::Pool& pool, std::unique_ptr<sched::Picker> picker,
           metrics::Registry& registry);
  ~Director();

  Decision Admit(Ticket& t, const RequestView& v, Nanos now);
  void Fallback(Ticket& t, uint32_t failed, uint32_t next, Nanos now);
  void Finish(Ticket& t, const sched::Outcome& o, Nanos now);
  // Takes a waiting request out (its client hung up). False when it was not waiting (already
  // resolved: its waiter has been or is being called).
  bool Cancel(Ticket& t, Nanos now);
  void Tick(Nanos now);
  void Poke(Nanos now);
  // The pool's membership changed (pool::Pool::OnChange): the scheduler forgets endpoints that
  // are gone, and waiting requests are placed if new endpoints came. Must not be called with
  // a Director callback on the stack.
  void MembershipChanged(const pool::Pool::Change& change, Nanos now);
  // Objectives found by discovery (InferenceObjective objects): the whole set each time. They
  // add to the configured ones; a configured objective of the same name wins.
  void SetDiscoveredObjectives(const std::map<std::string, int>& objectives);

  // The capacity signal as of the last Tick(), with the current queue length.
  wire::Capacity Capacity() const;
  QueueSnapshot Queues() const;
  const pool::SaturationDetector& detector() const { return picker_->detector(); }
  const sched::Picker& picker() const { return *picker_; }
  const DirectorConfig& config() const { return cfg_; }
  // The objective names, for error messages.
  std::string ObjectiveNames() const;

 private:
  struct BandMetrics;
  Reject MakeReject(RejectKind kind, std::string message, Nanos now) const;
  Reject FromEmptyPick(const Ticket& t, sched::EmptyReason reason, Nanos now) const;
  Decision Route(Ticket& t, const sched::PickResult& pick, Nanos now);
  bool HasRoomFor(uint32_t endpoint, int priority) const override;
  void Reserve(Ticket& t, uint32_t endpoint);
  void Release(Ticket& t);
  // Places waiting requests while endpoints have room. `self` (may be null) is the ticket of
  // the caller, whose decision is returned through *self_decision instead of its waiter.
  void DispatchLocked(Nanos now, Ticket* self, Decision* self_decision);
  void Resolved(Ticket& t, const Decision& d, Ticket* self, Decision* self_decision);
  void ObserveWait(const Ticket& t, std::string_view outcome, Nanos now);
  void UpdateQueueGauges();
  BandMetrics& Band(int priority);
  void CountReject(const Reject& r);

  DirectorConfig cfg_;
  pool::Pool& pool_;
  std::unique_ptr<sched::Picker> picker_;
  bool DiscoveredPriority(std::string_view objective, int* priority) const;
  mutable std::shared_mutex discovered_mu_;
  std::map<std::string, int, std::less<>> discovered_;  // guarded by discovered_mu_
  std::atomic<bool> has_discovered_{false};

  mutable std::mutex mu_;
  FlowController flow_;                 // guarded by mu_
  std::vector<Ticket*> sheddable_;      // running sheddable tickets, guarded by mu_
  pool::CapacityState capacity_state_;  // guarded by mu_
  wire::Capacity capacity_;             // guarded by mu_
  std::map<int, std::unique_ptr<BandMetrics>> band_metrics_;  // guarded by mu_
  // Highest priority with waiting requests (INT32_MIN when none), read without the lock.
  std::atomic<int> highest_waiting_{INT32_MIN};
  std::atomic<int64_t> retry_after_ms_{1000};
  // With preemptive engines: per endpoint, requests in flight by priority.
  struct InFlightByPriority {
    mutable std::mutex mu;
    std::map<int, int> count;
  };
  std::unique_ptr<InFlightByPriority[]> by_priority_;

  metrics::Family<metrics::Gauge>* queue_size_;
  metrics::Family<metrics::Gauge>* queue_bytes_;
  metrics::Family<metrics::Histogram>* queue_wait_;
  metrics::Family<metrics::Counter>* dispatched_;
  metrics::Family<metrics::Counter>* evictions_;
  metrics::Family<metrics::Counter>* ttl_expired_;
  metrics::Family<metrics::Counter>* rejected_;
  metrics::Family<metrics::Counter>* shed_;
  metrics::Gauge* pool_saturation_;
  metrics::Gauge* pool_capacity_;
};

}  // namespace tidegate::control
