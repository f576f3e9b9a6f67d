// pool/endpoint.h — the pool of upstream model servers and each one's live state.
//
// Contract: the pool is a table of slots; an endpoint's slot index is its identity everywhere
// else (pickers, metrics, connection pools). Endpoints come and go at run time (discovery calls
// Reconcile()): a new one takes a free slot or a new one at the end; a removed one turns
// *draining* (it takes no new request, is not listed, and finishes what it has in flight) and
// then *gone* once nothing is in flight. A gone slot is reused by a later endpoint only after
// kReuseAfter, and then holds a new Endpoint object (a new uid()): per-endpoint state kept
// elsewhere (connection pools, prefix index, latency models, dashboards) is keyed by slot and
// must be dropped when the slot's uid() changes. A replaced object is kept for kRetainReplaced
// (of the clock passed to Reconcile/Sweep) before it is deleted, and slots and size() only grow
// (up to kMaxEndpoints): an Endpoint& obtained from at(i) stays valid that long, far longer than
// a decision takes. REQUIRES: no reference is held longer than kRetainReplaced after its endpoint
// is gone (requests in flight keep it draining, so they are never the ones holding it). Loops over
// the pool run i < size() and skip endpoints that are not Active(). Mutable state — requests this
// gateway has in flight, health from probes, passive failure back-off — is kept in atomics so the
// data plane reads it without locks. An endpoint is "available" when its last probe succeeded (or
// none ran yet) and it is not inside a passive failure back-off window.
//
// Model-server metrics: the scraper publishes an EndpointMetrics snapshot with PublishMetrics()
// (or a failure with RecordScrapeError()). The scalar figures the scheduler reads on every
// decision (waiting, running, KV usage, scrape time, LoRA slots) are kept in a seqlock: readers
// (Load()) do two loads of a sequence counter around plain relaxed loads and never write shared
// memory, so hundreds of endpoints can be read per decision from every event loop without
// cache-line ping-pong or reference counting; the writer (the scraper, ~20 Hz) is serialised by
// a mutex. The full snapshot (adapter lists, model names — needed only for LoRA/model routing
// and /v1/pool) is a shared_ptr<const EndpointMetrics> swapped under the same mutex and copied
// out by Metrics(). A snapshot is stale when none was published yet, the last scrape failed, or
// it is older than the staleness limit; stale endpoints count as saturated.
// Thread-safety: all methods are safe from any thread.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "pool/engine_metrics.h"

namespace tidegate::pool {

struct EndpointConfig {
  std::string host;
  uint16_t port = 0;
  // Metrics mapping (pool/engine_metrics.h); "" or "auto" = recognise it (pool/scraper.h).
  std::string engine = {};
  uint16_t metrics_port = 0;      // 0 = the engine's default (usually the inference port)
  std::string metrics_path = {};  // "" = the engine's default
  bool tls = false;               // an https:// endpoint: requests, metrics and probes over TLS
  std::string Address() const { return host + ":" + std::to_string(port); }
};

// What the scraper found out about where an endpoint's metrics are (for /v1/pool and logs).
struct MetricsSource {
  std::string engine;           // configured or recognised engine; "" while unknown
  bool detected = false;        // recognised by auto-detection (not configured)
  std::string url;              // "host:port/path" being scraped; "" while none
  bool in_flight_only = false;  // no usable metrics: routed on in-flight accounting alone
  std::string warning;          // why (empty when the metrics are read)
};

// Parses "host:port" (IPv6 as "[::1]:8000"), optionally after "http://" or "https://" (then
// `tls`). Returns an error message or empty on success.
std::string ParseEndpoint(const std::string& text, EndpointConfig* out);

// The scalar part of the latest metrics snapshot, read lock-free.
struct LoadSnapshot {
  double waiting = 0;
  double running = 0;
  double kv_usage = 0;
  Nanos scrape_time{0};
  int max_lora = 0;            // 0 when unknown
  int running_lora_count = 0;  // adapters in the running batch
  bool has_metrics = false;    // a snapshot was published
  bool scrape_failed = false;  // the latest scrape failed (RecordScrapeError)
  bool has_kv = false;
  // The engine's batch limit as last seen: its running count in the latest snapshot that had
  // requests waiting (0 until such a snapshot arrived). See pool/saturation.h.
  double batch_limit = 0;

  bool Stale(Nanos now, Nanos limit) const {
    return !has_metrics || scrape_failed || now - scrape_time > limit;
  }
};

class Endpoint {
 public:
  Endpoint(size_t index, EndpointConfig cfg);

