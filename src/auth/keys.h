// auth/keys.h — API keys and the tenants they name: who may call the gateway, under which
// fairness id, with which objectives, at what rate and concurrency.
//
// Contract:
//  * ParseKeyFile() reads the key file (YAML):
//      keys:
//        - tenant: team-a          # the fairness id its requests get (clients cannot set it)
//          key_env: TEAM_A_KEY     # the key, from an environment variable (or `key: ...`)
//          objectives: [standard, sheddable]   # allowed; default: the priority-0 and
//                                              # sheddable ones (none above standard)
//          rate: 50                # requests/s, optional (token bucket, burst = rate or `burst`)
//          burst: 100
//          concurrency: 20         # requests at once, optional
//    A key shorter than 16 characters, a duplicate key, an unset variable or an unknown field is
//    an error that names the entry, never the key.
//  * KeyTable::Check() decides one request from its Authorization header value and objective:
//    kOk (with the tenant), kMissing / kInvalid (401), kObjectiveDenied (403), kRateLimited /
//    kConcurrencyLimited (429, with a Retry-After). A kOk result holds one concurrency slot
//    until Release() (an RAII Slot). Keys are compared in constant time once found; a key never
//    appears in a message, log or metric — tenants are named by their `tenant`.
//  * Time is a parameter (manual clock in the unit tests).
// Thread-safety: a KeyTable is immutable after parsing except for its per-tenant counters,
// which are atomic or locked; Check() and Release() are safe from any thread.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/clock.h"
#include "common/rate_limit.h"

namespace tidegate::auth {

struct TenantConfig {
  std::string tenant;
  std::string key;
  std::vector<std::string> objectives;  // empty = the default set (see the contract)
  double rate = 0;                      // 0 = unlimited
  double burst = 0;
  int concurrency = 0;  // 0 = unlimited
};

class Tenant {
 public:
  explicit Tenant(TenantConfig cfg);
  const TenantConfig& config() const { return cfg_; }
  bool ObjectiveAllowed(std::string_view objective, int priority) const;
  std::atomic<int> in_flight{0};
  std::unique_ptr<RateLimiter> rate;  // null = unlimited

 private:
  TenantConfig cfg_;
};

enum class Verdict { kOk, kMissing, kInvalid, kObjectiveDenied, kRateLimited, kConcurrencyLimited };
std::string_view VerdictCode(Verdict v);  // "missing_api_key", "invalid_api_key", ...
int VerdictStatus(Verdict v);             // 200, 401, 401, 403, 429, 429

struct CheckResult {
  Verdict verdict = Verdict::kMissing;
  Tenant* tenant = nullptr;  // set for kOk and the limits/objective verdicts
  std::string message;       // for the client (names the tenant, never the key)
  int retry_after_s = -1;
};

class KeyTable {
 public:
  // The objective's name and priority as resolved by the gateway ("" = its default).
  // With check_objective false (e.g. GET /v1/models) the objective is not checked.
  CheckResult Check(std::string_view authorization, std::string_view objective, int priority,
                    Nanos now, bool check_objective = true);
  // Gives back the concurrency slot of a kOk result.
  static void Release(const CheckResult& r);
  size_t size() const { return by_key_.size(); }
  std::vector<std::string> TenantNames() const;

 private:
  friend std::string ParseKeyFile(const std::string&, std::shared_ptr<KeyTable>*,
                                  const std::function<const char*(const char*)>&);
  std::unordered_map<std::string, std::unique_ptr<Tenant>> by_key_;
};

// Parses `yaml_text` (the file's contents). `getenv` resolves key_env (the process environment
// by default). Returns an error message, or "" with *out set.
std::string ParseKeyFile(const std::string& yaml_text, std::shared_ptr<KeyTable>* out,
                         const std::function<const char*(const char*)>& getenv);
// Reads and parses the file at `path`.
std::string LoadKeyFile(const std::string& path, std::shared_ptr<KeyTable>* out);

}  // namespace tidegate::auth
