#include "gateway/kv_events_feed.h"

#include <spdlog/spdlog.h>

#include <charconv>
#include <variant>

#include "kvevents/config.h"

namespace tidegate::gateway {

std::string ParseKvEventsSpec(const std::string& spec, KvEventsConfig* out) {
  KvEventsConfig c;
  if (spec == "off" || spec == "none") {
    *out = c;
    return {};
  }
  c.enabled = true;
  bool have_port = false;
  size_t at = 0;
  while (at <= spec.size()) {
    size_t comma = spec.find(',', at);
    if (comma == std::string::npos) comma = spec.size();
    std::string item = spec.substr(at, comma - at);
    at = comma + 1;
    if (item.empty()) continue;
    size_t eq = item.find('=');
    if (eq == std::string::npos)
      return "--kv-events: \"" + item +
             "\" is not key=value (keys: port, port-offset, "
             "replay-port, replay-offset, topic)";
    std::string key = item.substr(0, eq), value = item.substr(eq + 1);
    if (key == "topic") {
      c.topic = value;
      continue;
    }
    int v = 0;
    auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
    if (ec != std::errc() || p != value.data() + value.size())
      return "--kv-events: " + key + "=\"" + value + "\" is not an integer";
    if (key == "port" || key == "replay-port") {
      if (v < 1 || v > 65535) return "--kv-events: " + key + " must be 1..65535";
      (key == "port" ? c.port : c.replay_port) = v;
      if (key == "port") have_port = true;
      if (key == "replay-port") c.replay = true;
    } else if (key == "port-offset" || key == "replay-offset") {
      if (v < -65535 || v > 65535) return "--kv-events: " + key + " is out of range";
      (key == "port-offset" ? c.port_offset : c.replay_offset) = v;
      if (key == "port-offset") have_port = true;
      if (key == "replay-offset") c.replay = true;
    } else {
      return "--kv-events: unknown key \"" + key +
             "\" (keys: port, port-offset, replay-port, replay-offset, topic)";
    }
  }
  if (!have_port)
    return "--kv-events: say where the engines publish: port=N (the same port on every "
           "endpoint's host) or port-offset=N (the endpoint's port + N)";
  *out = std::move(c);
  return {};
}

KvEventsFeed::KvEventsFeed(KvEventsConfig cfg, const pool::Pool& pool, sched::KvBlockIndex& index,
                           metrics::Registry& r)
    : cfg_(std::move(cfg)), pool_(pool), index_(index) {
  const std::vector<std::string> l = {"endpoint"};
  received_ = &r.AddCounter("tidegate_kv_events_received_total",
                            "KV-cache events received from the endpoint's engine", l);
  gaps_ = &r.AddCounter("tidegate_kv_events_gaps_total",
                        "Gaps in the endpoint's event sequence numbers (lost batches)", l);
  replays_ = &r.AddCounter("tidegate_kv_events_replays_total",
                           "Replays requested from the endpoint's publisher (on connecting and "
                           "after a gap)",
                           l);
  orphaned_ = &r.AddCounter("tidegate_kv_events_orphaned_blocks_total",
                            "Stored blocks that could not be indexed (their parent block was "
                            "unknown, the block size differed, or the endpoint's cap was reached)",
                            l);
  decode_errors_ = &r.AddCounter("tidegate_kv_events_decode_errors_total",
                                 "Event messages that were not a valid EventBatch (skipped)", l);
  live_ = &r.AddGauge("tidegate_kv_events_live",
                      "1 while the endpoint's event feed is connected and in sequence (precise "
                      "prefix scoring); 0 = the approximate index is used",
                      l);
  blocks_ = &r.AddGauge("tidegate_kv_index_blocks",
                        "KV blocks the precise index holds for the endpoint", l);
  subscriber_ = std::make_unique<kvevents::Subscriber>(this);
}

KvEventsFeed::~KvEventsFeed() { subscriber_.reset(); }

std::string KvEventsFeed::Describe() const {
  std::string where = cfg_.port > 0 ? "port " + std::to_string(cfg_.port)
                                    : "the endpoint's port " +
                                          std::string(cfg_.port_offset >= 0 ? "+ " : "- ") +
                                          std::to_string(std::abs(cfg_.port_offset));
  std::string replay = !cfg_.replay ? "no replay"
                       : cfg_.replay_port > 0
                           ? "replay on port " + std::to_string(cfg_.replay_port)
                           : "replay on the endpoint's port " +
                                 std::string(cfg_.replay_offset >= 0 ? "+ " : "- ") +
                                 std::to_string(std::abs(cfg_.replay_offset));
  return "KV events from each endpoint's host on " + where + ", " + replay +
         (cfg_.topic.empty() ? "" : ", topic prefix \"" + cfg_.topic + "\"");
}

void KvEventsFeed::Refresh() {
  std::vector<kvevents::Target> targets;
  for (size_t i = 0; i < pool_.size(); ++i) {
    const pool::Endpoint& ep = pool_.at(i);
    if (!ep.Active()) continue;
    const pool::EndpointConfig& c = ep.config();
    const int port = cfg_.port > 0 ? cfg_.port : c.port + cfg_.port_offset;
    if (port < 1 || port > 65535) continue;
    const std::string host = c.host.find(':') != std::string::npos ? "[" + c.host + "]" : c.host;
    kvevents::Target t;
    t.slot = static_cast<uint32_t>(i);
    t.uid = ep.uid();
    t.name = ep.address();
    t.pub = "tcp://" + host + ":" + std::to_string(port);
    if (cfg_.replay) {
      const int rp = cfg_.replay_port > 0 ? cfg_.replay_port : c.port + cfg_.replay_offset;
      if (rp >= 1 && rp <= 65535) t.replay = "tcp://" + host + ":" + std::to_string(rp);
    }
    t.topic = cfg_.topic;
    targets.push_back(std::move(t));
  }
  subscriber_->SetTargets(std::move(targets));
}

void KvEventsFeed::Gone(size_t slot) {
  index_.SetLive(static_cast<uint32_t>(slot), false);
  index_.Clear(static_cast<uint32_t>(slot));
}

bool KvEventsFeed::Current(uint32_t slot, uint64_t uid) const {
  return slot < pool_.size() && pool_.at(slot).uid() == uid && pool_.at(slot).Active();
}

void KvEventsFeed::OnBatch(uint32_t slot, uint64_t uid, const kvevents::EventBatch& batch) {
  if (!Current(slot, uid)) return;
  uint64_t orphaned = 0;
  for (const kvevents::Event& ev : batch.events) {
    if (const auto* s = std::get_if<kvevents::BlockStored>(&ev)) {
      const std::string& adapter = !s->lora_name.empty() ? s->lora_name
                                   : s->lora_id          ? std::to_string(*s->lora_id)
                                                         : s->lora_name;
      auto r = index_.Store(slot, s->block_hashes, s->parent_block_hash, s->token_ids,
                            static_cast<size_t>(s->block_size), adapter, s->medium);
      orphaned += r.orphaned + r.refused;
    } else if (const auto* rm = std::get_if<kvevents::BlockRemoved>(&ev)) {
      index_.Remove(slot, rm->block_hashes, rm->medium);
    } else {
      index_.Clear(slot);
    }
  }
  if (orphaned > 0) {
    std::lock_guard lock(mu_);
    orphaned_by_slot_[slot] += orphaned;
  }
}

void KvEventsFeed::OnClear(uint32_t slot, uint64_t uid, std::string_view reason) {
  if (!Current(slot, uid)) return;
  spdlog::debug("kv events: {}: index cleared ({})", pool_.at(slot).address(), reason);
  index_.Clear(slot);
}

void KvEventsFeed::OnLive(uint32_t slot, uint64_t uid, bool live) {
  // Not live any more is taken from the slot's own endpoint even while it drains (it may be
  // named again, with the same uid, before it is gone); live only from an active one.
  if (live ? !Current(slot, uid) : (slot >= pool_.size() || pool_.at(slot).uid() != uid)) return;
  index_.SetLive(slot, live);
}

void KvEventsFeed::Tick() {
  std::vector<kvevents::FeedStatus> st = subscriber_->Status();
  std::lock_guard lock(mu_);
  status_.clear();
  for (const kvevents::FeedStatus& s : st) {
    if (!Current(s.slot, s.uid)) continue;
    status_[s.slot] = s;
    const std::vector<std::string> label = {pool_.at(s.slot).address()};
    Seen& seen = seen_[{s.slot, s.uid}];
    auto bump = [&](metrics::Family<metrics::Counter>* f, uint64_t now, uint64_t& was) {
      metrics::Counter& c = f->With(label);
      if (now > was) c.Inc(now - was);
      was = now;
    };
    bump(received_, s.events, seen.events);
    bump(gaps_, s.gaps, seen.gaps);
    bump(replays_, s.replays, seen.replays);
    bump(decode_errors_, s.decode_errors, seen.decode_errors);
    auto o = orphaned_by_slot_.find(s.slot);
    if (o != orphaned_by_slot_.end()) {
      orphaned_->With(label).Inc(o->second);
      orphaned_by_slot_.erase(o);
    } else {
      orphaned_->With(label);  // the series exists from the start
    }
    live_->With(label).Set(index_.Live(s.slot) ? 1 : 0);
    blocks_->With(label).Set(static_cast<double>(index_.Blocks(s.slot)));
  }
}

nlohmann::ordered_json KvEventsFeed::Status(size_t slot) const {
  std::lock_guard lock(mu_);
  auto it = status_.find(static_cast<uint32_t>(slot));
  if (it == status_.end()) return nullptr;
  const kvevents::FeedStatus& s = it->second;
  nlohmann::ordered_json j;
  const bool live = index_.Live(static_cast<uint32_t>(slot));
  j["state"] = kvevents::FeedStateName(s.state);
  j["scoring"] = live ? "precise" : "approximate";
  j["pub"] = s.pub;
  if (!s.replay.empty()) j["replay"] = s.replay;
  j["last_seq"] = s.last_seq;
  j["blocks"] = index_.Blocks(static_cast<uint32_t>(slot));
  j["batches"] = s.batches;
  j["events"] = s.events;
  j["gaps"] = s.gaps;
  j["replays"] = s.replays;
  j["replay_failures"] = s.replay_failures;
  j["restarts"] = s.restarts;
  j["connects"] = s.connects;
  j["decode_errors"] = s.decode_errors;
  if (!s.last_error.empty()) j["last_error"] = s.last_error;
  return j;
}

}  // namespace tidegate::gateway
