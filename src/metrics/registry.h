// metrics/registry.h — Prometheus metrics (counters, gauges, histograms) with labels, rendered
// in the text exposition format (version 0.0.4).
//
// Contract: a Registry owns metric families; a family hands out one child per label-value tuple
// and the child's address never changes, so the hot path can look a child up once and keep the
// pointer. Updates are lock-free atomics; child creation and Render() take the family's mutex.
// Thread-safety: every method may be called from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace tidegate::metrics {

class Counter {
 public:
  void Inc(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

class Gauge {
 public:
  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  void Add(double d) {
    double cur = value_.load(std::memory_order_relaxed);
    while (!value_.compare_exchange_weak(cur, cur + d, std::memory_order_relaxed)) {
    }
  }
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Histogram {
 public:
  explicit Histogram(const std::vector<double>& bounds);
  void Observe(double v);
  const std::vector<double>& bounds() const { return bounds_; }
  // Non-cumulative count in bucket i (i == bounds().size() is the +Inf bucket).
  uint64_t BucketCount(size_t i) const { return buckets_[i].load(std::memory_order_relaxed); }
  uint64_t Count() const { return count_.load(std::memory_order_relaxed); }
  double Sum() const { return sum_.load(std::memory_order_relaxed); }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;
  std::atomic<uint64_t> count_{0};
  std::atomic<double> sum_{0};
};

// Bucket layouts in seconds.
std::vector<double> LatencyBuckets();  // 1 ms .. 60 s

enum class Type { kCounter, kGauge, kHistogram };

class FamilyBase {
 public:
  FamilyBase(std::string name, std::string help, Type type, std::vector<std::string> labels)
      : name_(std::move(name)), help_(std::move(help)), type_(type), labels_(std::move(labels)) {}
  virtual ~FamilyBase() = default;
  virtual void Render(std::string& out) const = 0;
  const std::string& name() const { return name_; }

 protected:
  void RenderHeader(std::string& out) const;
  std::string LabelString(const std::vector<std::string>& values, std::string_view extra_name = {},
                          std::string_view extra_value = {}) const;
  std::string name_, help_;
  Type type_;
  std::vector<std::string> labels_;
};

template <typename M>
class Family final : public FamilyBase {
 public:
  Family(std::string name, std::string help, Type type, std::vector<std::string> labels,
         std::vector<double> bounds = {})
      : FamilyBase(std::move(name), std::move(help), type, std::move(labels)),
        bounds_(std::move(bounds)) {}

  // Returns the child for these label values (created on first use). Pass exactly as many
  // values as the family has label names.
  M& With(const std::vector<std::string>& values);
  void Render(std::string& out) const override;

 private:
  std::vector<double> bounds_;
  mutable std::mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<M>> children_;
};

class Registry {
 public:
  Family<Counter>& AddCounter(std::string name, std::string help,
                              std::vector<std::string> labels = {});
  Family<Gauge>& AddGauge(std::string name, std::string help, std::vector<std::string> labels = {});
  Family<Histogram>& AddHistogram(std::string name, std::string help, std::vector<double> bounds,
                                  std::vector<std::string> labels = {});
  // The whole registry in the Prometheus text format.
  std::string Render() const;

 private:
  mutable std::mutex mu_;
  std::vector<std::unique_ptr<FamilyBase>> families_;
};

// Formats a sample value the way Prometheus expects (integers without exponent, +Inf, NaN).
std::string FormatValue(double v);

}  // namespace tidegate::metrics
