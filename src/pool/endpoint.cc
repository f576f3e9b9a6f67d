#include "pool/endpoint.h"

#include <algorithm>
#include <charconv>

namespace tidegate::pool {

std::string ParseEndpoint(const std::string& text, EndpointConfig* out) {
  std::string s = text;
  bool tls = false;
  if (s.rfind("http://", 0) == 0) s = s.substr(7);
  if (s.rfind("https://", 0) == 0) {
    s = s.substr(8);
    tls = true;
  }
  while (!s.empty() && s.back() == '/') s.pop_back();
  if (s.empty()) return "empty endpoint";
  std::string host, port;
  if (s.front() == '[') {
    auto close = s.find(']');
    if (close == std::string::npos || close + 1 >= s.size() || s[close + 1] != ':')
      return "expected [ipv6]:port";
    host = s.substr(1, close - 1);
    port = s.substr(close + 2);
  } else {
    auto colon = s.rfind(':');
    if (colon == std::string::npos) return "expected host:port";
    host = s.substr(0, colon);
    port = s.substr(colon + 1);
  }
  if (host.empty()) return "missing host";
  // One reading only: an address with colons (IPv6) is bracketed, and brackets mean nothing else.
  if (host.find_first_of("[]") != std::string::npos)
    return "unexpected '[' or ']' in the host (an IPv6 address is written [addr]:port)";
  if (s.front() != '[' && host.find(':') != std::string::npos)
    return "a host with ':' must be an IPv6 address in brackets: [addr]:port";
  unsigned value = 0;
  auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (ec != std::errc() || p != port.data() + port.size() || value == 0 || value > 65535)
    return "port must be 1..65535";
  out->host = host;
  out->port = static_cast<uint16_t>(value);
  out->tls = tls;
  return {};
}

namespace {
std::atomic<uint64_t> next_endpoint_uid{1};
}

Endpoint::Endpoint(size_t index, EndpointConfig cfg)
    : index_(index),
      cfg_(std::move(cfg)),
      address_(cfg_.Address()),
      uid_(next_endpoint_uid.fetch_add(1, std::memory_order_relaxed)) {}

const EndpointMetrics* Endpoint::MetricsCached() const {
  struct Entry {
    uint64_t uid = 0;
    uint64_t gen = 0;
    std::shared_ptr<const EndpointMetrics> metrics;
  };
  thread_local std::vector<Entry> cache;  // indexed by endpoint index
  const uint64_t gen = metrics_gen_.load(std::memory_order_acquire);
  if (cache.size() <= index_) cache.resize(index_ + 1);
  Entry& e = cache[index_];
  if (e.uid != uid_ || e.gen != gen || (gen != 0 && !e.metrics)) {
    e.uid = uid_;
    e.gen = gen;
    e.metrics = Metrics();
  }
  return e.metrics.get();
}

void Endpoint::RecordConnectFailure(Nanos now) {
  int n = consecutive_failures_.fetch_add(1, std::memory_order_relaxed) + 1;
  int64_t backoff_ms = std::min<int64_t>(10'000, 1000LL << std::min(n - 1, 4));
  down_until_.store(now.count() + backoff_ms * 1'000'000, std::memory_order_relaxed);
}

void Endpoint::RecordSuccess() {
  if (consecutive_failures_.load(std::memory_order_relaxed) != 0) {
    consecutive_failures_.store(0, std::memory_order_relaxed);
    down_until_.store(0, std::memory_order_relaxed);
  }
}

bool Endpoint::RecordUpstreamFailure(Nanos now, const OutlierConfig& cfg, std::string_view reason) {
  if (cfg.failures <= 0) return false;
  const int64_t last = last_outlier_failure_.exchange(now.count(), std::memory_order_relaxed);
  int n;
  if (last != 0 && now.count() - last > cfg.window.count()) {
    outlier_failures_.store(1, std::memory_order_relaxed);
    n = 1;
  } else {
    n = outlier_failures_.fetch_add(1, std::memory_order_relaxed) + 1;
  }
  if (n < cfg.failures || Ejected(now)) return false;
  outlier_failures_.store(0, std::memory_order_relaxed);
  const int times = ejections_.fetch_add(1, std::memory_order_relaxed) + 1;
  const Nanos length = std::min<Nanos>(cfg.max, cfg.base * times);
  ejected_until_.store((now + length).count(), std::memory_order_relaxed);
  std::lock_guard lock(error_mu_);
  ejection_reason_ = std::to_string(n) + " failures in a row (last: " + std::string(reason) + ")";
  return true;
}

std::string Endpoint::EjectionReason() const {
  std::lock_guard lock(error_mu_);
  return ejection_reason_;
}

bool Endpoint::RecordProbe(bool ok, const std::string& error) {
  if (ok) {
    probe_failures_.store(0, std::memory_order_relaxed);
    RecordSuccess();
    return !probe_ok_.exchange(true, std::memory_order_relaxed);
  }
  {
    std::lock_guard lock(error_mu_);
    last_error_ = error;
  }
  // One slow or lost probe does not take a serving endpoint out; consecutive failures do.
  if (probe_failures_.fetch_add(1, std::memory_order_relaxed) + 1 < kProbeFailuresToMarkDown)
    return false;
  return probe_ok_.exchange(false, std::memory_order_relaxed);
}

void Endpoint::SetServedModels(ServedList list) {
  std::lock_guard lock(error_mu_);
  served_models_ = std::move(list.models);
  served_objects_ = std::move(list.objects);
  served_adapters_ = std::move(list.adapters);
  served_parents_known_ = list.parents_known;
  served_owner_ = std::move(list.owner);
  models_known_.store(true, std::memory_order_release);
}

std::vector<std::string> Endpoint::ServedAdapters(bool* parents_known) const {
  std::lock_guard lock(error_mu_);
  if (parents_known) *parents_known = served_parents_known_;
  return served_adapters_;
}

std::string Endpoint::ServedOwner() const {
  std::lock_guard lock(error_mu_);
  return served_owner_;
}

void Endpoint::SetMetricsSource(MetricsSource source) {
  std::lock_guard lock(error_mu_);
  metrics_source_ = std::move(source);
}

MetricsSource Endpoint::GetMetricsSource() const {
  std::lock_guard lock(error_mu_);
  return metrics_source_;
}

std::vector<std::string> Endpoint::ServedModelObjects() const {
  std::lock_guard lock(error_mu_);
  return served_objects_;
}

std::vector<std::string> Endpoint::ServedModels() const {
  std::lock_guard lock(error_mu_);
  return served_models_;
}

std::string Endpoint::LastError() const {
  std::lock_guard lock(error_mu_);
  return last_error_;
}

namespace {
constexpr uint8_t kHasMetrics = 1, kScrapeFailed = 2, kHasKv = 4;
}

void Endpoint::PublishMetrics(std::shared_ptr<const EndpointMetrics> m) {
  if (!m) return;
  std::lock_guard lock(metrics_mu_);
  if (m->prefix_query_tokens >= 0) {
    // The first page with the counters is the baseline; counters that went back mean the
    // engine restarted and counts from zero again.
    if (engine_prefix_base_queries_ < 0) {
      engine_prefix_base_hits_ = m->prefix_hit_tokens;
      engine_prefix_base_queries_ = m->prefix_query_tokens;
    } else if (m->prefix_query_tokens < engine_prefix_base_queries_ ||
               m->prefix_hit_tokens < engine_prefix_base_hits_) {
      engine_prefix_base_hits_ = 0;
      engine_prefix_base_queries_ = 0;
    }
  }
  uint32_t s = seq_.load(std::memory_order_relaxed);
  seq_.store(s + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  m_waiting_.store(m->waiting, std::memory_order_relaxed);
  m_running_.store(m->running, std::memory_order_relaxed);
  m_kv_.store(m->kv_usage, std::memory_order_relaxed);
  m_scrape_ns_.store(m->scrape_time.count(), std::memory_order_relaxed);
  m_max_lora_.store(m->max_lora, std::memory_order_relaxed);
  m_running_lora_.store(static_cast<int32_t>(m->running_lora_adapters.size()),
                        std::memory_order_relaxed);
  m_flags_.store(kHasMetrics | (m->has_kv ? kHasKv : 0), std::memory_order_relaxed);
  if (m->waiting > 0 && m->running >= 1)
    m_batch_limit_.store(m->running, std::memory_order_relaxed);
  seq_.store(s + 2, std::memory_order_release);
  routed_since_scrape_.store(0, std::memory_order_relaxed);
  completed_since_scrape_.store(0, std::memory_order_relaxed);
  metrics_ = std::move(m);
  scrape_error_.clear();
  metrics_gen_.fetch_add(1, std::memory_order_release);
}

void Endpoint::RecordScrapeError(Nanos now, std::string error) {
  std::lock_guard lock(metrics_mu_);
  uint32_t s = seq_.load(std::memory_order_relaxed);
  seq_.store(s + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  m_flags_.fetch_or(kScrapeFailed, std::memory_order_relaxed);
  seq_.store(s + 2, std::memory_order_release);
  scrape_error_at_.store(now.count(), std::memory_order_relaxed);
  scrape_error_ = std::move(error);
}

LoadSnapshot Endpoint::Load() const {
  LoadSnapshot out;
  while (true) {
    uint32_t s1 = seq_.load(std::memory_order_acquire);
    if (s1 & 1) continue;  // a write is in progress (it is a few stores long)
    out.waiting = m_waiting_.load(std::memory_order_relaxed);
    out.running = m_running_.load(std::memory_order_relaxed);
    out.kv_usage = m_kv_.load(std::memory_order_relaxed);
    out.scrape_time = Nanos{m_scrape_ns_.load(std::memory_order_relaxed)};
    out.max_lora = m_max_lora_.load(std::memory_order_relaxed);
    out.running_lora_count = m_running_lora_.load(std::memory_order_relaxed);
    out.batch_limit = m_batch_limit_.load(std::memory_order_relaxed);
    uint8_t f = m_flags_.load(std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (seq_.load(std::memory_order_relaxed) != s1) continue;
    out.has_metrics = f & kHasMetrics;
    out.scrape_failed = f & kScrapeFailed;
    out.has_kv = f & kHasKv;
    return out;
  }
}

namespace {
void AtomicAdd(std::atomic<double>& a, double v) {
  double cur = a.load(std::memory_order_relaxed);
  while (!a.compare_exchange_weak(cur, cur + v, std::memory_order_relaxed)) {
  }
}
}  // namespace

void Endpoint::NotePrefixPrediction(double predicted_hit_tokens, double prompt_tokens) const {
  if (!(prompt_tokens > 0) || !(predicted_hit_tokens >= 0)) return;
  AtomicAdd(predicted_hit_tokens_, std::min(predicted_hit_tokens, prompt_tokens));
  AtomicAdd(predicted_prompt_tokens_, prompt_tokens);
}

Endpoint::PrefixCheckFigures Endpoint::PrefixCheck() const {
  PrefixCheckFigures f;
  f.predicted_hit_tokens = predicted_hit_tokens_.load(std::memory_order_relaxed);
  f.predicted_prompt_tokens = predicted_prompt_tokens_.load(std::memory_order_relaxed);
  std::lock_guard lock(metrics_mu_);
  if (metrics_ && metrics_->prefix_query_tokens >= 0 && engine_prefix_base_queries_ >= 0) {
    f.engine_hit_tokens = std::max(0.0, metrics_->prefix_hit_tokens - engine_prefix_base_hits_);
    f.engine_query_tokens =
        std::max(0.0, metrics_->prefix_query_tokens - engine_prefix_base_queries_);
  }
  return f;
}

std::shared_ptr<const EndpointMetrics> Endpoint::Metrics() const {
  std::lock_guard lock(metrics_mu_);
  return metrics_;
}

std::string Endpoint::LastScrapeError() const {
  std::lock_guard lock(metrics_mu_);
  return scrape_error_;
}

bool SameServer(const EndpointConfig& a, const EndpointConfig& b) {
  return a.host == b.host && a.port == b.port && a.tls == b.tls && a.engine == b.engine &&
         a.metrics_port == b.metrics_port && a.metrics_path == b.metrics_path;
}

Pool::Pool(const std::vector<EndpointConfig>& endpoints)
    : slots_(new std::atomic<Endpoint*>[kMaxEndpoints]) {
  for (size_t i = 0; i < kMaxEndpoints; ++i) slots_[i].store(nullptr, std::memory_order_relaxed);
  Change ignored;
  std::lock_guard lock(mu_);
  for (const auto& cfg : endpoints) AddLocked(cfg, Nanos{0}, &ignored);
}

Pool::~Pool() = default;

size_t Pool::AddLocked(const EndpointConfig& cfg, Nanos now, Change* change) {
  const size_t n = size_.load(std::memory_order_relaxed);
  // A gone slot that has been gone long enough, else a new slot at the end.
  size_t slot = n;
  for (size_t i = 0; i < n; ++i) {
    Endpoint& e = *owned_[i];
    if (e.membership() == Endpoint::Membership::kGone &&
        now.count() - e.gone_since_.load(std::memory_order_relaxed) >= kReuseAfter.count()) {
      slot = i;
      break;
    }
  }
  if (slot == n && n >= kMaxEndpoints) {
    change->refused.push_back(cfg.Address() + ": the pool is full (" +
                              std::to_string(kMaxEndpoints) + " endpoints)");
    return kMaxEndpoints;
  }
  auto ep = std::make_unique<Endpoint>(slot, cfg);
  slots_[slot].store(ep.get(), std::memory_order_release);
  if (slot == n) {
    owned_.push_back(std::move(ep));
    size_.store(n + 1, std::memory_order_release);
  } else {
    replaced_.emplace_back(now, std::move(owned_[slot]));
    owned_[slot] = std::move(ep);
  }
  change->added.push_back(slot);
  return slot;
}

void Pool::SweepLocked(Nanos now, Change* change) {
  for (auto& e : owned_) {
    if (e->membership() == Endpoint::Membership::kDraining && e->InFlight() <= 0) {
      e->gone_since_.store(now.count(), std::memory_order_relaxed);
      e->membership_.store(static_cast<uint8_t>(Endpoint::Membership::kGone),
                           std::memory_order_release);
      change->gone.push_back(e->index());
    }
  }
  std::erase_if(replaced_, [&](const auto& r) { return now - r.first >= kRetainReplaced; });
}

Pool::Change Pool::Reconcile(const std::vector<EndpointConfig>& desired, Nanos now) {
  Change change;
  std::lock_guard lock(mu_);
  std::vector<bool> keep(owned_.size(), false);
  for (const auto& cfg : desired) {
    size_t found = owned_.size();
    for (size_t i = 0; i < owned_.size(); ++i) {
      const Endpoint& e = *owned_[i];
      if (e.membership() != Endpoint::Membership::kGone && SameServer(e.config(), cfg)) {
        found = i;
        break;
      }
    }
    if (found < owned_.size()) {
      if (keep[found]) continue;  // a duplicate
      keep[found] = true;
      Endpoint& e = *owned_[found];
      if (e.membership() == Endpoint::Membership::kDraining) {
        e.membership_.store(static_cast<uint8_t>(Endpoint::Membership::kActive),
                            std::memory_order_release);
        change.added.push_back(found);
      }
      continue;
    }
    const size_t slot = AddLocked(cfg, now, &change);
    if (slot < kMaxEndpoints) {
      if (keep.size() <= slot) keep.resize(slot + 1, false);
      keep[slot] = true;
    }
  }
  for (size_t i = 0; i < owned_.size(); ++i) {
    Endpoint& e = *owned_[i];
    if (!keep[i] && e.Active()) {
      e.membership_.store(static_cast<uint8_t>(Endpoint::Membership::kDraining),
                          std::memory_order_release);
      change.removed.push_back(i);
    }
  }
  SweepLocked(now, &change);
  if (!change.empty()) {
    version_.fetch_add(1, std::memory_order_acq_rel);
    if (listener_) listener_(change);
  }
  return change;
}

Pool::Change Pool::Sweep(Nanos now) {
  Change change;
  std::lock_guard lock(mu_);
  SweepLocked(now, &change);
  if (!change.empty()) {
    version_.fetch_add(1, std::memory_order_acq_rel);
    if (listener_) listener_(change);
  }
  return change;
}

size_t Pool::ActiveCount() const {
  size_t n = 0;
  for (size_t i = 0; i < size(); ++i) n += at(i).Active() ? 1 : 0;
  return n;
}

size_t Pool::AvailableCount(Nanos now) const {
  size_t n = 0;
  for (size_t i = 0; i < size(); ++i) n += at(i).Available(now) ? 1 : 0;
  return n;
}

Endpoint* Pool::FindActive(std::string_view address) {
  for (size_t i = 0; i < size(); ++i) {
    Endpoint& e = at(i);
    if (e.Active() && e.address() == address) return &e;
  }
  return nullptr;
}

Nanos Pool::EarliestRecovery() const {
  Nanos best{0};
  for (size_t i = 0; i < size(); ++i) {
    const Endpoint& e = at(i);
    if (!e.Active()) continue;
    Nanos t = e.DownUntil();
    if (t.count() > 0 && (best.count() == 0 || t < best)) best = t;
  }
  return best;
}

}  // namespace tidegate::pool
