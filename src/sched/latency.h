// sched/latency.h — predicted latency: an online model of each endpoint's TTFT and TPOT, and
// the `latency-scorer` plugin that routes on it (least predicted latency; with an SLO, the
// endpoint predicted to meet it with the least headroom).
//
// Contract:
// * LatencyModel is linear in a feature vector and learns online by recursive least squares
//   with forgetting (λ, so it follows a server that slows down), starting from a prior (the
//   engine's published latency model, so the first request is not routed blind). Predict()
//   gives the mean plus a tracked residual quantile (τ, default p90): the prediction is a high
//   quantile, not the mean. Weights are published through atomics: Predict() never blocks and
//   never allocates; Update() takes the model's mutex.
// * Features (TtftFeatures / TpotFeatures) come from an endpoint's load at decision time: the
//   prompt's uncached tokens (its length in tokens, exact with the gateway's tokenizer, else
//   estimated at 4 characters each, times the share the prefix-cache-scorer found cached there),
//   the estimated waiting requests (scraped + routed beyond the free batch places), the running
//   ones (both at least this gateway's in-flight count there, waiting beyond the batch limit),
//   the KV usage, and the prefill backlog: the uncached prompt tokens this gateway sent the
//   endpoint that it is predicted not to have prefilled yet. The backlog is a fluid queue per
//   endpoint: each send adds its uncached tokens, and it drains at the endpoint's own learnt
//   prefill rate (1000 ÷ the TTFT model's ms per 1000 uncached tokens); a request that finishes
//   or is not served takes out what is left of its share. (Pricing the backlog with the weight
//   of the request's own uncached tokens instead of a weight of its own measured worse on
//   scenarios/mixed.yaml: 92.4% SLO attainment against 98.4%.) Request counts cannot see it: one
//   32k-token document ahead costs a short request as much as sixty short ones.
// * The prior: TTFT ms ≈ step(running) + prefill(N) for each request ahead and this one, with
//   prefill ≈ 4.21e-7·N² + 0.0152·N + 16.5 and step ≈ 6 + 0.35·running (the simulator's
//   llama-3.1-8b-h100 constants); TPOT ms ≈ 6 + 0.35·running. Observed latencies are wall time,
//   so a faster or slower server (or a time-scaled simulator) is learnt within tens of requests.
// * LatencyScorer ("latency-scorer"): per candidate, cost = TTFT + tpotWeight × TPOT (params
//   tpotWeight, default 10; quantile, default 0.9). Without SLO headers the score is
//   (max − cost)/(max − min), or with relative: true min(1, 1.1·min/cost) (within 10% of the
//   best counts as the best: equal servers tie). An endpoint whose model has fewer than 8
//   samples is predicted no worse than the best candidate plus the prior's cost of its extra
//   load, so that it is tried and learnt. With
//   x-slo-ttft-ms / x-slo-tpot-ms (RequestInfo::slo_*), the candidates predicted to meet every
//   given SLO score 0.5..1, by cost, or with binPack: true the least spare headroom highest
//   (bin-packing keeps the others free for the next burst); the others score 0..0.5 by cost, so
//   when none meets the SLO the lowest predicted latency wins. Bin-packing is off by default
//   because it measured badly in scenarios/hetero.yaml: packing onto the slow servers up to the
//   predicted SLO gave TTFT p50 312 ms and 62% SLO attainment, against 31 ms and 100% for
//   least-request: a slow server is packed up to its predicted limit at a load it has not been seen
//   at, where its predictions lag behind. It learns from OnOutcome: the TTFT seen by the gateway
//   minus its own queueing, and TPOT = (duration − TTFT)/(tokens − 1). Place it after
//   prefix-cache-scorer in a profile to use the prefix hit.
// * Stats() (samples, refits, and the histogram of observed ÷ predicted) and Predict() for a
//   reference request feed /metrics and /v1/pool.
// * SloAdmissionFilter ("slo-admission-filter"): admission for sheddable work by predicted SLO.
//   The rule: a sheddable request (priority < 0) may go to an endpoint only if, with it added
//   there (one more running request, or one more waiting when the batch is full), a real-time
//   request of the same size arriving next is still predicted to meet the real-time SLO: its
//   predicted TTFT ≤ the TTFT objective and its predicted TPOT ≤ the TPOT objective. The
//   objectives are the parameters ttftSloMs / tpotSloMs when set, else the tightest
//   x-slo-ttft-ms / x-slo-tpot-ms a real-time request (priority ≥ 0) carried in the last 60 s;
//   with neither, the filter keeps every endpoint (the saturation filter still applies). When it
//   removes every endpoint the pick is empty with kSloAtRisk, which the gateway answers 429 with
//   Retry-After, as for a saturated pool. Real-time requests pass untouched. It predicts with
//   the latency-scorer of its profile (BindProfile fails without one), so both share one model
//   per endpoint.
// Thread-safety: every method may be called concurrently (see sched/framework.h).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "sched/framework.h"

namespace tidegate::sched {

inline constexpr int kLatencyDim = 7;
using LatencyVector = std::array<double, kLatencyDim>;

struct LatencyModelConfig {
  double lambda = 0.995;   // forgetting factor of the least squares (1 = never forget)
  double prior_var = 4.0;  // initial covariance: how far the data may move the prior quickly
  double quantile = 0.9;   // the residual quantile added to the mean
};

class LatencyModel {
 public:
  explicit LatencyModel(LatencyVector prior = {}, LatencyModelConfig cfg = {});
  // The τ-quantile prediction (mean + residual quantile), never below 0.
  double Predict(const LatencyVector& x) const;
  double PredictMean(const LatencyVector& x) const;
  void Update(const LatencyVector& x, double y);
  // Back to `prior` with no samples (its endpoint left the pool).
  void Reset(const LatencyVector& prior);
  uint64_t samples() const { return samples_.load(std::memory_order_relaxed); }
  LatencyVector weights() const;
  double weight(int i) const { return pub_w_[i].load(std::memory_order_relaxed); }

