#include "gateway/dashboard.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "gateway/admin.h"
#include "metrics/quantile.h"
#include "pool/prom_sums.h"

namespace tidegate::gateway {

using json = nlohmann::ordered_json;

Dashboard::Dashboard(const pool::Pool& pool, metrics::Family<metrics::Gauge>* busy,
                     std::vector<double> ttft_bounds, Nanos window)
    : pool_(pool), busy_(busy), bounds_(std::move(ttft_bounds)), window_(window) {}

void Dashboard::Sample(Nanos now, const std::vector<InFlight>& in_flight) {
  const double dt = sampled_ ? std::max(0.0, ToSeconds(now - last_sample_)) : 0;
  sampled_ = true;
  last_sample_ = now;
  InFlight total;
  size_t active = 0;
  for (size_t i = 0; i < pool_.size(); ++i) active += pool_.at(i).Active() ? 1 : 0;
  endpoint_s_ += dt * static_cast<double>(active);
  if (busy_by_slot_.size() < in_flight.size()) busy_by_slot_.resize(in_flight.size());
  for (size_t i = 0; i < in_flight.size() && i < pool_.size(); ++i) {
    const int n = std::max(0, in_flight[i].total);
    const int shed = std::clamp(in_flight[i].sheddable, 0, n);
    total.total += n;
    total.sheddable += shed;
    if (n == 0 || dt <= 0) continue;
    const double async_s = dt * shed / n;
    const double rt_s = dt - async_s;
    busy_rt_s_ += rt_s;
    busy_async_s_ += async_s;
    if (!busy_) continue;
    const pool::Endpoint& ep = pool_.at(i);
    Busy& b = busy_by_slot_[i];
    if (b.uid != ep.uid()) {
      b = {ep.uid(), &busy_->With({ep.address(), "realtime"}),
           &busy_->With({ep.address(), "async"})};
    }
    if (rt_s > 0) b.rt->Add(rt_s);
    if (async_s > 0) b.async->Add(async_s);
  }
  last_total_ = total;
}

void Dashboard::Close(Nanos now, int64_t unix_ms, const DashboardTotals& totals) {
  if (!have_base_) {
    have_base_ = true;
    base_at_ = now;
    base_ = totals;
    busy_rt_s_ = busy_async_s_ = endpoint_s_ = 0;
    return;
  }
  const double dt = ToSeconds(now - base_at_);
  if (dt <= 0) return;
  DashboardPoint p;
  p.t_ms = unix_ms;
  const double capacity = std::max(endpoint_s_, dt);
  p.util_realtime = std::clamp(busy_rt_s_ / capacity, 0.0, 1.0);
  p.util_async = std::clamp(busy_async_s_ / capacity, 0.0, 1.0 - p.util_realtime);
  auto rate = [dt](uint64_t cur, uint64_t before) {
    return cur >= before ? static_cast<double>(cur - before) / dt : 0.0;
  };
  p.rps_realtime = rate(totals.requests_realtime, base_.requests_realtime);
  p.rps_async = rate(totals.requests_async, base_.requests_async);
  if (totals.ttft_counts.size() == bounds_.size() + 1 &&
      base_.ttft_counts.size() == totals.ttft_counts.size()) {
    std::vector<double> delta(totals.ttft_counts.size());
    for (size_t i = 0; i < delta.size(); ++i)
      delta[i] = std::max(0.0, totals.ttft_counts[i] - base_.ttft_counts[i]);
    if (auto q = metrics::BucketQuantile(bounds_, delta, 0.5)) p.ttft_p50_ms = *q * 1000;
    if (auto q = metrics::BucketQuantile(bounds_, delta, 0.99)) p.ttft_p99_ms = *q * 1000;
  }
  p.in_flight_realtime = last_total_.total - last_total_.sheddable;
  p.in_flight_async = last_total_.sheddable;
  base_at_ = now;
  base_ = totals;
  busy_rt_s_ = busy_async_s_ = endpoint_s_ = 0;

  std::lock_guard lock(mu_);
  points_.push_back(p);
  const int64_t keep_after =
      unix_ms - std::chrono::duration_cast<std::chrono::milliseconds>(window_).count();
  while (!points_.empty() && points_.front().t_ms <= keep_after) points_.pop_front();
}

void Dashboard::SetProcessor(ProcessorView v) {
  std::lock_guard lock(mu_);
  processor_ = std::move(v);
}

std::vector<DashboardPoint> Dashboard::PointsSince(int64_t since_ms) const {
  std::lock_guard lock(mu_);
  std::vector<DashboardPoint> out;
  for (const auto& p : points_)
    if (p.t_ms > since_ms) out.push_back(p);
  return out;
}

std::optional<ProcessorView> Dashboard::Processor() const {
  std::lock_guard lock(mu_);
  return processor_;
}

namespace {

json OrNull(const std::optional<double>& v) { return v ? json(*v) : json(nullptr); }

}  // namespace

std::string Dashboard::DataJson(int64_t since_ms, int64_t now_unix_ms, const pool::Pool& pool,
                                const control::Director& director, std::string_view default_engine,
                                Nanos now) const {
  json out;
  out["now_ms"] = now_unix_ms;
  out["interval_s"] = 1;
  out["window_s"] = std::chrono::duration_cast<std::chrono::seconds>(window_).count();
  json pts = json::array();
  for (const auto& p : PointsSince(since_ms)) {
    pts.push_back({{"t_ms", p.t_ms},
                   {"util_realtime", p.util_realtime},
                   {"util_async", p.util_async},
                   {"rps_realtime", p.rps_realtime},
                   {"rps_async", p.rps_async},
                   {"ttft_p50_ms", OrNull(p.ttft_p50_ms)},
                   {"ttft_p99_ms", OrNull(p.ttft_p99_ms)},
                   {"in_flight_realtime", p.in_flight_realtime},
                   {"in_flight_async", p.in_flight_async}});
  }
  out["points"] = std::move(pts);
  if (auto pv = Processor()) {
    out["processor"] = {{"url", pv->url},
                        {"up", pv->up},
                        {"error", pv->error},
                        {"backlog", OrNull(pv->backlog)},
                        {"held", OrNull(pv->held)},
                        {"in_flight", OrNull(pv->in_flight)},
                        {"done", OrNull(pv->done)},
                        {"failed", OrNull(pv->failed)},
                        {"shed", OrNull(pv->shed)},
                        {"retries", OrNull(pv->retries)},
                        {"deadline_misses", OrNull(pv->deadline_misses)},
                        {"escalated", OrNull(pv->escalated)}};
  } else {
    out["processor"] = nullptr;
  }
  const pool::SaturationDetector& det = director.detector();
  out["saturation"] = det.PoolSaturation(pool, now);
  json bands = json::array();
  for (const auto& b : director.Queues().bands)
    bands.push_back({{"priority", b.priority},
                     {"requests", b.requests},
                     {"bytes", b.bytes},
                     {"flows", b.flows}});
  out["queues"] = std::move(bands);
  json eps = json::array();
  for (size_t i = 0; i < pool.size(); ++i) {
    const auto& ep = pool.at(i);
    if (!ep.Active()) continue;
    const pool::EndpointLoad load = pool::EndpointLoad::Of(ep);
    const bool has = load.load.has_metrics;
    std::string err = ep.LastScrapeError();
    if (err.empty() && !ep.ProbeOk()) err = ep.LastError();
    eps.push_back({{"address", ep.address()},
                   {"engine", EngineName(ep, default_engine)},
                   {"up", ep.Available(now)},
                   {"stale", det.Stale(load.load, now)},
                   {"waiting", has ? json(load.load.waiting) : json(nullptr)},
                   {"running", has ? json(load.load.running) : json(nullptr)},
                   {"kv", has && load.load.has_kv ? json(load.load.kv_usage) : json(nullptr)},
                   {"in_flight", load.in_flight},
                   {"predicted_ttft_ms", nullptr},  // no latency predictor yet
                   {"last_error", err}});
  }
  out["endpoints"] = std::move(eps);
  return out.dump();
}

bool ParseProcessorMetrics(std::string_view text, ProcessorView* out) {
  pool::PromSums s;
  if (!pool::SumPromText(text, &s)) return false;
  out->backlog = s.Find("tidegate_async_queue_backlog");
  out->held = s.Find("tidegate_async_held_messages");
  out->in_flight = s.Find("tidegate_async_in_flight");
  out->done = s.Find("tidegate_async_requests_succeeded_total");
  out->failed = s.Find("tidegate_async_requests_failed_total");
  out->shed = s.Find("tidegate_async_sheds_total");
  out->retries = s.Find("tidegate_async_retries_total");
  out->deadline_misses = s.Find("tidegate_async_deadline_misses_total");
  out->escalated = s.Find("tidegate_async_escalations_total");
  // Counters split by a label have no series until their first event: on a processor's page
  // (it always exports its success counter) that means none yet.
  if (out->done) {
    if (!out->failed) out->failed = 0;
    if (!out->retries) out->retries = 0;
  }
  return true;
}

}  // namespace tidegate::gateway
