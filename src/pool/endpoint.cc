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

std::shared_ptr<const EndpointMetrics> Endpoint::Metrics() const {
  std::lock_guard lock(metrics_mu_);
  return metrics_;
}

std::string Endpoint::LastScrapeError() const {
  std::lock_guard lock(metrics_mu_);
  return scrape_error_;
}

Pool::Pool(const std::vector<EndpointConfig>& endpoints) {
  endpoints_.reserve(endpoints.size());
  for (size_t i = 0; i < endpoints.size(); ++i)
    endpoints_.push_back(std::make_unique<Endpoint>(i, endpoints[i]));
}

size_t Pool::AvailableCount(Nanos now) const {
  size_t n = 0;
  for (const auto& e : endpoints_) n += e->Available(now) ? 1 : 0;
  return n;
}

Nanos Pool::EarliestRecovery() const {
  Nanos best{0};
  for (const auto& e : endpoints_) {
    Nanos t = e->DownUntil();
    if (t.count() > 0 && (best.count() == 0 || t < best)) best = t;
  }
  return best;
}

}  // namespace tidegate::pool
