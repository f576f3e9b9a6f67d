#include "control/director.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <set>

namespace tidegate::control {

namespace {

using std::chrono::duration_cast;
using std::chrono::milliseconds;

int64_t Ms(Nanos d) { return duration_cast<milliseconds>(d).count(); }

std::string Fixed2(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

// A header value in milliseconds: a non-negative finite number (decimals allowed).
bool ParseMs(std::string_view text, double* out) {
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
  double v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || p != text.data() + text.size() || !std::isfinite(v) || v < 0)
    return false;
  *out = v;
  return true;
}

bool PrintableToken(std::string_view s) {
  for (unsigned char c : s)
    if (c < 0x21 || c > 0x7e) return false;
  return true;
}

}  // namespace

std::string_view RejectKindName(RejectKind k) {
  switch (k) {
    case RejectKind::kInvalid:
      return "invalid";
    case RejectKind::kUnknownObjective:
      return "unknown-objective";
    case RejectKind::kModelNotFound:
      return "model-not-found";
    case RejectKind::kSaturated:
      return "saturated";
    case RejectKind::kTtlExpired:
      return "ttl-expired";
    case RejectKind::kEvicted:
      return "evicted";
    case RejectKind::kNoEndpoints:
      return "no-endpoints";
  }
  return "?";
}

struct Director::BandMetrics {
  metrics::Gauge* size;
  metrics::Gauge* bytes;
  metrics::Counter* dispatched;
  metrics::Counter* ttl_expired;
  std::string label;
};

Director::Director(DirectorConfig cfg, pool::Pool& pool, std::unique_ptr<sched::Picker> picker,
                   metrics::Registry& registry)
    : cfg_(std::move(cfg)),
      pool_(pool),
      picker_(std::move(picker)),
      flow_(cfg_.flow.limits, cfg_.flow.fairness, cfg_.flow.ordering) {
  queue_size_ = &registry.AddGauge("tidegate_flow_control_queue_size",
                                   "Requests waiting at the gateway for an endpoint with room, by "
                                   "priority band",
                                   {"priority"});
  queue_bytes_ = &registry.AddGauge("tidegate_flow_control_queue_bytes",
                                    "Request body bytes waiting at the gateway, by priority band",
                                    {"priority"});
  queue_wait_ = &registry.AddHistogram(
      "tidegate_flow_control_queue_wait_seconds",
      "Time requests waited at the gateway, by priority band and how the wait ended (dispatched, "
      "expired, evicted, cancelled, rejected)",
      metrics::LatencyBuckets(), {"priority", "outcome"});
  dispatched_ = &registry.AddCounter("tidegate_flow_control_dispatched_total",
                                     "Waiting requests dispatched to an endpoint, by priority band",
                                     {"priority"});
  evictions_ = &registry.AddCounter(
      "tidegate_flow_control_evictions_total",
      "Requests evicted to make room for higher-priority ones, by priority and what was evicted "
      "(queued: a waiting request; running: an in-flight sheddable request)",
      {"priority", "kind"});
  ttl_expired_ =
      &registry.AddCounter("tidegate_flow_control_ttl_expired_total",
                           "Waiting requests whose TTL expired, by priority band", {"priority"});
  rejected_ = &registry.AddCounter(
      "tidegate_requests_rejected_total",
      "Requests the gateway refused itself, by reason (invalid, unknown-objective, "
      "model-not-found, saturated, ttl-expired, evicted, no-endpoints)",
      {"reason"});
  shed_ = &registry.AddCounter("tidegate_requests_shed_total",
                               "Requests refused for capacity, by reason (saturated, evicted)",
                               {"reason"});
  pool_saturation_ = &registry
                          .AddGauge("tidegate_pool_saturation",
                                    "Mean over endpoints of max(waiting/queue_threshold, "
                                    "kv/kv_threshold); stale endpoints count as 1 or more")
                          .With({});
  pool_capacity_ = &registry
                        .AddGauge("tidegate_pool_sheddable_capacity",
                                  "Estimate of how many more sheddable requests the pool can "
                                  "take now")
                        .With({});
  for (const char* r : {"invalid", "unknown-objective", "model-not-found", "saturated",
                        "ttl-expired", "evicted", "no-endpoints"})
    rejected_->With({r});
  capacity_.endpoints = static_cast<int64_t>(pool_.ActiveCount());
  // One per slot the pool can ever have (~100 KB), so endpoints found later have theirs.
  if (cfg_.flow.preemptive_engines)
    by_priority_.reset(new InFlightByPriority[pool::Pool::kMaxEndpoints]);
}

bool Director::HasRoomFor(uint32_t endpoint, int priority) const {
  if (!by_priority_ || endpoint >= pool::Pool::kMaxEndpoints) return false;
  // The engine serves requests of this priority or above first: only they stand in the way.
  const InFlightByPriority& e = by_priority_[endpoint];
  int lower = 0, at_or_above = 0;
  {
    std::lock_guard lock(e.mu);
    for (const auto& [p, n] : e.count) (p < priority ? lower : at_or_above) += n;
  }
  const double batch = pool_.at(endpoint).Load().batch_limit;
  if (batch > 0) return at_or_above < batch + detector().config().queue_threshold;
  // Batch size not learnt yet: each one can at least preempt a lower-priority request.
  return lower > at_or_above;
}

Director::~Director() = default;

std::string Director::ObjectiveNames() const {
  std::string known;
  for (const auto& [name, p] : cfg_.objectives) known += (known.empty() ? "" : ", ") + name;
  {
    std::shared_lock lock(discovered_mu_);
    for (const auto& [name, p] : discovered_)
      if (!cfg_.objectives.count(name)) known += (known.empty() ? "" : ", ") + name;
  }
  return known.empty() ? "none" : known;
}

bool Director::DiscoveredPriority(std::string_view objective, int* priority) const {
  if (!has_discovered_.load(std::memory_order_acquire)) return false;
  std::shared_lock lock(discovered_mu_);
  auto it = discovered_.find(objective);
  if (it == discovered_.end()) return false;
  *priority = it->second;
  return true;
}

void Director::SetDiscoveredObjectives(const std::map<std::string, int>& objectives) {
  std::unique_lock lock(discovered_mu_);
  discovered_.clear();
  for (const auto& [name, p] : objectives) {
    if (auto c = cfg_.objectives.find(name); c != cfg_.objectives.end() && c->second != p)
      spdlog::warn("objective {}: discovered priority {} ignored, the configured one is {}", name,
                   p, c->second);
    discovered_.emplace(name, p);
  }
  has_discovered_.store(!discovered_.empty(), std::memory_order_release);
}

Director::BandMetrics& Director::Band(int priority) {
  auto& slot = band_metrics_[priority];
  if (!slot) {
    slot = std::make_unique<BandMetrics>();
    slot->label = std::to_string(priority);
    slot->size = &queue_size_->With({slot->label});
    slot->bytes = &queue_bytes_->With({slot->label});
    slot->dispatched = &dispatched_->With({slot->label});
    slot->ttl_expired = &ttl_expired_->With({slot->label});
  }
  return *slot;
}

namespace {

// How each kind of refusal is answered.
struct RejectStyle {
  int status;
  std::string_view type, code;
  wire::DropReason drop;
  bool retry_after;  // with a Retry-After from the capacity signal
};

const RejectStyle& StyleOf(RejectKind k) {
  static const RejectStyle kStyles[] = {
      {400, "invalid_request_error", "invalid_request", wire::DropReason::kNone, false},
      {400, "invalid_request_error", "unknown_objective", wire::DropReason::kNone, false},
      {404, "invalid_request_error", "model_not_found", wire::DropReason::kNone, false},
      {429, "rate_limit_exceeded", "saturated", wire::DropReason::kSaturated, true},
      {503, "service_unavailable", "ttl_expired", wire::DropReason::kTtlExpired, true},
      {429, "rate_limit_exceeded", "evicted", wire::DropReason::kEvicted, true},
      {503, "service_unavailable", "no_endpoints", wire::DropReason::kNoEndpoints, false},
  };
  return kStyles[static_cast<size_t>(k)];
}

}  // namespace

Reject Director::MakeReject(RejectKind kind, std::string message, Nanos now) const {
  const RejectStyle& st = StyleOf(kind);
  Reject r;
  r.kind = kind;
  r.message = std::move(message);
  r.status = st.status;
  r.type = st.type;
  r.code = st.code;
  r.drop = st.drop;
  if (st.retry_after) {
    r.retry_after_s = std::max<int>(
        1, static_cast<int>((retry_after_ms_.load(std::memory_order_relaxed) + 999) / 1000));
  } else if (kind == RejectKind::kNoEndpoints) {
    // When the first endpoint leaves its failure back-off.
    const Nanos recovery = pool_.EarliestRecovery();
    int64_t secs = 1;
    if (recovery > now) secs = (Ms(recovery - now) + 999) / 1000;
    r.retry_after_s = static_cast<int>(std::clamp<int64_t>(secs, 1, 60));
  }
  return r;
}

Reject Director::FromEmptyPick(const Ticket& t, sched::EmptyReason reason, Nanos now) const {
  switch (reason) {
    case sched::EmptyReason::kModelNotServed: {
      std::set<std::string> all;
      for (size_t i = 0; i < pool_.size(); ++i)
        if (pool_.at(i).Active())
          for (auto& m : pool_.at(i).ServedModels()) all.insert(std::move(m));
      std::string served;
      for (const auto& m : all) served += (served.empty() ? "" : ", ") + m;
      return MakeReject(RejectKind::kModelNotFound,
                        "the model '" + std::string(t.info.model) +
                            "' is not served by any endpoint of this gateway (served: " +
                            (served.empty() ? "unknown" : served) + ")",
                        now);
    }
    case sched::EmptyReason::kSloAtRisk:
      if (t.priority < 0) {
        Reject r = MakeReject(RejectKind::kSaturated, {}, now);
        r.message =
            "no endpoint can take sheddable requests now without the next real-time request "
            "being predicted to miss its latency objective; retry after " +
            std::to_string(r.retry_after_s) + " s";
        return r;
      }
      break;
    case sched::EmptyReason::kSaturated:
    case sched::EmptyReason::kNoRoom:
      if (t.priority < 0) {
        Reject r = MakeReject(RejectKind::kSaturated, {}, now);
        r.message = "no endpoint has room for sheddable requests (priority " +
                    std::to_string(t.priority) + ", pool saturation " +
                    Fixed2(detector().PoolSaturation(pool_, now)) + "); retry after " +
                    std::to_string(r.retry_after_s) + " s";
        return r;
      }
      [[fallthrough]];
    case sched::EmptyReason::kNone:
    case sched::EmptyReason::kNoEndpoints:
      break;
  }
  return MakeReject(RejectKind::kNoEndpoints,
                    "no model server endpoint is available to serve this request (" +
                        std::to_string(pool_.ActiveCount()) +
                        " in the pool, none reachable or healthy)",
                    now);
}

void Director::CountReject(const Reject& r) {
  rejected_->With({std::string(RejectKindName(r.kind))}).Inc();
  if (r.kind == RejectKind::kSaturated || r.kind == RejectKind::kEvicted)
    shed_->With({std::string(RejectKindName(r.kind))}).Inc();
}

void Director::Reserve(Ticket& t, uint32_t endpoint) {
  pool_.at(endpoint).AddInFlight(1, t.priority < 0);
  t.reserved = endpoint;
  if (by_priority_) {
    std::lock_guard lock(by_priority_[endpoint].mu);
    ++by_priority_[endpoint].count[t.priority];
  }
}

void Director::Release(Ticket& t) {
  if (t.reserved == sched::Outcome::kNone) return;
  pool_.at(t.reserved).AddInFlight(-1, t.priority < 0);
  if (by_priority_) {
    auto& e = by_priority_[t.reserved];
    std::lock_guard lock(e.mu);
    if (auto it = e.count.find(t.priority); it != e.count.end() && --it->second <= 0)
      e.count.erase(it);
  }
  t.reserved = sched::Outcome::kNone;
}

Decision Director::Route(Ticket& t, const sched::PickResult& pick, Nanos now) {
  Decision d;
  d.kind = DecisionKind::kRoute;
  d.pick = pick;
  t.dispatched = now;
  Reserve(t, pick.order[0]);
  return d;
}

Decision Director::Admit(Ticket& t, const RequestView& v, Nanos now) {
  t.arrival = now;
  t.dispatched = now;
  t.finished = false;
  auto reject = [&](RejectKind kind, std::string message) {
    Decision d;
    d.kind = DecisionKind::kReject;
    d.reject = MakeReject(kind, std::move(message), now);
    CountReject(d.reject);
    return d;
  };
  if (!v.body_error.empty()) {
    Decision d = reject(RejectKind::kInvalid, std::string(v.body_error));
    if (!v.body_error_code.empty()) d.reject.code = v.body_error_code;
    return d;
  }

  // The objective decides the priority: higher wins, negative is sheddable.
  std::string_view objective = v.objective.empty() ? cfg_.default_objective : v.objective;
  int priority = 0;
  if (!objective.empty()) {
    auto it = cfg_.objectives.find(std::string(objective));
    if (it != cfg_.objectives.end()) {
      priority = it->second;
    } else if (!DiscoveredPriority(objective, &priority)) {
      return reject(RejectKind::kUnknownObjective, "unknown objective '" + std::string(objective) +
                                                       "' in " + std::string(wire::kObjective) +
                                                       " (configured: " + ObjectiveNames() + ")");
    }
  }
  t.objective = objective;
  t.priority = priority;

  double ttl_ms = -1, slo_ttft = -1, slo_tpot = -1;
  if (!v.ttl_ms.empty() && (!ParseMs(v.ttl_ms, &ttl_ms) || ttl_ms <= 0))
    return reject(RejectKind::kInvalid, std::string(wire::kTtlMs) +
                                            " must be a positive number of milliseconds, not '" +
                                            std::string(v.ttl_ms) + "'");
  if (!v.slo_ttft_ms.empty() && !ParseMs(v.slo_ttft_ms, &slo_ttft))
    return reject(RejectKind::kInvalid, std::string(wire::kSloTtftMs) +
                                            " must be a non-negative number of milliseconds, "
                                            "not '" +
                                            std::string(v.slo_ttft_ms) + "'");
  if (!v.slo_tpot_ms.empty() && !ParseMs(v.slo_tpot_ms, &slo_tpot))
    return reject(RejectKind::kInvalid, std::string(wire::kSloTpotMs) +
                                            " must be a non-negative number of milliseconds, "
                                            "not '" +
                                            std::string(v.slo_tpot_ms) + "'");
  if (v.fairness_id.size() > 256 || !PrintableToken(v.fairness_id))
    return reject(RejectKind::kInvalid, std::string(wire::kFairnessId) +
                                            " must be at most 256 printable characters without "
                                            "spaces");
  t.flow.assign(v.fairness_id.empty() ? wire::kDefaultFlow : v.fairness_id);

  sched::RequestInfo& info = t.info;
  info = {};
  info.id = v.id;
  info.path = v.path;
  info.model = v.model;
  info.stream = v.stream;
  info.body_bytes = v.body_bytes;
  info.prompt = v.prompt;
  info.session_id = v.session_id;
  info.priority = priority;
  info.require_room = cfg_.flow.enabled;
  info.subset = v.subset;
  info.slo_ttft_ms = slo_ttft;
  info.slo_tpot_ms = slo_tpot;
  if (by_priority_) info.room_override = this;

  Nanos band_ttl = cfg_.flow.ttl;
  if (auto it = cfg_.flow.band_ttl.find(priority); it != cfg_.flow.band_ttl.end())
    band_ttl = it->second;
  t.ttl = band_ttl;
  if (ttl_ms > 0) t.ttl = std::min(band_ttl, Nanos(static_cast<int64_t>(ttl_ms * 1e6)));

  if (priority < 0) {
    // Sheddable: refused at once when there is no room, never queued.
    const double sat = detector().PoolSaturation(pool_, now);
    if (sat >= 1.0) {
      Decision d = reject(RejectKind::kSaturated, {});
      d.reject.message = "the model server pool is saturated (saturation " + Fixed2(sat) +
                         "); sheddable requests (priority " + std::to_string(priority) +
                         ") are refused until capacity returns, retry after " +
                         std::to_string(d.reject.retry_after_s) + " s";
      return d;
    }
    sched::PickResult pick = picker_->Pick(info, pool_, now);
    if (pick.empty()) {
      Decision d;
      d.reject = FromEmptyPick(t, pick.reason, now);
      CountReject(d.reject);
      return d;
    }
    Decision d = Route(t, pick, now);
    if (cfg_.flow.evict_sheddable_after.count() > 0) {
      std::lock_guard lock(mu_);
      sheddable_.push_back(&t);
      t.in_sheddable_list = true;
    }
    return d;
  }

  if (!cfg_.flow.enabled || highest_waiting_.load(std::memory_order_acquire) < priority) {
    sched::PickResult pick = picker_->Pick(info, pool_, now);
    if (!pick.empty()) return Route(t, pick, now);
    if (pick.reason != sched::EmptyReason::kNoRoom) {
      Decision d;
      d.reject = FromEmptyPick(t, pick.reason, now);
      CountReject(d.reject);
      return d;
    }
  }

  // Wait at the gateway.
  std::lock_guard lock(mu_);
  QueuedRequest q;
  q.id = reinterpret_cast<uint64_t>(&t);
  q.priority = priority;
  q.flow = t.flow;
  q.arrival = now;
  if (slo_ttft >= 0) q.deadline = now + Nanos(static_cast<int64_t>(slo_ttft * 1e6));
  q.expires = now + t.ttl;
  q.bytes = v.body_bytes;
  q.user = &t;
  std::vector<QueuedRequest> evicted;
  const FlowController::Admission a = flow_.Enqueue(std::move(q), &evicted);
  for (const QueuedRequest& e : evicted) {
    Ticket& victim = *static_cast<Ticket*>(e.user);
    victim.queued = false;
    Decision d;
    d.reject = MakeReject(
        RejectKind::kEvicted,
        "evicted from the gateway's queue (priority " + std::to_string(victim.priority) +
            ") to admit a request of priority " + std::to_string(priority) + "; retry later",
        now);
    CountReject(d.reject);
    evictions_->With({std::to_string(victim.priority), "queued"}).Inc();
    ObserveWait(victim, "evicted", now);
    victim.waiter->Resolve(d);
  }
  if (a != FlowController::Admission::kQueued) {
    UpdateQueueGauges();
    Decision d;
    d.reject = MakeReject(RejectKind::kSaturated, {}, now);
    const size_t waiting = flow_.size();
    d.reject.message =
        std::string("no endpoint has room and the gateway's queue") +
        (a == FlowController::Admission::kBandFull ? " for priority " + std::to_string(priority)
                                                   : std::string()) +
        " is full (" + std::to_string(waiting) + " requests waiting); retry after " +
        std::to_string(d.reject.retry_after_s) + " s";
    CountReject(d.reject);
    return d;
  }
  t.queued = true;
  Decision self;
  self.kind = DecisionKind::kWait;
  DispatchLocked(now, &t, &self);
  return self;
}

void Director::Resolved(Ticket& t, const Decision& d, Ticket* self, Decision* self_decision) {
  if (&t == self) {
    *self_decision = d;
  } else {
    t.waiter->Resolve(d);
  }
}

void Director::ObserveWait(const Ticket& t, std::string_view outcome, Nanos now) {
  queue_wait_->With({std::to_string(t.priority), std::string(outcome)})
      .Observe(ToSeconds(now - t.arrival));
}

void Director::UpdateQueueGauges() {
  for (auto& [priority, m] : band_metrics_) {
    m->size->Set(0);
    m->bytes->Set(0);
  }
  for (const BandStats& b : flow_.Stats()) {
    BandMetrics& m = Band(b.priority);
    m.size->Set(static_cast<double>(b.requests));
    m.bytes->Set(static_cast<double>(b.bytes));
  }
  highest_waiting_.store(flow_.HighestPriority().value_or(INT32_MIN), std::memory_order_release);
}

void Director::DispatchLocked(Nanos now, Ticket* self, Decision* self_decision) {
  bool changed = false;
  while (const QueuedRequest* q = flow_.Peek()) {
    Ticket& t = *static_cast<Ticket*>(q->user);
    sched::PickResult pick = picker_->Pick(t.info, pool_, now);
    if (pick.empty() && pick.reason == sched::EmptyReason::kNoRoom) break;
    flow_.Pop();
    t.queued = false;
    changed = true;
    if (pick.empty()) {
      Decision d;
      d.reject = FromEmptyPick(t, pick.reason, now);
      CountReject(d.reject);
      ObserveWait(t, "rejected", now);
      Resolved(t, d, self, self_decision);
      continue;
    }
    Decision d = Route(t, pick, now);
    Band(t.priority).dispatched->Inc();
    ObserveWait(t, "dispatched", now);
    Resolved(t, d, self, self_decision);
  }
  if (changed || self) UpdateQueueGauges();
}

void Director::Fallback(Ticket& t, uint32_t failed, uint32_t next, Nanos now) {
  picker_->OnFallback(t.info, pool_, failed, next, now);
  Release(t);
  if (next < pool_.size()) Reserve(t, next);
}

void Director::Finish(Ticket& t, const sched::Outcome& o, Nanos now) {
  if (t.finished) return;
  t.finished = true;
  sched::Outcome out = o;
  if (out.endpoint == sched::Outcome::kNone) out.endpoint = t.reserved;
  out.queued = t.dispatched - t.arrival;
  const bool had_endpoint = t.reserved != sched::Outcome::kNone;
  Release(t);
  if (had_endpoint) picker_->OnOutcome(t.info, pool_, out, now);
  if (cfg_.flow.evict_sheddable_after.count() > 0 && t.priority < 0) {
    // Tick() may have taken it off the list (an eviction) on another thread: look under the lock.
    std::lock_guard lock(mu_);
    if (t.in_sheddable_list) std::erase(sheddable_, &t);
    t.in_sheddable_list = false;
  }
  if (had_endpoint && highest_waiting_.load(std::memory_order_acquire) != INT32_MIN) {
    std::lock_guard lock(mu_);
    DispatchLocked(now, nullptr, nullptr);
  }
}

bool Director::Cancel(Ticket& t, Nanos now) {
  std::lock_guard lock(mu_);
  if (!t.queued) return false;
  flow_.Remove(reinterpret_cast<uint64_t>(&t));
  t.queued = false;
  t.finished = true;
  ObserveWait(t, "cancelled", now);
  UpdateQueueGauges();
  return true;
}

void Director::Tick(Nanos now) {
  std::lock_guard lock(mu_);
  std::vector<QueuedRequest> expired;
  flow_.Expire(now, &expired);
  for (const QueuedRequest& e : expired) {
    Ticket& t = *static_cast<Ticket*>(e.user);
    t.queued = false;
    Decision d;
    d.reject = MakeReject(RejectKind::kTtlExpired,
                          "the request waited " + std::to_string(Ms(now - t.arrival)) +
                              " ms in the gateway's queue (priority " + std::to_string(t.priority) +
                              ", TTL " + std::to_string(Ms(t.ttl)) +
                              " ms) and no endpoint had room to serve it",
                          now);
    CountReject(d.reject);
    Band(t.priority).ttl_expired->Inc();
    ObserveWait(t, "expired", now);
    t.waiter->Resolve(d);
  }
  if (!expired.empty()) UpdateQueueGauges();

  if (cfg_.flow.evict_sheddable_after.count() > 0 && !sheddable_.empty()) {
    auto oldest = flow_.OldestArrival(0);
    if (oldest && now - *oldest > cfg_.flow.evict_sheddable_after) {
      Ticket* victim = sheddable_.back();
      sheddable_.pop_back();
      victim->in_sheddable_list = false;
      Reject r = MakeReject(
          RejectKind::kEvicted,
          "evicted: this sheddable request (priority " + std::to_string(victim->priority) +
              ") gave its place to requests of higher priority that waited longer than " +
              std::to_string(Ms(cfg_.flow.evict_sheddable_after)) + " ms; retry later",
          now);
      CountReject(r);
      evictions_->With({std::to_string(victim->priority), "running"}).Inc();
      victim->waiter->Evicted(r);
    }
  }

  capacity_ =
      pool::EstimateCapacity(pool_, detector(), now, cfg_.scrape_interval, &capacity_state_);
  if (!flow_.empty()) capacity_.sheddable_capacity = 0;  // real-time requests are waiting
  retry_after_ms_.store(capacity_.retry_after_ms, std::memory_order_relaxed);
  pool_saturation_->Set(capacity_.saturation);
  pool_capacity_->Set(static_cast<double>(capacity_.sheddable_capacity));
  DispatchLocked(now, nullptr, nullptr);
}

void Director::Poke(Nanos now) {
  if (highest_waiting_.load(std::memory_order_acquire) == INT32_MIN) return;
  std::lock_guard lock(mu_);
  DispatchLocked(now, nullptr, nullptr);
}

void Director::MembershipChanged(const pool::Pool::Change& change, Nanos now) {
  for (size_t i : change.gone) picker_->OnEndpointGone(static_cast<uint32_t>(i));
  if (!change.added.empty()) Poke(now);
}

wire::Capacity Director::Capacity() const {
  std::lock_guard lock(mu_);
  wire::Capacity c = capacity_;
  c.queued = static_cast<int64_t>(flow_.size());
  return c;
}

QueueSnapshot Director::Queues() const {
  std::lock_guard lock(mu_);
  QueueSnapshot s;
  s.bands = flow_.Stats();
  s.requests = flow_.size();
  s.bytes = flow_.bytes();
  return s;
}

}  // namespace tidegate::control
