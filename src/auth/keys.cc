#include "auth/keys.h"

#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

namespace tidegate::auth {
namespace {

// Equal in time independent of where the strings differ (both are the same length here).
bool ConstantTimeEqual(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i)
    diff |= static_cast<unsigned char>(a[i]) ^ static_cast<unsigned char>(b[i]);
  return diff == 0;
}

std::string_view BearerToken(std::string_view h) {
  while (!h.empty() && h.front() == ' ') h.remove_prefix(1);
  if (h.size() < 7) return {};
  for (size_t i = 0; i < 6; ++i)
    if ((h[i] | 0x20) != "bearer"[i]) return {};
  if (h[6] != ' ') return {};
  h.remove_prefix(7);
  while (!h.empty() && h.front() == ' ') h.remove_prefix(1);
  while (!h.empty() && h.back() == ' ') h.remove_suffix(1);
  return h;
}

}  // namespace

Tenant::Tenant(TenantConfig cfg) : cfg_(std::move(cfg)) {
  if (cfg_.rate > 0)
    rate = std::make_unique<RateLimiter>(cfg_.rate, cfg_.burst > 0 ? cfg_.burst : cfg_.rate);
}

bool Tenant::ObjectiveAllowed(std::string_view objective, int priority) const {
  if (cfg_.objectives.empty()) return priority <= 0;
  for (const auto& o : cfg_.objectives)
    if (o == objective) return true;
  return false;
}

std::string_view VerdictCode(Verdict v) {
  switch (v) {
    case Verdict::kOk:
      return "ok";
    case Verdict::kMissing:
      return "missing_api_key";
    case Verdict::kInvalid:
      return "invalid_api_key";
    case Verdict::kObjectiveDenied:
      return "objective_not_allowed";
    case Verdict::kRateLimited:
      return "rate_limited";
    case Verdict::kConcurrencyLimited:
      return "concurrency_limited";
  }
  return "unknown";
}

int VerdictStatus(Verdict v) {
  switch (v) {
    case Verdict::kOk:
      return 200;
    case Verdict::kMissing:
    case Verdict::kInvalid:
      return 401;
    case Verdict::kObjectiveDenied:
      return 403;
    case Verdict::kRateLimited:
    case Verdict::kConcurrencyLimited:
      return 429;
  }
  return 500;
}

CheckResult KeyTable::Check(std::string_view authorization, std::string_view objective,
                            int priority, Nanos now, bool check_objective) {
  CheckResult r;
  const std::string_view key = BearerToken(authorization);
  if (key.empty()) {
    r.verdict = Verdict::kMissing;
    r.message = "this gateway needs an API key: send Authorization: Bearer <key>";
    return r;
  }
  auto it = by_key_.find(std::string(key));
  if (it == by_key_.end() || !ConstantTimeEqual(it->first, key)) {
    r.verdict = Verdict::kInvalid;
    r.message = "the API key is not valid";
    return r;
  }
  Tenant& t = *it->second;
  r.tenant = &t;
  if (check_objective && !t.ObjectiveAllowed(objective, priority)) {
    r.verdict = Verdict::kObjectiveDenied;
    r.message = "tenant '" + t.config().tenant + "' may not use objective '" +
                std::string(objective) + "'" +
                (t.config().objectives.empty()
                     ? std::string(" (its key allows objectives up to priority 0)")
                     : "");
    return r;
  }
  if (t.rate && !t.rate->Allow(now)) {
    r.verdict = Verdict::kRateLimited;
    r.message = "tenant '" + t.config().tenant + "' is over its rate of " +
                std::to_string(static_cast<int64_t>(t.config().rate)) + " requests/s";
    r.retry_after_s = 1;
    return r;
  }
  if (t.config().concurrency > 0) {
    if (t.in_flight.fetch_add(1, std::memory_order_relaxed) >= t.config().concurrency) {
      t.in_flight.fetch_sub(1, std::memory_order_relaxed);
      r.verdict = Verdict::kConcurrencyLimited;
      r.message = "tenant '" + t.config().tenant + "' already has " +
                  std::to_string(t.config().concurrency) + " requests in flight (its limit)";
      r.retry_after_s = 1;
      return r;
    }
  }
  r.verdict = Verdict::kOk;
  return r;
}

