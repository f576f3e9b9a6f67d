// Built-in filters and scorers (contract in sched/plugins.h).
#include "sched/plugins.h"

#include <algorithm>
#include <atomic>

#include "sched/kv_block_index.h"
#include "sched/latency.h"
#include "sched/prefix_index.h"

namespace tidegate::sched {
namespace {

// ------------------------------------------------------------------------------- filters

class StaleFilter final : public Filter {
 public:
  explicit StaleFilter(bool keep_all_if_all_stale) : keep_all_(keep_all_if_all_stale) {}
  void Apply(SchedContext&, std::vector<Candidate>* cands) override {
    bool any_fresh = false;
    for (const auto& c : *cands) any_fresh |= !c.stale;
    if (!any_fresh && keep_all_) return;
    std::erase_if(*cands, [](const Candidate& c) { return c.stale; });
  }

 private:
  bool keep_all_;
};

class ModelFilter final : public Filter {
 public:
  void Apply(SchedContext& ctx, std::vector<Candidate>* cands) override {
    const RequestInfo& req = *ctx.req;
    if (req.model.empty() && req.adapter.empty()) return;
    std::erase_if(*cands, [&](const Candidate& c) { return !Serves(c, req); });
  }
  EmptyReason EmptiedReason() const override { return EmptyReason::kModelNotServed; }