  // Membership in the pool (see the header comment): only active endpoints take requests.
  enum class Membership : uint8_t { kActive, kDraining, kGone };
  Membership membership() const {
    return static_cast<Membership>(membership_.load(std::memory_order_acquire));
  }
  bool Active() const { return membership() == Membership::kActive; }
  // Unique across every endpoint object ever made: tells a reused slot from its predecessor.
  uint64_t uid() const { return uid_; }

  size_t index() const { return index_; }
  const std::string& address() const { return address_; }
  const EndpointConfig& config() const { return cfg_; }

  int InFlight() const { return in_flight_.load(std::memory_order_relaxed); }
  // Of those, the sheddable ones (priority < 0: async filler), for the class split of
  // utilisation on the dashboard.
  int SheddableInFlight() const { return sheddable_in_flight_.load(std::memory_order_relaxed); }
  void AddInFlight(int delta, bool sheddable = false) {
    in_flight_.fetch_add(delta, std::memory_order_relaxed);
    if (sheddable) sheddable_in_flight_.fetch_add(delta, std::memory_order_relaxed);
  }

  bool Available(Nanos now) const {
    return Active() && probe_ok_.load(std::memory_order_relaxed) &&
           now.count() >= down_until_.load(std::memory_order_relaxed) &&
           now.count() >= ejected_until_.load(std::memory_order_relaxed);
  }
  // When the endpoint becomes available again (0 if it is available or unknown).
  Nanos DownUntil() const { return Nanos{down_until_.load(std::memory_order_relaxed)}; }
  bool ProbeOk() const { return probe_ok_.load(std::memory_order_relaxed); }

  // Passive health: a connection-level failure starts an exponential back-off (1 s doubling to
  // 10 s); a success clears it.
  void RecordConnectFailure(Nanos now);
  void RecordSuccess();
  // Outlier ejection (as Envoy's): a request that timed out before its response head, a
  // connection closed or reset by the server, or a response that is not HTTP counts as a
  // failure; `failures` of them in a row (none more than `window` apart) eject the endpoint
  // for base × (times ejected), at most `max`. Health probes do not end an ejection (a server
  // whose /health answers while its requests hang is exactly the case), a success resets the
  // count. Returns true when this failure ejected it.
  struct OutlierConfig {
    int failures = 3;  // 0 = never eject
    Nanos window = std::chrono::seconds(30);
    Nanos base = std::chrono::seconds(5);
    Nanos max = std::chrono::seconds(60);
  };
  bool RecordUpstreamFailure(Nanos now, const OutlierConfig& cfg, std::string_view reason);
  // A response head arrived from it: the failure count starts again.
  void RecordServed() { outlier_failures_.store(0, std::memory_order_relaxed); }
  bool Ejected(Nanos now) const {
    return now.count() < ejected_until_.load(std::memory_order_relaxed);
  }
  Nanos EjectedUntil() const { return Nanos{ejected_until_.load(std::memory_order_relaxed)}; }
  int Ejections() const { return ejections_.load(std::memory_order_relaxed); }
  std::string EjectionReason() const;

  // Active health: result of a probe. An endpoint is marked down after
  // kProbeFailuresToMarkDown consecutive failed probes and up after one success.
  // Returns true if the probe verdict changed.
  static constexpr int kProbeFailuresToMarkDown = 2;
  bool RecordProbe(bool ok, const std::string& error);
  std::string LastError() const;

  // The models (base and LoRA adapters) the server lists on GET /v1/models; empty = unknown.
  // `objects` are the list's entries as JSON text (for the gateway's merged /v1/models).
  // `adapters` are the entries that name a `parent` model (vLLM's LoRA adapters), and
  // `parents_known` says whether the list carries `parent` at all (then `adapters` is the
  // whole truth). `owner` is the first entry's `owned_by` (a hint for engine detection).
  struct ServedList {
    std::vector<std::string> models, objects, adapters;
    bool parents_known = false;
    std::string owner;
  };
  void SetServedModels(ServedList list);
  void SetServedModels(std::vector<std::string> models, std::vector<std::string> objects = {}) {
    SetServedModels(ServedList{std::move(models), std::move(objects), {}, false, {}});
  }
  std::vector<std::string> ServedModels() const;
  // The adapters named by `parent` and whether the list had `parent` fields (see above).
  std::vector<std::string> ServedAdapters(bool* parents_known) const;
  std::string ServedOwner() const;

