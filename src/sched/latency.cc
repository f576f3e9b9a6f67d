// sched/latency.cc — see latency.h.
#include "sched/latency.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

namespace tidegate::sched {

// ---------------------------------------------------------------------------------------------
// The model

LatencyModel::LatencyModel(LatencyVector prior, LatencyModelConfig cfg) : cfg_(cfg) {
  Reset(prior);
}

void LatencyModel::Reset(const LatencyVector& prior) {
  std::lock_guard lock(mu_);
  w_ = prior;
  p_ = {};
  q_ = 0;
  mad_ = 1;
  for (int i = 0; i < kLatencyDim; ++i) {
    p_[i][i] = cfg_.prior_var;
    pub_w_[i].store(w_[i], std::memory_order_relaxed);
  }
  pub_q_.store(0, std::memory_order_relaxed);
  samples_.store(0, std::memory_order_relaxed);
}

double LatencyModel::PredictMean(const LatencyVector& x) const {
  double y = 0;
  for (int i = 0; i < kLatencyDim; ++i) y += pub_w_[i].load(std::memory_order_relaxed) * x[i];
  return y;
}

double LatencyModel::Predict(const LatencyVector& x) const {
  return std::max(0.0, PredictMean(x) + pub_q_.load(std::memory_order_relaxed));
}

LatencyVector LatencyModel::weights() const {
  LatencyVector w;
  for (int i = 0; i < kLatencyDim; ++i) w[i] = pub_w_[i].load(std::memory_order_relaxed);
  return w;
}

void LatencyModel::Update(const LatencyVector& x, double y) {
  if (!std::isfinite(y) || y < 0) return;
  std::lock_guard lock(mu_);
  // Recursive least squares with forgetting: k = P x / (λ + xᵀ P x); w += k (y − wᵀx);
  // P = (P − k xᵀ P) / λ.
  LatencyVector px{};
  for (int i = 0; i < kLatencyDim; ++i)
    for (int j = 0; j < kLatencyDim; ++j) px[i] += p_[i][j] * x[j];
  double denom = cfg_.lambda;
  for (int i = 0; i < kLatencyDim; ++i) denom += x[i] * px[i];
  if (!(denom > 0) || !std::isfinite(denom)) return;
  double pred = 0;
  for (int i = 0; i < kLatencyDim; ++i) pred += w_[i] * x[i];
  const double err = y - pred;
  for (int i = 0; i < kLatencyDim; ++i) w_[i] += px[i] / denom * err;
  double trace = 0;
  for (int i = 0; i < kLatencyDim; ++i) {
    for (int j = 0; j < kLatencyDim; ++j)
      p_[i][j] = (p_[i][j] - px[i] * px[j] / denom) / cfg_.lambda;
    trace += p_[i][i];
  }
  // Forgetting without excitation lets P grow without bound: keep it where the prior put it.
  if (!std::isfinite(trace) || trace > 1e3 * cfg_.prior_var * kLatencyDim) {
    for (auto& row : p_) row.fill(0);
    for (int i = 0; i < kLatencyDim; ++i) p_[i][i] = cfg_.prior_var;
  }
  // The residual quantile, tracked by stochastic gradient on the pinball loss, with a step
  // proportional to the residuals' scale.
  double post = 0;
  for (int i = 0; i < kLatencyDim; ++i) post += w_[i] * x[i];
  const double r = y - post;
  mad_ = 0.95 * mad_ + 0.05 * std::abs(r);
  q_ += 0.05 * std::max(mad_, 1e-6) * (cfg_.quantile - (r < q_ ? 1.0 : 0.0));
  for (int i = 0; i < kLatencyDim; ++i) pub_w_[i].store(w_[i], std::memory_order_relaxed);
  pub_q_.store(q_, std::memory_order_relaxed);
  samples_.fetch_add(1, std::memory_order_relaxed);
}

// ---------------------------------------------------------------------------------------------
// Features

double EstimateTokens(size_t prompt_chars) {
  return std::max(1.0, static_cast<double>(prompt_chars) / 4.0);
}

LatencyInputs InputsOf(const pool::EndpointLoad& e, const pool::SaturationDetector& detector,
                       double prompt_tokens, double prefix_hit) {
  LatencyInputs in;
  in.prompt_tokens = prompt_tokens;
  in.prefix_hit = std::clamp(prefix_hit, 0.0, 1.0);
  in.waiting = detector.EstimatedWaiting(e);
  const double net =
      std::max(0.0, static_cast<double>(e.routed_since_scrape - e.completed_since_scrape));
  in.running = e.load.running + std::max(0.0, net - (in.waiting - e.load.waiting));
  if (e.load.batch_limit > 0) in.running = std::min(in.running, e.load.batch_limit);
  in.kv_usage = e.load.kv_usage;
  return in;
}

// TTFT: [1, N', N'², running, waiting, waiting·N'] with N' the uncached prompt in thousands of
// tokens; TPOT: [1, running, waiting, kv, 0, 0].
LatencyVector TtftFeatures(const LatencyInputs& in) {
  const double n = in.prompt_tokens * (1.0 - in.prefix_hit) / 1000.0;
  return {1.0, n, n * n, in.running, in.waiting, in.waiting * n};
}

LatencyVector TpotFeatures(const LatencyInputs& in) {
  return {1.0, in.running, in.waiting, in.kv_usage, 0, 0};
}

LatencyVector TtftPrior() {
  // One step and the prefill of this request: 6 + 16.5 ms, 15.2 ms per 1000 tokens, 0.421 ms
  // per (1000 tokens)²; 0.35 ms per running request; each waiting request ahead adds about one
  // step and a 512-token prefill (~31 ms).
  return {22.5, 15.2, 0.421, 0.35, 31.0, 0};
}

LatencyVector TpotPrior() { return {6.0, 0.35, 0, 0, 0, 0}; }

// ---------------------------------------------------------------------------------------------
// The scorer

namespace {

constexpr size_t kMaxEndpoints = 4096;
constexpr size_t kShards = 16;
constexpr size_t kMaxPendingPerShard = 16384;
const std::vector<double> kRatioBounds = {0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2, 3, 5};

double Ms(Nanos n) { return static_cast<double>(n.count()) / 1e6; }

struct Pending {
  uint32_t endpoint = 0;
  LatencyVector ttft_x{}, tpot_x{};
  double ttft_pred = 0, tpot_pred = 0;
};

struct Histogram {
  std::array<std::atomic<uint64_t>, 12> counts{};  // kRatioBounds.size() + 1
  std::atomic<double> sum{0};
  std::atomic<uint64_t> n{0};
  void Observe(double v) {
    size_t i = 0;
    while (i < kRatioBounds.size() && v > kRatioBounds[i]) ++i;
    counts[i].fetch_add(1, std::memory_order_relaxed);
    double s = sum.load(std::memory_order_relaxed);
    while (!sum.compare_exchange_weak(s, s + v, std::memory_order_relaxed)) {
    }
    n.fetch_add(1, std::memory_order_relaxed);
  }
};

// The last decision's per-endpoint inputs on this thread, so OnSent learns from what the pick
// saw (the prefix hit before the index records the route).
struct LastDecision {
  const void* owner = nullptr;
  uint64_t req_id = 0;
  std::vector<LatencyInputs> by_endpoint;
  std::vector<uint8_t> have;
};
thread_local LastDecision t_last;

}  // namespace

struct LatencyScorer::Impl {
  Options opts;
  std::array<std::atomic<LatencyModel*>, kMaxEndpoints> ttft{}, tpot{};
  std::mutex create_mu;
  std::vector<std::unique_ptr<LatencyModel>> owned;
  struct Shard {
    std::mutex mu;
    std::unordered_map<uint64_t, Pending> pending;
  };
  std::array<Shard, kShards> shards;
  Histogram ttft_ratio, tpot_ratio;

