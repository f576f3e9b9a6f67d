// metrics/quantile.h — quantiles from histogram buckets, as Prometheus' histogram_quantile()
// computes them, for callers that hold bucket counts (the dashboard's per-second TTFT, the demo's
// status line, the bench) rather than a Prometheus server.
//
// Contract: BucketQuantile(bounds, counts, q): `bounds` are the finite upper bounds in ascending
// order, `counts` the NON-cumulative count of each bucket with the +Inf bucket last
// (bounds.size() + 1 entries). The q-quantile (0 < q < 1) is interpolated linearly within the
// bucket that holds rank q × total; the first bucket starts at 0; a rank in the +Inf bucket gives
// the highest finite bound. nullopt when nothing was counted or the sizes disagree.
// Thread-safety: a pure function.
#pragma once

#include <optional>
#include <vector>

namespace tidegate::metrics {

std::optional<double> BucketQuantile(const std::vector<double>& bounds,
                                     const std::vector<double>& counts, double q);

}  // namespace tidegate::metrics