void KeyTable::Release(const CheckResult& r) {
  if (r.verdict == Verdict::kOk && r.tenant && r.tenant->config().concurrency > 0)
    r.tenant->in_flight.fetch_sub(1, std::memory_order_relaxed);
}

std::vector<std::string> KeyTable::TenantNames() const {
  std::set<std::string> names;
  for (const auto& [k, t] : by_key_) names.insert(t->config().tenant);
  return {names.begin(), names.end()};
}

std::string ParseKeyFile(const std::string& yaml_text, std::shared_ptr<KeyTable>* out,
                         const std::function<const char*(const char*)>& getenv) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const std::exception& e) {
    return std::string("not YAML: ") + e.what();
  }
  if (!root.IsMap() || !root["keys"] || !root["keys"].IsSequence())
    return "expected a 'keys:' list";
  auto table = std::make_shared<KeyTable>();
  size_t index = 0;
  try {
    for (const auto& e : root["keys"]) {
      ++index;
      const std::string where = "keys[" + std::to_string(index) + "]";
      if (!e.IsMap()) return where + ": expected a mapping";
      static const std::set<std::string> kFields = {"tenant", "key",   "key_env",    "objectives",
                                                    "rate",   "burst", "concurrency"};
      for (const auto& kv : e) {
        const std::string f = kv.first.as<std::string>();
        if (!kFields.count(f))
          return where + ": unknown field '" + f +
                 "' (known: tenant, key, key_env, objectives, rate, burst, concurrency)";
      }
      TenantConfig c;
      if (!e["tenant"]) return where + ": 'tenant' is required";
      c.tenant = e["tenant"].as<std::string>();
      const std::string named = where + " (tenant '" + c.tenant + "')";
      if (c.tenant.empty()) return where + ": 'tenant' must not be empty";
      if (e["key"] && e["key_env"]) return named + ": give 'key' or 'key_env', not both";
      if (e["key_env"]) {
        const std::string var = e["key_env"].as<std::string>();
        const char* v = getenv(var.c_str());
        if (!v || !*v) return named + ": environment variable " + var + " is not set";
        c.key = v;
      } else if (e["key"]) {
        c.key = e["key"].as<std::string>();
      } else {
        return named + ": 'key_env' (or 'key') is required";
      }
      if (c.key.size() < 16) return named + ": the key is shorter than 16 characters";
      if (e["objectives"]) {
        if (!e["objectives"].IsSequence()) return named + ": 'objectives' must be a list";
        for (const auto& o : e["objectives"]) c.objectives.push_back(o.as<std::string>());
      }
      if (e["rate"]) c.rate = e["rate"].as<double>();
      if (e["burst"]) c.burst = e["burst"].as<double>();
      if (e["concurrency"]) c.concurrency = e["concurrency"].as<int>();
      if (c.rate < 0 || c.burst < 0 || c.concurrency < 0)
        return named + ": rate, burst and concurrency must be ≥ 0";
      if (table->by_key_.count(c.key)) return named + ": the same key is given twice";
      std::string key = c.key;
      table->by_key_.emplace(std::move(key), std::make_unique<Tenant>(std::move(c)));
    }
  } catch (const YAML::Exception& ex) {
    return "keys[" + std::to_string(index) + "]: " + ex.what();
  }
  if (table->by_key_.empty()) return "the 'keys:' list is empty";
  *out = std::move(table);
  return {};
}

std::string LoadKeyFile(const std::string& path, std::shared_ptr<KeyTable>* out) {
  std::ifstream in(path);
  if (!in) return "cannot read the key file " + path;
  std::stringstream ss;
  ss << in.rdbuf();
  std::string err = ParseKeyFile(ss.str(), out, [](const char* n) { return std::getenv(n); });
  return err.empty() ? err : path + ": " + err;
}

}  // namespace tidegate::auth
