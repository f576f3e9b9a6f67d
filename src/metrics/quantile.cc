#include "metrics/quantile.h"

namespace tidegate::metrics {

std::optional<double> BucketQuantile(const std::vector<double>& bounds,
                                     const std::vector<double>& counts, double q) {
  if (counts.size() != bounds.size() + 1) return std::nullopt;
  double total = 0;
  for (double c : counts) total += c > 0 ? c : 0;
  if (total <= 0) return std::nullopt;
  const double rank = q * total;
  double below = 0, lower = 0;
  for (size_t i = 0; i < bounds.size(); ++i) {
    const double c = counts[i] > 0 ? counts[i] : 0;
    if (below + c >= rank && c > 0) return lower + (bounds[i] - lower) * (rank - below) / c;
    below += c;
    lower = bounds[i];
  }
  return bounds.empty() ? std::nullopt : std::optional<double>(bounds.back());
}

}  // namespace tidegate::metrics
