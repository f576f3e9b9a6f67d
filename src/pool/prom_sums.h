// pool/prom_sums.h — a Prometheus text page reduced to sums: each series name summed over its
// labels, and each histogram's cumulative `_bucket` counts by `le`. What the demo's status line,
// the bench's sampler and the dashboard's view of the async processor need from a /metrics page.
//
// Contract: SumPromText() parses with ParsePromText(); false (and *out untouched) when the text
// does not parse. Each label named in `split` also gets sums of its own, keyed
// `name{label="value"}` (e.g. tidegate_requests_by_class_total{class="async"}). Get() is 0 for
// an absent series; Find() tells absent from 0.
// Thread-safety: plain data.
#pragma once

#include <functional>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace tidegate::pool {

struct PromSums {
  std::map<std::string, double, std::less<>> sums;  // series name → sum over labels
  // `<name>_bucket` series: le → cumulative count (summed over the other labels), by name
  // without the suffix.
  std::map<std::string, std::map<double, double>, std::less<>> buckets;

  std::optional<double> Find(std::string_view name) const {
    auto it = sums.find(name);
    if (it == sums.end()) return std::nullopt;
    return it->second;
  }
  double Get(std::string_view name) const { return Find(name).value_or(0); }
};

bool SumPromText(std::string_view text, PromSums* out,
                 std::initializer_list<std::string_view> split = {});

}  // namespace tidegate::pool
