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
  // This gateway's own in-flight count is exact and current: the endpoint has at least that
  // many requests, running while its batch has room, the rest waiting (a burst between two
  // scrapes is seen at once).
  const double in_flight = static_cast<double>(e.in_flight);
  if (in_flight > in.running + in.waiting) {
    const double extra = in_flight - in.running - in.waiting;
    const double room =
        e.load.batch_limit > 0 ? std::max(0.0, e.load.batch_limit - in.running) : extra;
    in.running += std::min(extra, room);
    in.waiting += extra - std::min(extra, room);
  }
  in.kv_usage = e.load.kv_usage;
  return in;
}

// TTFT: [1, N', N'², running, waiting, waiting·N', B'] with N' the uncached prompt and B' the
// prefill backlog in thousands of tokens; TPOT: [1, running, waiting, kv, B', 0, 0].
LatencyVector TtftFeatures(const LatencyInputs& in) {
  const double n = in.prompt_tokens * (1.0 - in.prefix_hit) / 1000.0;
  return {1.0, n, n * n, in.running, in.waiting, in.waiting * n, in.backlog_tokens / 1000.0};
}

LatencyVector TpotFeatures(const LatencyInputs& in) {
  return {1.0, in.running, in.waiting, in.kv_usage, in.backlog_tokens / 1000.0, 0, 0};
}

LatencyVector TtftPrior() {
  // One step and the prefill of this request: 6 + 16.5 ms, 15.2 ms per 1000 tokens, 0.421 ms
  // per (1000 tokens)²; 0.35 ms per running request; each waiting request ahead adds about one
  // step (its prefill is in the backlog); each 1000 backlog tokens ahead 15.2 ms of prefill.
  return {22.5, 15.2, 0.421, 0.35, 16.0, 0, 15.2};
}

LatencyVector TpotPrior() { return {6.0, 0.35, 0, 0, 0, 0, 0}; }

// ---------------------------------------------------------------------------------------------
// The scorer

namespace {

// One model per pool slot: a pool never numbers an endpoint at or past its kMaxEndpoints.
constexpr size_t kMaxEndpoints = pool::Pool::kMaxEndpoints;
constexpr size_t kShards = 16;
constexpr size_t kMaxPendingPerShard = 16384;
constexpr uint64_t kWarmSamples = 8;   // below this an endpoint's model is "cold"
constexpr double kIndifference = 1.1;  // relative scores: within 10% of the best score 1
const std::vector<double> kRatioBounds = {0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2, 3, 5};

double Ms(Nanos n) { return static_cast<double>(n.count()) / 1e6; }

struct Pending {
  uint32_t endpoint = 0;
  LatencyVector ttft_x{}, tpot_x{};
  double ttft_pred = 0, tpot_pred = 0;
  double backlog_added = 0;  // uncached tokens added to the endpoint's backlog
  int64_t sent_ns = 0;
};

// The prefill backlog of one endpoint (see latency.h): read without a lock (a torn pair is a
// momentarily stale estimate), written under `mu`.
struct Backlog {
  std::mutex mu;
  std::atomic<double> tokens{0};
  std::atomic<int64_t> at_ns{0};
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
  std::array<Backlog, kMaxEndpoints> backlog;
  Histogram ttft_ratio, tpot_ratio;