  void SetMetricsSource(MetricsSource source);
  MetricsSource GetMetricsSource() const;
  std::vector<std::string> ServedModelObjects() const;
  bool ModelsKnown() const { return models_known_.load(std::memory_order_acquire); }

  // --- Model-server metrics (see the header comment) ---
  // Publishes a successful scrape; clears the scrape error and the routed-since-scrape count.
  void PublishMetrics(std::shared_ptr<const EndpointMetrics> metrics);
  void PublishMetrics(EndpointMetrics metrics) {
    PublishMetrics(std::make_shared<const EndpointMetrics>(std::move(metrics)));
  }
  // Records a failed scrape: the endpoint is stale until the next successful one.
  void RecordScrapeError(Nanos now, std::string error);
  LoadSnapshot Load() const;
  // The full latest snapshot (nullptr before the first successful scrape).
  std::shared_ptr<const EndpointMetrics> Metrics() const;
  // The same snapshot for the hot path: served from a per-thread cache keyed by the publish
  // generation, so a decision touches no shared reference count or mutex unless a new scrape
  // landed. Null before the first scrape. The pointer stays valid until this thread's next
  // MetricsCached() call for this endpoint.
  const EndpointMetrics* MetricsCached() const;
  std::string LastScrapeError() const;
  Nanos LastScrapeErrorTime() const {
    return Nanos{scrape_error_at_.load(std::memory_order_relaxed)};
  }
  bool Stale(Nanos now, Nanos limit) const { return Load().Stale(now, limit); }
  // Requests routed here since the last published scrape, and requests that finished here since
  // then: they let the scheduler and the saturation detector account for what happened within
  // one scrape interval (a burst, a wave of completions). Both reset on PublishMetrics().
  // UnnoteRouted() takes back a routing that never reached the server (a failed connect).
  // (const: bookkeeping only.)
  void NoteRouted() const { routed_since_scrape_.fetch_add(1, std::memory_order_relaxed); }
  void UnnoteRouted() const { routed_since_scrape_.fetch_sub(1, std::memory_order_relaxed); }
  void NoteCompleted() const { completed_since_scrape_.fetch_add(1, std::memory_order_relaxed); }
  int RoutedSinceScrape() const {
    return std::max(0, routed_since_scrape_.load(std::memory_order_relaxed));
  }
  int CompletedSinceScrape() const {
    return completed_since_scrape_.load(std::memory_order_relaxed);
  }

  // The prefix index's check against the engine's own counters: the scheduler notes, for each
  // request sent here, the prompt tokens and how many of them its prefix index predicted cached
  // (NotePrefixPrediction); PrefixCheck() sets that against the engine's
  // vllm:prefix_cache_hits_total / _queries_total since the first scrape that carried them (the
  // engine's figure includes traffic from other gateways). Rates are -1 without data.
  void NotePrefixPrediction(double predicted_hit_tokens, double prompt_tokens) const;
  struct PrefixCheckFigures {
    double predicted_hit_tokens = 0, predicted_prompt_tokens = 0;
    double engine_hit_tokens = -1, engine_query_tokens = -1;  // since the baseline
    double PredictedRate() const {
      return predicted_prompt_tokens > 0 ? predicted_hit_tokens / predicted_prompt_tokens : -1;
    }
    double EngineRate() const {
      return engine_query_tokens > 0 ? engine_hit_tokens / engine_query_tokens : -1;
    }
  };
  PrefixCheckFigures PrefixCheck() const;

 private:
  friend class Pool;
  size_t index_;
  EndpointConfig cfg_;
  std::atomic<uint8_t> membership_{static_cast<uint8_t>(Membership::kActive)};
  std::atomic<int64_t> gone_since_{0};  // when it turned gone (Pool's clock)
  std::string address_;
  std::atomic<int> in_flight_{0};
  std::atomic<int> sheddable_in_flight_{0};
  std::atomic<bool> probe_ok_{true};
  std::atomic<int> probe_failures_{0};
  std::vector<std::string> served_models_;    // guarded by error_mu_
  std::vector<std::string> served_objects_;   // guarded by error_mu_
  std::vector<std::string> served_adapters_;  // guarded by error_mu_
  bool served_parents_known_ = false;         // guarded by error_mu_
  std::string served_owner_;                  // guarded by error_mu_
  MetricsSource metrics_source_;              // guarded by error_mu_
  std::atomic<bool> models_known_{false};
  std::atomic<int64_t> down_until_{0};
  std::atomic<int> consecutive_failures_{0};
  std::atomic<int> outlier_failures_{0};
  std::atomic<int64_t> last_outlier_failure_{0};
  std::atomic<int64_t> ejected_until_{0};
  std::atomic<int> ejections_{0};
  std::string ejection_reason_;  // guarded by error_mu_
  mutable std::mutex error_mu_;
  std::string last_error_;

