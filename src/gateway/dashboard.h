// gateway/dashboard.h — the live dashboard's memory: the last few minutes of one-second points
// (pool utilisation by class, requests/s by class, TTFT p50/p99 of streamed requests), sampled
// off the data plane, and the JSON the page polls (GET /dashboard/data). The page itself is an
// embedded asset (DashboardPage()).
//
// Contract:
//  * Classes: "async" is sheddable traffic (priority < 0: what the async processor sends),
//    "realtime" is everything else.
//  * Sample(now, in_flight) is called about every 100 ms with each endpoint's (in flight,
//    sheddable in flight) counts. An endpoint with at least one request in flight is busy for the
//    time since the previous sample, and that time is split between the classes in proportion to
//    their counts. The busy time goes to the point being built and to the per-endpoint
//    `tidegate_endpoint_busy_seconds_total{endpoint,class}` counters. (Busy means what the
//    simulator's busy seconds and the bench's utilisation mean: the server had work.)
//  * Close(now, unix_ms, totals) ends the point being built: utilisation per class = busy time /
//    (elapsed × endpoints); requests/s from the deltas of the per-class request counters; TTFT
//    quantiles from the deltas of the TTFT histogram's buckets (null when none arrived). The
//    first Close() only takes the baseline. Points older than the window are dropped.
//  * DataJson(since_ms, ...) renders the points newer than since_ms (oldest first), the latest
//    processor view, the pool saturation, the flow-control queues and the endpoint table.
// Thread-safety: Sample(), Close() and SetProcessor() come from one thread (the gateway's
// control loop); DataJson() may be called from any thread. A mutex guards the points; it is
// never taken on the data plane.
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "control/director.h"
#include "metrics/registry.h"
#include "pool/endpoint.h"

namespace tidegate::gateway {

// What the async processor's /metrics said, for the dashboard (null fields: not exported).
struct ProcessorView {
  std::string url;
  bool up = false;
  std::string error;
  std::optional<double> backlog, held, in_flight, done, failed, shed, retries, deadline_misses,
      escalated;
};

struct DashboardPoint {
  int64_t t_ms = 0;  // Unix ms at the end of the point
  double util_realtime = 0, util_async = 0;
  double rps_realtime = 0, rps_async = 0;
  std::optional<double> ttft_p50_ms, ttft_p99_ms;
  int in_flight_realtime = 0, in_flight_async = 0;
};

// Cumulative totals read at Close().
struct DashboardTotals {
  uint64_t requests_realtime = 0, requests_async = 0;
  std::vector<double> ttft_counts;  // non-cumulative, one per bucket + Inf (ttft_bounds)
};

class Dashboard {
 public:
  // `busy` is the family of tidegate_endpoint_busy_seconds_total (endpoint, class); null = none.
  Dashboard(const pool::Pool& pool, metrics::Family<metrics::Gauge>* busy,
            std::vector<double> ttft_bounds, Nanos window = std::chrono::minutes(5));

  struct InFlight {
    int total = 0, sheddable = 0;
  };
  void Sample(Nanos now, const std::vector<InFlight>& in_flight);
  void Close(Nanos now, int64_t unix_ms, const DashboardTotals& totals);
  void SetProcessor(ProcessorView v);

  std::vector<DashboardPoint> PointsSince(int64_t since_ms) const;
  std::optional<ProcessorView> Processor() const;

  std::string DataJson(int64_t since_ms, int64_t now_unix_ms, const pool::Pool& pool,
                       const control::Director& director, std::string_view default_engine,
                       Nanos now) const;

 private:
  const pool::Pool& pool_;
  metrics::Family<metrics::Gauge>* const busy_;
  const std::vector<double> bounds_;
  const Nanos window_;
  // Per pool slot: the busy counters of the endpoint object `uid` (control loop only).
  struct Busy {
    uint64_t uid = 0;
    metrics::Gauge *rt = nullptr, *async = nullptr;
  };
  std::vector<Busy> busy_by_slot_;

  // The point being built (control loop only).
  bool sampled_ = false;
  Nanos last_sample_{0};
  double busy_rt_s_ = 0, busy_async_s_ = 0;
  double endpoint_s_ = 0;  // seconds × active endpoints: the capacity of the interval
  InFlight last_total_{};
  bool have_base_ = false;
  Nanos base_at_{0};
  DashboardTotals base_;

  mutable std::mutex mu_;
  std::deque<DashboardPoint> points_;       // guarded by mu_
  std::optional<ProcessorView> processor_;  // guarded by mu_
};

// The page served at GET /dashboard (self-contained HTML, embedded at build time).
std::string_view DashboardPage();

// Reads the dashboard's figures from an async processor's Prometheus page; false when the text
// does not parse.
bool ParseProcessorMetrics(std::string_view text, ProcessorView* out);

}  // namespace tidegate::gateway
