// gateway/kv_events_feed.h — feeds the engines' KV events (kvevents/subscriber.h) into the
// process's precise block index (sched/kv_block_index.h) for precise-prefix-cache-scorer.
//
// Contract: with KvEventsConfig::enabled, every active endpoint of the pool is subscribed to at
// tcp://<its host>:<port> — `port` when set (every engine publishes on the same port of its own
// address, as pods do), else the endpoint's HTTP port + `port_offset` (several engines on one
// host, as `tidegate sim --port-count` runs them) — and likewise for the replay socket. Refresh()
// recomputes the set (call it after every pool change); Gone() drops a slot's blocks. Batches are
// applied in order: BlockStored → KvBlockIndex::Store (orphaned and refused blocks counted),
// BlockRemoved → Remove, AllBlocksCleared and every re-sync → Clear; the feed's live flag becomes
// the index's. A batch for a slot whose endpoint changed (another uid) is dropped.
// Metrics (label endpoint = host:port): tidegate_kv_events_received_total (events),
// tidegate_kv_events_gaps_total, tidegate_kv_events_replays_total,
// tidegate_kv_events_orphaned_blocks_total, tidegate_kv_events_decode_errors_total,
// tidegate_kv_events_live (1 while the index is trusted), tidegate_kv_index_blocks; updated by
// Tick() (the gateway calls it every second).
// Thread-safety: Refresh/Gone/Tick/Status from any thread; the sink methods run on the
// subscriber's thread.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

#include "kvevents/subscriber.h"
#include "metrics/registry.h"
#include "pool/endpoint.h"
#include "sched/kv_block_index.h"

namespace tidegate::gateway {

struct KvEventsConfig {
  bool enabled = false;
  int port = 0;         // > 0: the same port on every endpoint's host
  int port_offset = 0;  // port == 0: the endpoint's port + this
  int replay_port = 0;  // > 0: replay on this port; else replay_offset when `replay`
  int replay_offset = 0;
  bool replay = false;
  std::string topic;  // topic prefix to subscribe to ("" = all)
};

// `--kv-events port=N|port-offset=N[,replay-port=N|replay-offset=N][,topic=PREFIX]`, or `off`.
std::string ParseKvEventsSpec(const std::string& spec, KvEventsConfig* out);

class KvEventsFeed final : public kvevents::SubscriberSink {
 public:
  KvEventsFeed(KvEventsConfig cfg, const pool::Pool& pool, sched::KvBlockIndex& index,
               metrics::Registry& registry);
  ~KvEventsFeed() override;

  void Refresh();
  void Gone(size_t slot);
  void Tick();
  // The slot's feed for /v1/pool: {"state", "pub", "replay", "last_seq", "blocks", counters,
  // "scoring": "precise" | "approximate"}; null when the slot has no feed.
  nlohmann::ordered_json Status(size_t slot) const;
  std::string Describe() const;

  void OnBatch(uint32_t slot, uint64_t uid, const kvevents::EventBatch& batch) override;
  void OnClear(uint32_t slot, uint64_t uid, std::string_view reason) override;
  void OnLive(uint32_t slot, uint64_t uid, bool live) override;

 private:
  bool Current(uint32_t slot, uint64_t uid) const;
  struct Seen {
    uint64_t events = 0, gaps = 0, replays = 0, decode_errors = 0;
  };

  KvEventsConfig cfg_;
  const pool::Pool& pool_;
  sched::KvBlockIndex& index_;
  metrics::Family<metrics::Counter>* received_;
  metrics::Family<metrics::Counter>* gaps_;
  metrics::Family<metrics::Counter>* replays_;
  metrics::Family<metrics::Counter>* orphaned_;
  metrics::Family<metrics::Counter>* decode_errors_;
  metrics::Family<metrics::Gauge>* live_;
  metrics::Family<metrics::Gauge>* blocks_;
  mutable std::mutex mu_;
  std::map<std::pair<uint32_t, uint64_t>, Seen> seen_;  // guarded by mu_
  std::map<uint32_t, kvevents::FeedStatus> status_;     // guarded by mu_
  std::map<uint32_t, uint64_t> orphaned_by_slot_;       // guarded by mu_
  std::unique_ptr<kvevents::Subscriber> subscriber_;    // last: stopped first
};

}  // namespace tidegate::gateway
