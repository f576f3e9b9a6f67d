// kvevents/subscriber.h — the gateway side: one subscription per endpoint to its engine's KV
// events, in order, with gaps replayed or re-synced.
//
// Contract: SetTargets() gives the whole set of subscriptions (endpoint slot + uid, the PUB and
// optional replay addresses, the topic prefix); the subscriber's thread opens a SUB socket per new
// target and closes those no longer named. Per target it keeps a state and tells the sink:
//  - connected (the TCP connection to the publisher came up, first or again): OnClear() — the
//    engine may have restarted, and what it held before is unknown — then, with a replay
//    address, a replay from seq 0 (the publisher's whole buffer) before going live (OnLive(true));
//  - disconnected: OnLive(false); the index is kept, but the scorer stops trusting it;
//  - each batch, in sequence order (SeqTracker): kApply → OnBatch(); kDuplicate → dropped; kGap →
//    a replay from last+1 when there is a replay address and its buffer still reaches back,
//    else OnClear() and carry on from this batch (a lost BlockRemoved would leave stale blocks);
//    kRestart → OnClear() and apply.
//  - a payload that does not decode is counted and logged (rate-limited), and skipped; its seq
//    still counts as received, so it does not look like a gap.
// A replay waits at most Options::replay_timeout for the publisher's answer (on the subscriber's
// thread, never on an event loop). Status() reports each subscription's state and counters.
// Thread-safety: SetTargets() and Status() from any thread; the sink is called from the
// subscriber's thread only. The destructor stops the thread (within ~100 ms).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kvevents/events.h"

namespace tidegate::kvevents {

struct Target {
  uint32_t slot = 0;
  uint64_t uid = 0;
  std::string name;  // for logs, e.g. the endpoint's URL
  std::string pub;   // tcp://HOST:PORT
  std::string replay;
  std::string topic;  // prefix filter; "" = every topic
};

enum class FeedState { kConnecting, kSyncing, kLive, kDisconnected };
std::string_view FeedStateName(FeedState s);

struct FeedStatus {
  uint32_t slot = 0;
  uint64_t uid = 0;
  std::string pub, replay;
  FeedState state = FeedState::kConnecting;
  int64_t last_seq = -1;
  uint64_t batches = 0, events = 0, gaps = 0, replays = 0, replay_failures = 0, restarts = 0,
           connects = 0, decode_errors = 0;
  std::string last_error;
};

class SubscriberSink {
 public:
  virtual ~SubscriberSink() = default;
  virtual void OnBatch(uint32_t slot, uint64_t uid, const EventBatch& batch) = 0;
  virtual void OnClear(uint32_t slot, uint64_t uid, std::string_view reason) = 0;
  virtual void OnLive(uint32_t slot, uint64_t uid, bool live) = 0;
};

class Subscriber {
 public:
  struct Options {
    std::chrono::milliseconds replay_timeout{2000};
  };
  Subscriber(SubscriberSink* sink, Options options);
  explicit Subscriber(SubscriberSink* sink) : Subscriber(sink, Options{}) {}
  ~Subscriber();
  Subscriber(const Subscriber&) = delete;
  Subscriber& operator=(const Subscriber&) = delete;

  void SetTargets(std::vector<Target> targets);
  std::vector<FeedStatus> Status() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tidegate::kvevents
