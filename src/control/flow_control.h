// control/flow_control.h — the gateway's waiting room: requests that cannot be placed yet wait
// here, in one band per priority, until an endpoint has room (GIE / llm-d flow-control
// semantics).
//
// Contract:
//  * Bands dispatch strictly highest priority first: Peek()/Pop() only ever return a request of
//    the highest non-empty band.
//  * Within a band, fairness between flows (the fairness id): kRoundRobin takes one request from
//    each flow with waiting requests in turn; kGlobalStrict ignores flows and takes the band's
//    best request by the ordering below.
//  * Within a flow, kFcfs orders by arrival; kEdf by the request's deadline (arrival + its TTFT
//    SLO; requests without one come after those with one, in arrival order).
//  * Bounds: a band holds at most band_max_requests requests and band_max_bytes body bytes; the
//    whole controller at most max_requests and max_bytes. A newcomer that would exceed its band's
//    bound is refused. One that would exceed the global bound evicts the most recently arrived
//    request of the lowest band below its own priority (repeatedly, as needed); if there is none,
//    the newcomer is refused.
//  * Every request carries its expiry (arrival + TTL); Expire(now) removes and returns the
//    expired ones. Remove(id) takes one out (its client hung up).
// Time is a parameter (`now`); nothing here reads a clock or does I/O.
// Thread-safety: none; the Director serialises every call.
#pragma once

#include <cstdint>
#include <list>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/clock.h"

namespace tidegate::control {

enum class Fairness { kRoundRobin, kGlobalStrict };
enum class Ordering { kFcfs, kEdf };

struct FlowControlLimits {
  size_t max_requests = 4096;
  uint64_t max_bytes = 1ull << 30;  // 1 GiB of request bodies
  size_t band_max_requests = 4096;
  uint64_t band_max_bytes = 1ull << 30;
};

struct QueuedRequest {
  uint64_t id = 0;  // unique among queued requests
  int priority = 0;
  std::string flow;
  Nanos arrival{0};
  Nanos deadline = Nanos::max();  // EDF key
  Nanos expires = Nanos::max();   // TTL
  uint64_t bytes = 0;
  void* user = nullptr;  // the caller's handle (the Director's ticket)
};

struct BandStats {
  int priority = 0;
  size_t requests = 0;
  uint64_t bytes = 0;
  size_t flows = 0;
};

class FlowController {
 public:
  FlowController(FlowControlLimits limits, Fairness fairness, Ordering ordering)
      : limits_(limits), fairness_(fairness), ordering_(ordering) {}

  enum class Admission { kQueued, kBandFull, kFull };
  // Queues `r`; requests evicted to make room are appended to *evicted.
  Admission Enqueue(QueuedRequest r, std::vector<QueuedRequest>* evicted);
  // The next request to dispatch (nullptr when empty). Valid until the next mutation.
  const QueuedRequest* Peek() const;
  // Removes the request Peek() returned and advances the round-robin turn.
  QueuedRequest Pop();
  bool Remove(uint64_t id);
  void Expire(Nanos now, std::vector<QueuedRequest>* expired);
  // The earliest arrival among waiting requests with priority ≥ `min_priority` (nullopt: none).
  std::optional<Nanos> OldestArrival(int min_priority) const;

  bool empty() const { return items_.empty(); }
  size_t size() const { return items_.size(); }
  uint64_t bytes() const { return bytes_; }
  // Highest priority with waiting requests (nullopt when empty).
  std::optional<int> HighestPriority() const;
  std::vector<BandStats> Stats() const;  // highest band first

 private:
  struct Key {
    Nanos order;
    uint64_t seq;
    bool operator<(const Key& o) const { return order != o.order ? order < o.order : seq < o.seq; }
  };
  struct Flow {
    std::string name;
    std::map<Key, uint64_t> items;  // → id
  };
  struct Band {
    int priority = 0;
    std::list<Flow> flows;  // flows with waiting requests, in round-robin order
    std::list<Flow>::iterator turn;
    size_t count = 0;
    uint64_t bytes = 0;
  };
  struct Item {
    QueuedRequest req;
    Key key;
    std::list<Flow>::iterator flow;
    std::set<std::pair<Nanos, uint64_t>>::iterator expiry;
  };

  Key KeyOf(const QueuedRequest& r);
  Band& BandOf(int priority);
  void Erase(uint64_t id);  // removes the item (and its flow/band when they empty)
  // The band's flow whose head goes next.
  std::list<Flow>::iterator NextFlow(const Band& b) const;

  FlowControlLimits limits_;
  Fairness fairness_;
  Ordering ordering_;
  std::map<int, Band, std::greater<int>> bands_;  // only non-empty bands
  std::unordered_map<uint64_t, Item> items_;
  std::set<std::pair<Nanos, uint64_t>> expiries_;
  uint64_t bytes_ = 0;
  uint64_t seq_ = 0;
};

}  // namespace tidegate::control