  // Seqlock-protected scalars (odd seq = write in progress).
  std::atomic<uint32_t> seq_{0};
  std::atomic<double> m_waiting_{0}, m_running_{0}, m_kv_{0};
  std::atomic<int64_t> m_scrape_ns_{0};
  std::atomic<int32_t> m_max_lora_{0}, m_running_lora_{0};
  std::atomic<uint8_t> m_flags_{0};
  std::atomic<double> m_batch_limit_{0};
  mutable std::atomic<int> routed_since_scrape_{0};
  mutable std::atomic<int> completed_since_scrape_{0};
  mutable std::atomic<double> predicted_hit_tokens_{0}, predicted_prompt_tokens_{0};
  double engine_prefix_base_hits_ = -1, engine_prefix_base_queries_ = -1;  // under metrics_mu_
  std::atomic<int64_t> scrape_error_at_{0};
  const uint64_t uid_;                    // unique across all endpoints ever made
  std::atomic<uint64_t> metrics_gen_{0};  // bumped after each PublishMetrics
  mutable std::mutex metrics_mu_;         // serialises writers; guards the two fields below
  std::shared_ptr<const EndpointMetrics> metrics_;
  std::string scrape_error_;
};

// Two endpoint configurations name the same server (the same address, scheme and metrics
// settings); Reconcile() matches by this.
bool SameServer(const EndpointConfig& a, const EndpointConfig& b);

class Pool {
 public:
  static constexpr size_t kMaxEndpoints = 4096;
  static constexpr Nanos kReuseAfter = std::chrono::seconds(60);
  static constexpr Nanos kRetainReplaced = std::chrono::minutes(10);

  explicit Pool(const std::vector<EndpointConfig>& endpoints);
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  // Slots in use so far (active, draining or gone); only grows.
  size_t size() const { return size_.load(std::memory_order_acquire); }
  Endpoint& at(size_t i) { return *slots_[i].load(std::memory_order_acquire); }
  const Endpoint& at(size_t i) const { return *slots_[i].load(std::memory_order_acquire); }
  size_t ActiveCount() const;
  size_t AvailableCount(Nanos now) const;
  // Earliest time any endpoint leaves its back-off; used for Retry-After estimates.
  Nanos EarliestRecovery() const;
  // The active endpoint with this address ("host:port"), or null.
  Endpoint* FindActive(std::string_view address);
  // Bumped by every membership change (an endpoint added, drained, reactivated or gone).
  uint64_t Version() const { return version_.load(std::memory_order_acquire); }

  struct Change {
    std::vector<size_t> added;         // new endpoints, or draining ones taken back (reactivated)
    std::vector<size_t> removed;       // now draining
    std::vector<size_t> gone;          // drained: nothing in flight any more
    std::vector<std::string> refused;  // could not be added (the table is full), with why
    bool empty() const { return added.empty() && removed.empty() && gone.empty(); }
  };
  // Makes the active set equal `desired` (matched by SameServer; duplicates merged): endpoints
  // not in it start draining, missing ones are added, draining ones named again are taken back.
  // Also sweeps (below). Serialised with the other membership calls; cheap when nothing changed.
  Change Reconcile(const std::vector<EndpointConfig>& desired, Nanos now);
  // Draining endpoints with nothing in flight turn gone; replaced objects past kRetainReplaced
  // are freed. Call periodically (the gateway does every second).
  Change Sweep(Nanos now);
  // Called after every change, on the thread that made it, with the membership lock held: it
  // must not call back into membership methods. Set before serving.
  void OnChange(std::function<void(const Change&)> listener) { listener_ = std::move(listener); }

 private:
  size_t AddLocked(const EndpointConfig& cfg, Nanos now, Change* change);
  void SweepLocked(Nanos now, Change* change);

  std::unique_ptr<std::atomic<Endpoint*>[]> slots_;
  std::atomic<size_t> size_{0};
  std::atomic<uint64_t> version_{0};
  std::mutex mu_;  // serialises membership changes; guards the owners below
  std::vector<std::unique_ptr<Endpoint>> owned_;  // by slot
  std::vector<std::pair<Nanos, std::unique_ptr<Endpoint>>> replaced_;
  std::function<void(const Change&)> listener_;
};

}  // namespace tidegate::pool