 private:
  static bool Serves(const Candidate& c, const RequestInfo& req) {
    const pool::EndpointMetrics* m = c.endpoint->MetricsCached();
    if (!m) return true;  // nothing known yet
    if (m->models_listed) {
      return m->ServesModel(req.model) || (!req.adapter.empty() && m->ServesModel(req.adapter));
    }
    bool lora_capable = m->has_lora_info && m->max_lora > 0;
    if (!req.adapter.empty()) {
      if (m->has_lora_info && !lora_capable) return false;
      if (!m->models.empty() && !req.model.empty() && !m->ServesModel(req.model)) return false;
      return true;
    }
    if (m->models.empty() || m->ServesModel(req.model)) return true;
    // The OpenAI "model" may name a LoRA adapter of the base model.
    return m->AdapterRunning(req.model) || m->AdapterWaiting(req.model) || lora_capable;
  }
};

class SaturationFilter final : public Filter {
 public:
  void Apply(SchedContext& ctx, std::vector<Candidate>* cands) override {
    if (ctx.req->priority >= 0) return;
    std::erase_if(*cands,
                  [&](const Candidate& c) { return ctx.detector->Saturation(c, ctx.now) >= 1.0; });
  }
  EmptyReason EmptiedReason() const override { return EmptyReason::kSaturated; }
};

// ------------------------------------------------------------------------------- scorers

// (max−v)/(max−min) over the candidates; 1 for all when they are equal.
template <typename Value>
void LowerIsBetter(std::span<const Candidate> cands, std::span<double> out, Value value) {
  if (cands.empty()) return;
  double lo = value(cands[0]), hi = lo;
  for (const auto& c : cands) {
    double v = value(c);
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  if (hi <= lo) {
    std::fill(out.begin(), out.end(), 1.0);
    return;
  }
  double inv = 1.0 / (hi - lo);
  for (size_t j = 0; j < cands.size(); ++j) out[j] = (hi - value(cands[j])) * inv;
}

class QueueScorer final : public Scorer {
 public:
  explicit QueueScorer(bool count_routed) : count_routed_(count_routed) {}
  void Score(SchedContext&, std::span<const Candidate> cands, std::span<double> out) override {
    // Requests routed since the scrape and not finished yet are queued or running there: a
    // burst within one scrape interval spreads out, a stream of quick requests does not.
    LowerIsBetter(cands, out, [this](const Candidate& c) {
      return c.load.waiting +
             (count_routed_ ? std::max(0, c.routed_since_scrape - c.completed_since_scrape) : 0);
    });
  }

 private:
  bool count_routed_;
};

class KvCacheScorer final : public Scorer {
 public:
  void Score(SchedContext&, std::span<const Candidate> cands, std::span<double> out) override {
    for (size_t j = 0; j < cands.size(); ++j) out[j] = 1.0 - cands[j].load.kv_usage;
  }
};

class RunningScorer final : public Scorer {
 public:
  void Score(SchedContext&, std::span<const Candidate> cands, std::span<double> out) override {
    LowerIsBetter(cands, out, [](const Candidate& c) { return c.load.running; });
  }
};

class ActiveRequestScorer final : public Scorer {
 public:
  void Score(SchedContext&, std::span<const Candidate> cands, std::span<double> out) override {
    LowerIsBetter(cands, out, [](const Candidate& c) { return double(c.in_flight); });
  }
};

class PrefixCacheScorer final : public Scorer {
 public:
  PrefixCacheScorer(size_t block_chars, size_t max_blocks, size_t capacity)
      : block_chars_(block_chars), max_blocks_(max_blocks), index_(capacity) {}

  void Score(SchedContext& ctx, std::span<const Candidate> cands, std::span<double> out) override {
    // The match found (nothing cached anywhere, too: the prefix check counts it) is kept in
    // ctx.prefix_match for the latency-scorer and for the check.
    ctx.prefix_match.assign(cands.size(), 0.0);
    auto hashes = ctx.PromptBlockHashes(block_chars_, max_blocks_);
    if (hashes.empty()) return;
    thread_local std::vector<uint32_t> matched;
    thread_local std::vector<uint32_t> touched;
    if (matched.size() < ctx.pool->size()) matched.resize(ctx.pool->size(), 0);
    index_.Match(hashes, matched, &touched);
    if (touched.empty()) return;
    const double inv = 1.0 / static_cast<double>(hashes.size());
    for (size_t j = 0; j < cands.size(); ++j) out[j] = matched[cands[j].index] * inv;
    ctx.prefix_match.assign(out.begin(), out.end());  // for the latency-scorer
    for (uint32_t t : touched) matched[t] = 0;
    touched.clear();
  }

  void OnSent(SchedContext& ctx, uint32_t endpoint) override {
    // The engine's own cache size, when it reports it (vllm:cache_config_info: num_gpu_blocks ×
    // block_size tokens, at ~4 characters a token), bounds what the index assumes it holds.
    size_t capacity = 0;
    if (auto snap = ctx.pool->at(endpoint).Metrics();
        snap && snap->num_gpu_blocks > 0 && snap->block_size > 0) {
      const double chars = static_cast<double>(snap->num_gpu_blocks) * snap->block_size * 4.0;
      capacity =
          std::max<size_t>(1, static_cast<size_t>(chars / static_cast<double>(block_chars_)));
    }
    index_.Record(endpoint, ctx.PromptBlockHashes(block_chars_, max_blocks_), capacity);
  }

  // Nothing reached the endpoint (or it failed before answering): it holds no new blocks.
  void OnNotServed(SchedContext& ctx, uint32_t endpoint) override {
    index_.Forget(endpoint, ctx.PromptBlockHashes(block_chars_, max_blocks_));
  }

  void OnEndpointGone(uint32_t endpoint) override { index_.DropEndpoint(endpoint); }

 private:
  size_t block_chars_, max_blocks_;
  PrefixIndex index_;
};

// Precise prefix affinity from the engines' own KV events (sched/kv_block_index.h): the share of
// the prompt's blocks in the longest run an endpoint's engine holds, weighted by tier. What an
// engine reports lags what it was sent by a prefill (a burst of one prompt would otherwise find
// no holder and spread over the pool), so a live endpoint scores the larger of what its engine
// holds and what it was sent recently: a small approximate index of the last
// kRecentBlocksPerEndpoint coarse blocks sent there (every kRecentStride-th of the prompt's
// chained block keys, each of which covers the whole prompt up to its block). An endpoint whose
// event feed is not live (never connected, disconnected, re-syncing) is scored by the full
// approximate index instead, kept as prefix-cache-scorer keeps it from what is sent to such
// endpoints (what a live endpoint is sent is not recorded there: when its feed drops, the
// approximate index learns it afresh).
class PrecisePrefixCacheScorer final : public Scorer {
 public:
  static constexpr size_t kRecentStride = 16;              // 256 tokens at 16 a block
  static constexpr size_t kRecentBlocksPerEndpoint = 256;  // ~64k tokens
  static constexpr size_t kDefaultBlockSize = 16;

  PrecisePrefixCacheScorer(KvBlockIndex* index, size_t max_blocks,
                           std::unique_ptr<PrefixCacheScorer> fallback)
      : index_(index),
        max_blocks_(max_blocks),
        fallback_(std::move(fallback)),
        recent_(kRecentBlocksPerEndpoint) {}

  void Score(SchedContext& ctx, std::span<const Candidate> cands, std::span<double> out) override {
    bool any_stale = false;
    for (const Candidate& c : cands) any_stale |= !index_->Live(c.index);
    if (any_stale) fallback_->Score(ctx, cands, out);  // fills ctx.prefix_match too
    if (ctx.prefix_match.size() != cands.size()) ctx.prefix_match.assign(cands.size(), 0.0);
    auto keys = Keys(ctx);
    if (keys.empty()) return;  // a prompt shorter than one block
    thread_local std::vector<uint32_t> matched;
    thread_local std::vector<uint32_t> touched;
    thread_local std::vector<double> held;
    thread_local std::vector<uint32_t> held_touched;
    const size_t n = ctx.pool->size();
    if (matched.size() < n) matched.resize(n, 0);
    if (held.size() < n) held.resize(n, 0);
    index_->Match(keys, held, &held_touched);
    auto coarse = Coarse(keys);
    if (!coarse.empty()) recent_.Match(coarse, matched, &touched);
    const double inv_keys = 1.0 / static_cast<double>(keys.size());
    const double inv_recent = coarse.empty() ? 0 : 1.0 / static_cast<double>(coarse.size());
    for (size_t j = 0; j < cands.size(); ++j) {
      const uint32_t e = cands[j].index;
      if (index_->Live(e)) out[j] = std::max(held[e] * inv_keys, matched[e] * inv_recent);
    }
    ctx.prefix_match.assign(out.begin(), out.end());  // for the latency-scorer
    for (uint32_t t : touched) matched[t] = 0;
    for (uint32_t t : held_touched) held[t] = 0;
    touched.clear();
    held_touched.clear();
  }

  void OnSent(SchedContext& ctx, uint32_t endpoint) override {
    if (!index_->Live(endpoint)) fallback_->OnSent(ctx, endpoint);
    if (auto coarse = Coarse(Keys(ctx)); !coarse.empty()) recent_.Record(endpoint, coarse);
  }
  void OnNotServed(SchedContext& ctx, uint32_t endpoint) override {
    if (!index_->Live(endpoint)) fallback_->OnNotServed(ctx, endpoint);
    if (auto coarse = Coarse(Keys(ctx)); !coarse.empty()) recent_.Forget(endpoint, coarse);
  }
  void OnEndpointGone(uint32_t endpoint) override {
    fallback_->OnEndpointGone(endpoint);
    recent_.DropEndpoint(endpoint);
  }

 private:
  // The prompt's block keys at the engines' block size (vLLM's default, 16, until an engine has
  // stored a block), so that recent sends count from the first request on.
  std::span<const uint64_t> Keys(SchedContext& ctx) const {
    const size_t bs = index_->block_size();
    return ctx.PromptTokenKeys(bs == 0 ? kDefaultBlockSize : bs, max_blocks_);
  }
  // Every kRecentStride-th key (thread-local scratch, valid until the next call).
  static std::span<const uint64_t> Coarse(std::span<const uint64_t> keys) {
    thread_local std::vector<uint64_t> coarse;
    coarse.clear();
    for (size_t i = kRecentStride - 1; i < keys.size(); i += kRecentStride)
      coarse.push_back(keys[i]);
    return coarse;
  }

  KvBlockIndex* index_;
  size_t max_blocks_;
  std::unique_ptr<PrefixCacheScorer> fallback_;
  PrefixIndex recent_;
};

class LoraAffinityScorer final : public Scorer {
 public:
  void Score(SchedContext& ctx, std::span<const Candidate> cands, std::span<double> out) override {
    std::string_view adapter = ctx.req->adapter;
    if (adapter.empty()) {
      // In the OpenAI API a LoRA adapter is requested by naming it as the model: it is one if
      // some candidate lists it as an adapter (served, or in its LoRA metrics).
      std::string_view model = ctx.req->model;
      bool is_adapter = false;
      for (size_t j = 0; j < cands.size() && !is_adapter && !model.empty(); ++j) {
        const pool::EndpointMetrics* m = cands[j].endpoint->MetricsCached();
        is_adapter =
            m && (m->ServesAdapter(model) || m->AdapterRunning(model) || m->AdapterWaiting(model));
      }
      if (!is_adapter) return;
      adapter = model;
    }
    for (size_t j = 0; j < cands.size(); ++j) {
      const pool::EndpointMetrics* m = cands[j].endpoint->MetricsCached();
      if (!m) continue;
      if (m->AdapterRunning(adapter)) {
        out[j] = 1.0;
      } else if (m->has_lora_info && m->max_lora > 0 &&
                 m->running_lora_adapters.size() + m->waiting_lora_adapters.size() <
                     static_cast<size_t>(m->max_lora)) {
        out[j] = 0.8;
      } else if (m->AdapterWaiting(adapter)) {
        out[j] = 0.6;
      }
    }
  }
};

class SessionAffinityScorer final : public Scorer {
 public:
  explicit SessionAffinityScorer(size_t capacity) {
    size_t n = 1;
    while (n < capacity) n <<= 1;
    mask_ = n - 1;
    slots_ = std::make_unique<std::atomic<uint64_t>[]>(n);
  }

  void Score(SchedContext& ctx, std::span<const Candidate> cands, std::span<double> out) override {
    if (ctx.req->session_id.empty()) return;
    uint64_t key = Key(ctx.req->session_id);
    uint64_t v = slots_[key & mask_].load(std::memory_order_relaxed);
    if ((v >> kIdBits) != (key >> kIdBits) || (v & kIdMask) == 0) return;
    uint32_t ep = static_cast<uint32_t>((v & kIdMask) - 1);
    for (size_t j = 0; j < cands.size(); ++j)
      if (cands[j].index == ep) out[j] = 1.0;
  }

  void OnSent(SchedContext& ctx, uint32_t endpoint) override {
    if (ctx.req->session_id.empty() || endpoint + 1 >= kIdMask) return;
    uint64_t key = Key(ctx.req->session_id);
    uint64_t v = ((key >> kIdBits) << kIdBits) | (uint64_t{endpoint} + 1);
    slots_[key & mask_].store(v, std::memory_order_relaxed);
  }

 private:
  static constexpr int kIdBits = 24;
  static constexpr uint64_t kIdMask = (uint64_t{1} << kIdBits) - 1;
  static uint64_t Key(std::string_view s) { return HashBytes64(s, 0x5e5510ULL); }
  std::unique_ptr<std::atomic<uint64_t>[]> slots_;
  uint64_t mask_ = 0;
};

// Rotation: the candidate at a shared counter's position scores 1, the next ones less, so the
// fallback list continues the rotation.
class RoundRobinScorer final : public Scorer {
 public:
  void Score(SchedContext&, std::span<const Candidate> cands, std::span<double> out) override {
    const size_t m = cands.size();
    const size_t start = next_.fetch_add(1, std::memory_order_relaxed) % m;
    for (size_t k = 0; k < m; ++k)
      out[(start + k) % m] = 1.0 - static_cast<double>(k) / static_cast<double>(m);
  }

 private:
  std::atomic<size_t> next_{0};
};

// ------------------------------------------------------------------------------- registration

template <typename T, typename... Args>
std::string Make(std::unique_ptr<Plugin>* out, Args&&... args) {
  *out = std::make_unique<T>(std::forward<Args>(args)...);
  return {};
}

}  // namespace

void RegisterBuiltinPlugins(PluginRegistry* r) {
  RegisterLatencyPlugins(r);
  r->Register("stale-filter", [](const Params& p, std::unique_ptr<Plugin>* out) {
    bool keep = true;
    if (auto e = p.GetBool("keepAllIfAllStale", &keep); !e.empty()) return e;
    return Make<StaleFilter>(out, keep);
  });
  r->Register("model-filter",
              [](const Params&, std::unique_ptr<Plugin>* out) { return Make<ModelFilter>(out); });
  r->Register("saturation-filter", [](const Params&, std::unique_ptr<Plugin>* out) {
    return Make<SaturationFilter>(out);
  });
  r->Register("queue-scorer", [](const Params& p, std::unique_ptr<Plugin>* out) {
    bool count_routed = true;
    if (auto e = p.GetBool("countRouted", &count_routed); !e.empty()) return e;
    return Make<QueueScorer>(out, count_routed);
  });
  r->Register("kv-cache-utilization-scorer",
              [](const Params&, std::unique_ptr<Plugin>* out) { return Make<KvCacheScorer>(out); });
  r->Register("running-requests-scorer",
              [](const Params&, std::unique_ptr<Plugin>* out) { return Make<RunningScorer>(out); });
  r->Register("round-robin-scorer", [](const Params&, std::unique_ptr<Plugin>* out) {
    return Make<RoundRobinScorer>(out);
  });
  r->Register("active-request-scorer", [](const Params&, std::unique_ptr<Plugin>* out) {
    return Make<ActiveRequestScorer>(out);
  });
  r->Register("prefix-cache-scorer", [](const Params& p, std::unique_ptr<Plugin>* out) {
    int64_t block = 64, max_blocks = 256, capacity = 31250;
    if (auto e = p.GetInt("blockSize", &block, 1, 1 << 20); !e.empty()) return e;
    if (auto e = p.GetInt("maxPrefixBlocksToMatch", &max_blocks, 1, 1 << 20); !e.empty()) return e;
    if (auto e = p.GetInt("lruCapacityPerServer", &capacity, 1, int64_t{1} << 32); !e.empty())
      return e;
    return Make<PrefixCacheScorer>(out, block, max_blocks, capacity);
  });
  // Parameters: maxPrefixBlocksToMatch (engine blocks, default 2048), and the fallback's
  // blockSize / lruCapacityPerServer as for prefix-cache-scorer.
  r->Register("precise-prefix-cache-scorer", [](const Params& p, std::unique_ptr<Plugin>* out) {
    int64_t block = 64, max_blocks = 2048, capacity = 31250;
    constexpr int64_t kFallbackMaxBlocks = 256;
    if (auto e = p.GetInt("blockSize", &block, 1, 1 << 20); !e.empty()) return e;
    if (auto e = p.GetInt("maxPrefixBlocksToMatch", &max_blocks, 1, 1 << 20); !e.empty()) return e;
    if (auto e = p.GetInt("lruCapacityPerServer", &capacity, 1, int64_t{1} << 32); !e.empty())
      return e;
    return Make<PrecisePrefixCacheScorer>(
        out, &SharedKvBlockIndex(), max_blocks,
        std::make_unique<PrefixCacheScorer>(block, kFallbackMaxBlocks, capacity));
  });
  r->Register("lora-affinity-scorer", [](const Params&, std::unique_ptr<Plugin>* out) {
    return Make<LoraAffinityScorer>(out);
  });
  r->Register("session-affinity-scorer", [](const Params& p, std::unique_ptr<Plugin>* out) {
    int64_t capacity = 65536;
    if (auto e = p.GetInt("capacity", &capacity, 1, int64_t{1} << 26); !e.empty()) return e;
    return Make<SessionAffinityScorer>(out, static_cast<size_t>(capacity));
  });
  r->Register("max-score-picker", [](const Params&, std::unique_ptr<Plugin>* out) {
    return Make<MarkerPlugin>(out, PluginKind::kPicker);
  });
  r->Register("single-profile-handler", [](const Params&, std::unique_ptr<Plugin>* out) {
    return Make<MarkerPlugin>(out, PluginKind::kProfileHandler);
  });
}

}  // namespace tidegate::sched