  // Tokens per ms the endpoint prefills: from its TTFT model's weight on the uncached prompt
  // (ms per 1000 tokens), bounded to 1..1000 ms per 1000 tokens.
  double PrefillRate(uint32_t i) {
    const double ms_per_k = std::clamp(Ttft(i).weight(1), 1.0, 1000.0);
    return 1000.0 / ms_per_k;
  }
  double BacklogAt(uint32_t i, int64_t now_ns) {
    const Backlog& b = backlog[i];
    const double t = b.tokens.load(std::memory_order_relaxed);
    if (t <= 0) return 0;
    const double elapsed_ms =
        std::max<int64_t>(0, now_ns - b.at_ns.load(std::memory_order_relaxed)) / 1e6;
    return std::max(0.0, t - PrefillRate(i) * elapsed_ms);
  }
  // Adds `tokens` (may be negative) to endpoint i's backlog at now.
  void AddBacklog(uint32_t i, double tokens, int64_t now_ns) {
    Backlog& b = backlog[i];
    std::lock_guard lock(b.mu);
    const double v = std::max(0.0, BacklogAt(i, now_ns) + tokens);
    b.tokens.store(v, std::memory_order_relaxed);
    b.at_ns.store(now_ns, std::memory_order_relaxed);
  }

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
  void Retire(const Pending& p, int64_t now_ns);
};

LatencyScorer::LatencyScorer(Options opts) : impl_(std::make_unique<Impl>()) { impl_->opts = opts; }

void LatencyScorer::OnEndpointGone(uint32_t endpoint) {
  if (endpoint >= kMaxEndpoints) return;
  if (LatencyModel* m = impl_->ttft[endpoint].load(std::memory_order_acquire))
    m->Reset(TtftPrior());
  if (LatencyModel* m = impl_->tpot[endpoint].load(std::memory_order_acquire))
    m->Reset(TpotPrior());
  Backlog& b = impl_->backlog[endpoint];
  std::lock_guard lock(b.mu);
  b.tokens.store(0, std::memory_order_relaxed);
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
  thread_local std::vector<uint8_t> cold;
  thread_local std::vector<double> prior;  // the prior's cost, for cold candidates
  ttft.resize(cands.size());
  tpot.resize(cands.size());
  cost.resize(cands.size());
  cold.resize(cands.size());
  prior.resize(cands.size());
  double best = INFINITY;
  size_t best_j = cands.size();
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
  static const LatencyModel prior_ttft(TtftPrior()), prior_tpot(TpotPrior());
  auto prior_cost = [&](const LatencyInputs& in) {
    return prior_ttft.Predict(TtftFeatures(in)) +
           im.opts.tpot_weight * prior_tpot.Predict(TpotFeatures(in));
  };
  for (size_t j = 0; j < cands.size(); ++j) {
    const uint32_t e = cands[j].index;
    LatencyInputs in =
        InputsOf(cands[j], *ctx.detector, tokens, has_prefix ? ctx.prefix_match[j] : 0.0);
    in.backlog_tokens = im.BacklogAt(e, ctx.now.count());
    last.by_endpoint[e] = in;
    last.have[e] = 1;
    const LatencyModel& tm = im.Ttft(e);
    ttft[j] = tm.Predict(TtftFeatures(in));
    tpot[j] = im.Tpot(e).Predict(TpotFeatures(in));
    cost[j] = ttft[j] + im.opts.tpot_weight * tpot[j];
    const uint64_t samples = tm.samples();
    cold[j] = samples < kWarmSamples;
    // A model without samples still predicts with the prior's weights.
    if (cold[j]) prior[j] = samples == 0 ? cost[j] : prior_cost(in);
    if (cost[j] < best) {
      best = cost[j];
      best_j = j;
    }
  }
  // Optimism for endpoints the model has barely seen: a cold one is predicted no worse than the
  // best candidate plus what the prior says its load costs beyond the best one's, so it gets
  // traffic and is learnt (else the prior, for servers faster than it, would keep every peer of
  // the first one served idle). With every candidate cold this is the prior's own ranking.
  const double best_prior =
      best_j >= cands.size()
          ? 0
          : (cold[best_j] ? prior[best_j] : prior_cost(last.by_endpoint[cands[best_j].index]));
  for (size_t j = 0; j < cands.size(); ++j) {
    // The prior's view of how much worse its load is than the best one's, added to the best.
    if (cold[j] && j != best_j)
      cost[j] = std::min(cost[j], best + std::max(0.0, prior[j] - best_prior));
    lo = std::min(lo, cost[j]);
    hi = std::max(hi, cost[j]);
  }
  auto by_cost = [&](size_t j) {
    // Relative: within kIndifference of the best counts as the best (the predictor's own error
    // is larger), so equal servers tie and the other scorers or the random tie-break spread them.
    if (im.opts.relative)
      return cost[j] > 0 ? std::min(1.0, kIndifference * std::max(lo, 0.0) / cost[j]) : 1.0;
    return hi > lo ? (hi - cost[j]) / (hi - lo) : 1.0;
  };
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
    in.backlog_tokens = im.BacklogAt(endpoint, ctx.now.count());
  }
  Pending p;
  p.endpoint = endpoint;
  p.backlog_added = in.prompt_tokens * (1.0 - in.prefix_hit);
  p.sent_ns = ctx.now.count();
  im.AddBacklog(endpoint, p.backlog_added, p.sent_ns);
  p.ttft_x = TtftFeatures(in);
  p.tpot_x = TpotFeatures(in);
  p.ttft_pred = im.Ttft(endpoint).Predict(p.ttft_x);
  p.tpot_pred = im.Tpot(endpoint).Predict(p.tpot_x);
  Impl::Shard& s = im.ShardOf(ctx.req->id);
  std::lock_guard lock(s.mu);
  if (s.pending.size() < kMaxPendingPerShard) s.pending[ctx.req->id] = p;
}

// What is left of a request's share of its endpoint's backlog, taken out once it is done there.
void LatencyScorer::Impl::Retire(const Pending& p, int64_t now_ns) {
  if (p.backlog_added <= 0) return;
  const double drained = PrefillRate(p.endpoint) * std::max<int64_t>(0, now_ns - p.sent_ns) / 1e6;
  const double left = p.backlog_added - drained;
  if (left > 0) AddBacklog(p.endpoint, -left, now_ns);
}

void LatencyScorer::OnNotServed(SchedContext& ctx, uint32_t endpoint) {
  Impl::Shard& s = impl_->ShardOf(ctx.req->id);
  Pending p;
  {
    std::lock_guard lock(s.mu);
    auto it = s.pending.find(ctx.req->id);
    if (it == s.pending.end() || it->second.endpoint != endpoint) return;
    p = it->second;
    s.pending.erase(it);
  }
  impl_->Retire(p, ctx.now.count());
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
  im.Retire(p, ctx.now.count());
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
                                         const pool::SaturationDetector& detector,
                                         Nanos now) const {
  if (endpoint >= pool.size() || endpoint >= kMaxEndpoints) return {};
  LatencyInputs in =
      InputsOf(pool::EndpointLoad::Of(pool.at(endpoint)), detector, prompt_tokens, 0);
  in.backlog_tokens = impl_->BacklogAt(endpoint, now.count());
  return PredictInputs(endpoint, in);
}