  ~Impl() = default;

  LatencyModel& Model(std::array<std::atomic<LatencyModel*>, kMaxEndpoints>& slots, uint32_t i,
                      const LatencyVector& prior) {
    LatencyModel* m = slots[i].load(std::memory_order_acquire);
    if (m != nullptr) return *m;
    std::lock_guard lock(create_mu);
    m = slots[i].load(std::memory_order_acquire);
    if (m == nullptr) {
      owned.push_back(std::make_unique<LatencyModel>(prior, opts.model));
      m = owned.back().get();
      slots[i].store(m, std::memory_order_release);
    }
    return *m;
  }
  LatencyModel& Ttft(uint32_t i) { return Model(ttft, i, TtftPrior()); }
  LatencyModel& Tpot(uint32_t i) { return Model(tpot, i, TpotPrior()); }
  Shard& ShardOf(uint64_t id) { return shards[(id * 0x9E3779B97F4A7C15ULL) >> 60]; }
};

LatencyScorer::LatencyScorer(Options opts) : impl_(std::make_unique<Impl>()) { impl_->opts = opts; }

void LatencyScorer::OnEndpointGone(uint32_t endpoint) {
  if (endpoint >= kMaxEndpoints) return;
  if (LatencyModel* m = impl_->ttft[endpoint].load(std::memory_order_acquire))
    m->Reset(TtftPrior());
  if (LatencyModel* m = impl_->tpot[endpoint].load(std::memory_order_acquire))
    m->Reset(TpotPrior());
}

LatencyScorer::~LatencyScorer() {
  if (t_last.owner == this) t_last = {};
}

void LatencyScorer::Score(SchedContext& ctx, std::span<const Candidate> cands,
                          std::span<double> out) {
  Impl& im = *impl_;
  const RequestInfo& req = *ctx.req;
  const double tokens = ctx.PromptTokenCount();
  const bool has_prefix = ctx.prefix_match.size() == cands.size();
  thread_local std::vector<double> ttft, tpot, cost;
  ttft.resize(cands.size());
  tpot.resize(cands.size());
  cost.resize(cands.size());
  LastDecision& last = t_last;
  last.owner = this;
  last.req_id = req.id;
  const size_t n = ctx.pool->size();
  if (last.by_endpoint.size() < n) {
    last.by_endpoint.resize(n);
    last.have.resize(n);
  }
  std::fill(last.have.begin(), last.have.begin() + static_cast<std::ptrdiff_t>(n), 0);
  double lo = INFINITY, hi = -INFINITY;
  for (size_t j = 0; j < cands.size(); ++j) {
    const uint32_t e = cands[j].index;
    if (e >= kMaxEndpoints) continue;
    const LatencyInputs in =
        InputsOf(cands[j], *ctx.detector, tokens, has_prefix ? ctx.prefix_match[j] : 0.0);
    last.by_endpoint[e] = in;
    last.have[e] = 1;
    ttft[j] = im.Ttft(e).Predict(TtftFeatures(in));
    tpot[j] = im.Tpot(e).Predict(TpotFeatures(in));
    cost[j] = ttft[j] + im.opts.tpot_weight * tpot[j];
    lo = std::min(lo, cost[j]);
    hi = std::max(hi, cost[j]);
  }
  auto by_cost = [&](size_t j) { return hi > lo ? (hi - cost[j]) / (hi - lo) : 1.0; };
  const bool slo = req.slo_ttft_ms >= 0 || req.slo_tpot_ms >= 0;
  if (!slo) {
    for (size_t j = 0; j < cands.size(); ++j) out[j] = by_cost(j);
    return;
  }
  // Headroom: the smallest spare share of the SLOs given (negative = predicted to miss).
  thread_local std::vector<double> head;
  head.resize(cands.size());
  double hlo = INFINITY, hhi = -INFINITY;
  bool any_meets = false;
  for (size_t j = 0; j < cands.size(); ++j) {
    double h = INFINITY;
    if (req.slo_ttft_ms > 0) h = std::min(h, (req.slo_ttft_ms - ttft[j]) / req.slo_ttft_ms);
    if (req.slo_tpot_ms > 0) h = std::min(h, (req.slo_tpot_ms - tpot[j]) / req.slo_tpot_ms);
    if (req.slo_ttft_ms == 0 || req.slo_tpot_ms == 0) h = std::min(h, -1.0);  // 0 ms: never met
    head[j] = h;
    if (h >= 0) {
      any_meets = true;
      hlo = std::min(hlo, h);
      hhi = std::max(hhi, h);
    }
  }
  for (size_t j = 0; j < cands.size(); ++j) {
    if (!any_meets) {
      out[j] = by_cost(j);
    } else if (head[j] < 0) {
      out[j] = 0.5 * by_cost(j);
    } else if (im.opts.bin_pack) {
      out[j] = 0.5 + 0.5 * (hhi > hlo ? (hhi - head[j]) / (hhi - hlo) : 1.0);
    } else {
      out[j] = 0.5 + 0.5 * by_cost(j);
    }
  }
}

void LatencyScorer::OnSent(SchedContext& ctx, uint32_t endpoint) {
  if (endpoint >= kMaxEndpoints || ctx.req->id == 0) return;
  Impl& im = *impl_;
  LatencyInputs in;
  const LastDecision& last = t_last;
  if (last.owner == this && last.req_id == ctx.req->id && endpoint < last.have.size() &&
      last.have[endpoint]) {
    in = last.by_endpoint[endpoint];
  } else {
    pool::EndpointLoad e = pool::EndpointLoad::Of(ctx.pool->at(endpoint));
    e.routed_since_scrape = std::max(0, e.routed_since_scrape - 1);  // (this one was counted)
    in = InputsOf(e, *ctx.detector, ctx.PromptTokenCount(), 0);
  }
  Pending p;
  p.endpoint = endpoint;
  p.ttft_x = TtftFeatures(in);
  p.tpot_x = TpotFeatures(in);
  p.ttft_pred = im.Ttft(endpoint).Predict(p.ttft_x);
  p.tpot_pred = im.Tpot(endpoint).Predict(p.tpot_x);
  Impl::Shard& s = im.ShardOf(ctx.req->id);
  std::lock_guard lock(s.mu);
  if (s.pending.size() < kMaxPendingPerShard) s.pending[ctx.req->id] = p;
}

void LatencyScorer::OnNotServed(SchedContext& ctx, uint32_t endpoint) {
  Impl::Shard& s = impl_->ShardOf(ctx.req->id);
  std::lock_guard lock(s.mu);
  auto it = s.pending.find(ctx.req->id);
  if (it != s.pending.end() && it->second.endpoint == endpoint) s.pending.erase(it);
}

void LatencyScorer::OnOutcome(SchedContext& ctx, const Outcome& outcome) {
  Impl& im = *impl_;
  Pending p;
  {
    Impl::Shard& s = im.ShardOf(ctx.req->id);
    std::lock_guard lock(s.mu);
    auto it = s.pending.find(ctx.req->id);
    if (it == s.pending.end()) return;
    p = it->second;
    s.pending.erase(it);
  }
  if (outcome.endpoint != p.endpoint || outcome.status < 200 || outcome.status >= 300) return;
  if (outcome.ttft.count() < 0) return;
  const double ttft = std::max(0.0, Ms(outcome.ttft) - Ms(outcome.queued));
  im.Ttft(p.endpoint).Update(p.ttft_x, ttft);
  if (p.ttft_pred > 0) im.ttft_ratio.Observe(ttft / p.ttft_pred);
  if (outcome.output_tokens >= 2) {
    const double tpot =
        (Ms(outcome.duration) - Ms(outcome.ttft)) / static_cast<double>(outcome.output_tokens - 1);
    if (tpot >= 0) {
      im.Tpot(p.endpoint).Update(p.tpot_x, tpot);
      if (p.tpot_pred > 0) im.tpot_ratio.Observe(tpot / p.tpot_pred);
    }
  }
}

LatencyPrediction LatencyScorer::Predict(const pool::Pool& pool, uint32_t endpoint,
                                         double prompt_tokens,
                                         const pool::SaturationDetector& detector) const {
  LatencyPrediction out;
  if (endpoint >= pool.size() || endpoint >= kMaxEndpoints) return out;
  const LatencyInputs in =
      InputsOf(pool::EndpointLoad::Of(pool.at(endpoint)), detector, prompt_tokens, 0);
  LatencyModel& t = impl_->Ttft(endpoint);
  out.ttft_ms = t.Predict(TtftFeatures(in));
  out.tpot_ms = impl_->Tpot(endpoint).Predict(TpotFeatures(in));
  out.samples = t.samples();
  return out;
}

LatencyStats LatencyScorer::Stats() const {
  LatencyStats s;
  s.ratio_bounds = kRatioBounds;
  auto fill = [](const Histogram& h, std::vector<uint64_t>* counts, double* sum, uint64_t* n) {
    uint64_t acc = 0;
    for (const auto& c : h.counts) {
      acc += c.load(std::memory_order_relaxed);
      counts->push_back(acc);
    }
    *sum = h.sum.load(std::memory_order_relaxed);
    *n = h.n.load(std::memory_order_relaxed);
  };
  fill(impl_->ttft_ratio, &s.ttft_ratio_counts, &s.ttft_ratio_sum, &s.ttft_samples);
  fill(impl_->tpot_ratio, &s.tpot_ratio_counts, &s.tpot_ratio_sum, &s.tpot_samples);
  return s;
}

std::string LatencyScorer::MetricsText() const {
  const LatencyStats s = Stats();
  std::string out =
      "# HELP tidegate_latency_predictor_samples_total Outcomes the latency predictor learnt "
      "from\n# TYPE tidegate_latency_predictor_samples_total counter\n";
  out += "tidegate_latency_predictor_samples_total{target=\"ttft\"} " +
         std::to_string(s.ttft_samples) + "\n";
  out += "tidegate_latency_predictor_samples_total{target=\"tpot\"} " +
         std::to_string(s.tpot_samples) + "\n";
  out +=
      "# HELP tidegate_latency_prediction_ratio Observed latency divided by the predicted "
      "(p90) one\n# TYPE tidegate_latency_prediction_ratio histogram\n";
  auto hist = [&](const char* target, const std::vector<uint64_t>& counts, double sum, uint64_t n) {
    for (size_t i = 0; i < counts.size(); ++i) {
      std::string le = i < s.ratio_bounds.size() ? std::to_string(s.ratio_bounds[i]) : "+Inf";
      if (le != "+Inf") {
        le.erase(le.find_last_not_of('0') + 1);
        if (le.back() == '.') le.pop_back();
      }
      out += std::string("tidegate_latency_prediction_ratio_bucket{target=\"") + target +
             "\",le=\"" + le + "\"} " + std::to_string(counts[i]) + "\n";
    }
    out += std::string("tidegate_latency_prediction_ratio_sum{target=\"") + target + "\"} " +
           std::to_string(sum) + "\n";
    out += std::string("tidegate_latency_prediction_ratio_count{target=\"") + target + "\"} " +
           std::to_string(n) + "\n";
  };
  hist("ttft", s.ttft_ratio_counts, s.ttft_ratio_sum, s.ttft_samples);
  hist("tpot", s.tpot_ratio_counts, s.tpot_ratio_sum, s.tpot_samples);
  return out;
}

void RegisterLatencyPlugins(PluginRegistry* registry) {
  registry->Register("latency-scorer", [](const Params& p, std::unique_ptr<Plugin>* out) {
    LatencyScorer::Options o;
    if (auto e = p.GetDouble("tpotWeight", &o.tpot_weight, 0, 1e6); !e.empty()) return e;
    if (auto e = p.GetDouble("quantile", &o.model.quantile, 0.5, 0.999); !e.empty()) return e;
    if (auto e = p.GetDouble("forgetting", &o.model.lambda, 0.9, 1.0); !e.empty()) return e;
    if (auto e = p.GetBool("binPack", &o.bin_pack); !e.empty()) return e;
    *out = std::make_unique<LatencyScorer>(o);
    return std::string();
  });
}

}  // namespace tidegate::sched
