#include "pool/endpoint.h"

#include <algorithm>
#include <charconv>

namespace tidegate::pool {

std::string ParseEndpoint(const std::string& text, EndpointConfig* out) {
  std::string s = text;
  if (s.rfind("http://", 0) == 0) s = s.substr(7);
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
  return {};
}

Endpoint::Endpoint(size_t index, EndpointConfig cfg)
    : index_(index), cfg_(std::move(cfg)), address_(cfg_.Address()) {}

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

bool Endpoint::RecordProbe(bool ok, const std::string& error) {
  bool was = probe_ok_.exchange(ok, std::memory_order_relaxed);
  if (ok) {
    RecordSuccess();
  } else {
    std::lock_guard lock(error_mu_);
    last_error_ = error;
  }
  return was != ok;
}

std::string Endpoint::LastError() const {
  std::lock_guard lock(error_mu_);
  return last_error_;
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