double LatencyScorer::PrefillBacklog(uint32_t endpoint, Nanos now) const {
  return endpoint < kMaxEndpoints ? impl_->BacklogAt(endpoint, now.count()) : 0;
}

LatencyPrediction LatencyScorer::PredictInputs(uint32_t endpoint, const LatencyInputs& in) const {
  LatencyPrediction out;
  if (endpoint >= kMaxEndpoints) return out;
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

// ---------------------------------------------------------------------------------------------
// Admission of sheddable work

namespace {
constexpr Nanos kRememberSlo = std::chrono::seconds(60);
}

void TightestObjective::Note(double v, Nanos now) {
  const double cur = ms_.load(std::memory_order_relaxed);
  if (cur <= 0 || v <= cur ||
      now.count() - at_.load(std::memory_order_relaxed) > kRememberSlo.count()) {
    ms_.store(v, std::memory_order_relaxed);
    at_.store(now.count(), std::memory_order_relaxed);
  }
}

double TightestObjective::Get(Nanos now) const {
  const double v = ms_.load(std::memory_order_relaxed);
  if (v <= 0 || now.count() - at_.load(std::memory_order_relaxed) > kRememberSlo.count()) return -1;
  return v;
}

double SloAdmissionFilter::TtftObjective(Nanos now) const {
  return opts_.ttft_slo_ms > 0 ? opts_.ttft_slo_ms : ttft_.Get(now);
}

double SloAdmissionFilter::TpotObjective(Nanos now) const {
  return opts_.tpot_slo_ms > 0 ? opts_.tpot_slo_ms : tpot_.Get(now);
}

std::string SloAdmissionFilter::Bind(const Profile& profile) {
  for (const auto& ws : profile.scorers)
    if (auto l = std::dynamic_pointer_cast<LatencyScorer>(ws.scorer)) {
      latency_ = std::move(l);
      return {};
    }
  return "needs a latency-scorer in the same profile (it predicts with that scorer's models)";
}

void SloAdmissionFilter::Apply(SchedContext& ctx, std::vector<Candidate>* cands) {
  const RequestInfo& req = *ctx.req;
  if (req.priority >= 0) {
    if (req.slo_ttft_ms > 0) ttft_.Note(req.slo_ttft_ms, ctx.now);
    if (req.slo_tpot_ms > 0) tpot_.Note(req.slo_tpot_ms, ctx.now);
    return;
  }
  if (!latency_) return;
  const double ttft_slo = TtftObjective(ctx.now), tpot_slo = TpotObjective(ctx.now);
  if (ttft_slo <= 0 && tpot_slo <= 0) return;
  const double tokens = ctx.PromptTokenCount();
  std::erase_if(*cands, [&](const Candidate& c) {
    // The next real-time request of this size, nothing of it cached, with this one added.
    LatencyInputs in = InputsOf(c, *ctx.detector, tokens, 0);
    in.backlog_tokens = latency_->PrefillBacklog(c.index, ctx.now) + tokens;
    if (c.load.batch_limit > 0 && in.running + 1 > c.load.batch_limit) {
      in.waiting += 1;
    } else {
      in.running += 1;
    }
    const LatencyPrediction p = latency_->PredictInputs(c.index, in);
    return (ttft_slo > 0 && p.ttft_ms > ttft_slo) || (tpot_slo > 0 && p.tpot_ms > tpot_slo);
  });
}

void RegisterLatencyPlugins(PluginRegistry* registry) {
  registry->Register("slo-admission-filter", [](const Params& p, std::unique_ptr<Plugin>* out) {
    SloAdmissionFilter::Options o;
    if (auto e = p.GetDouble("ttftSloMs", &o.ttft_slo_ms, 0, 1e9); !e.empty()) return e;
    if (auto e = p.GetDouble("tpotSloMs", &o.tpot_slo_ms, 0, 1e9); !e.empty()) return e;
    *out = std::make_unique<SloAdmissionFilter>(o);
    return std::string();
  });
  registry->Register("latency-scorer", [](const Params& p, std::unique_ptr<Plugin>* out) {
    LatencyScorer::Options o;
    if (auto e = p.GetDouble("tpotWeight", &o.tpot_weight, 0, 1e6); !e.empty()) return e;
    if (auto e = p.GetDouble("quantile", &o.model.quantile, 0.5, 0.999); !e.empty()) return e;
    if (auto e = p.GetDouble("forgetting", &o.model.lambda, 0.9, 1.0); !e.empty()) return e;
    if (auto e = p.GetBool("binPack", &o.bin_pack); !e.empty()) return e;
    if (auto e = p.GetBool("relative", &o.relative); !e.empty()) return e;
    *out = std::make_unique<LatencyScorer>(o);
    return std::string();
  });
}

}  // namespace tidegate::sched