 private:
  // What Predict() reads, in one cache line (kLatencyDim + 1 = 8 doubles): a decision reads two
  // models per candidate, so at 1,000 endpoints the line count matters.
  alignas(64) std::array<std::atomic<double>, kLatencyDim> pub_w_{};
  std::atomic<double> pub_q_{0};
  LatencyModelConfig cfg_;
  std::mutex mu_;
  std::array<std::array<double, kLatencyDim>, kLatencyDim> p_{};  // covariance (under mu_)
  LatencyVector w_{};                                             // weights (under mu_)
  double q_ = 0, mad_ = 1;                                        // residual quantile, scale
  std::atomic<uint64_t> samples_{0};
};

// What the model reads of one endpoint for one request.
struct LatencyInputs {
  double prompt_tokens = 0;  // estimated prompt length in tokens
  double prefix_hit = 0;     // share of the prompt already cached there (0..1)
  double waiting = 0;
  double running = 0;
  double kv_usage = 0;
  double backlog_tokens = 0;  // prefill backlog (see above)
};
LatencyInputs InputsOf(const pool::EndpointLoad& e, const pool::SaturationDetector& detector,
                       double prompt_tokens, double prefix_hit);
LatencyVector TtftFeatures(const LatencyInputs& in);
LatencyVector TpotFeatures(const LatencyInputs& in);
LatencyVector TtftPrior();
LatencyVector TpotPrior();
// Tokens in a prompt of this many characters (4 per token, at least 1).
double EstimateTokens(size_t prompt_chars);

struct LatencyStats {
  uint64_t ttft_samples = 0, tpot_samples = 0;
  // observed ÷ predicted, cumulative counts per upper bound (the last is +Inf).
  std::vector<double> ratio_bounds;
  std::vector<uint64_t> ttft_ratio_counts, tpot_ratio_counts;
  double ttft_ratio_sum = 0, tpot_ratio_sum = 0;
};

struct LatencyPrediction {
  double ttft_ms = 0, tpot_ms = 0;
  uint64_t samples = 0;
};

// The tightest objective (ms) that requests carried in the last 60 s: Note() each one, Get()
// returns it, or -1 when none was seen in that time. Lock-free; safe from any thread.
class TightestObjective {
 public:
  void Note(double ms, Nanos now);
  double Get(Nanos now) const;

 private:
  std::atomic<double> ms_{-1};
  std::atomic<int64_t> at_{0};
};

class LatencyScorer final : public Scorer {
 public:
  struct Options {
    double tpot_weight = 10;
    // Among the endpoints predicted to meet the SLO, prefer the one with the least headroom
    // (true) or the lowest predicted latency (false, the default; see below).
    bool bin_pack = false;
    // Scores by cost relative to the best (min ÷ cost: a 5% slower endpoint scores 0.95) rather
    // than spread over the candidates' range (the slowest 0, whatever the gap), so small
    // differences in predicted latency leave the other scorers (prefix, queue) to decide.
    bool relative = false;
    LatencyModelConfig model;
  };
  explicit LatencyScorer(Options opts);
  ~LatencyScorer() override;

  void Score(SchedContext& ctx, std::span<const Candidate> cands, std::span<double> out) override;
  void OnSent(SchedContext& ctx, uint32_t endpoint) override;
  void OnNotServed(SchedContext& ctx, uint32_t endpoint) override;
  void OnOutcome(SchedContext& ctx, const Outcome& outcome) override;
  void OnEndpointGone(uint32_t endpoint) override;

  // The prediction for a request of `prompt_tokens` on `endpoint` at its current load.
  LatencyPrediction Predict(const pool::Pool& pool, uint32_t endpoint, double prompt_tokens,
                            const pool::SaturationDetector& detector, Nanos now) const;
  // The prediction for these inputs on `endpoint` (its model; the prior before any sample).
  LatencyPrediction PredictInputs(uint32_t endpoint, const LatencyInputs& in) const;
  // The endpoint's prefill backlog at `now`, in tokens.
  double PrefillBacklog(uint32_t endpoint, Nanos now) const;
  LatencyStats Stats() const;
  // Prometheus text: tidegate_latency_predictor_samples_total{target} and the histogram
  // tidegate_latency_prediction_ratio{target} (observed ÷ predicted), target ttft | tpot.
  std::string MetricsText() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class SloAdmissionFilter final : public Filter {
 public:
  struct Options {
    double ttft_slo_ms = -1;  // > 0: fixed objectives; else the tightest seen recently
    double tpot_slo_ms = -1;
  };
  explicit SloAdmissionFilter(Options opts) : opts_(opts) {}
  void Apply(SchedContext& ctx, std::vector<Candidate>* cands) override;
  EmptyReason EmptiedReason() const override { return EmptyReason::kSloAtRisk; }
  std::string Bind(const Profile& profile) override;
  // The objectives it admits against at `now` (≤ 0 = none).
  double TtftObjective(Nanos now) const;
  double TpotObjective(Nanos now) const;

 private:
  Options opts_;
  std::shared_ptr<LatencyScorer> latency_;
  TightestObjective ttft_, tpot_;
};

// Registers "latency-scorer" and "slo-admission-filter".
void RegisterLatencyPlugins(PluginRegistry* registry);

}  // namespace tidegate::sched
