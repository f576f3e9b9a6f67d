// metrics/registry.h — Prometheus metrics (counters, gauges, histograms) with labels, rendered
// in the text exposition format (version 0.0.4).
//
// Contract: a Registry owns metric families; a family hands out one child per label-value tuple
// and the child's address never changes, so the hot path can look a child up once and keep the
// pointer. Updates are lock-free atomics on per-thread shards (each on its own cache line), so
// event loops on different cores never contend for a metric; reads sum the shards. A Gauge is
// either Set() (one writer) or moved by Add() (any thread): do not mix the two on one gauge.
// Child creation and Render() take the family's mutex.
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

// Shards per metric: a thread always updates the same one (threads are spread round-robin).
inline constexpr size_t kShards = 4;
size_t ThreadShard();

class Counter {
 public:
  void Inc(uint64_t n = 1) { cells_[ThreadShard()].v.fetch_add(n, std::memory_order_relaxed); }
  uint64_t Value() const {
    uint64_t sum = 0;
    for (const auto& c : cells_) sum += c.v.load(std::memory_order_relaxed);
    return sum;
  }

 private:
  struct alignas(64) Cell {
    std::atomic<uint64_t> v{0};
  };
  Cell cells_[kShards];
};

class Gauge {
 public:
  void Set(double v) {
    for (auto& c : adds_) c.v.store(0, std::memory_order_relaxed);
    value_.store(v, std::memory_order_relaxed);
  }
  void Add(double d) {
    auto& a = adds_[ThreadShard()].v;  // only this thread's shard: the CAS does not contend
    double cur = a.load(std::memory_order_relaxed);
    while (!a.compare_exchange_weak(cur, cur + d, std::memory_order_relaxed)) {
    }
  }
  double Value() const {
    double v = value_.load(std::memory_order_relaxed);
    for (const auto& c : adds_) v += c.v.load(std::memory_order_relaxed);
    return v;
  }

 private:
  struct alignas(64) Cell {
    std::atomic<double> v{0};
  };
  std::atomic<double> value_{0};
  Cell adds_[kShards];
};

class Histogram {
 public:
  explicit Histogram(const std::vector<double>& bounds);
  void Observe(double v);
  const std::vector<double>& bounds() const { return bounds_; }
  // Non-cumulative count in bucket i (i == bounds().size() is the +Inf bucket).
  uint64_t BucketCount(size_t i) const;
  uint64_t Count() const;
  double Sum() const;

 private:
  struct alignas(64) Shard {
    std::atomic<uint64_t> count{0};
    std::atomic<double> sum{0};
  };
  struct alignas(64) Line {
    std::atomic<uint64_t> v[8];
  };
  std::atomic<uint64_t>& Bucket(size_t shard, size_t i) const {
    return lines_[shard * lines_per_shard_ + i / 8].v[i % 8];
  }
  std::vector<double> bounds_;
  size_t lines_per_shard_;  // bucket counters of a shard, in whole cache lines
  std::unique_ptr<Line[]> lines_;
  Shard shards_[kShards];
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
  // Drops every child whose first label value is not in `keep` (sorted), e.g. the series of
  // endpoints that left the pool. REQUIRES: nobody holds a reference to a dropped child.
  void RetainFirstLabel(const std::vector<std::string>& keep);
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
  // A counter whose increments are fractional (seconds of something): a Gauge that is only ever
  // Add()ed to, exposed as TYPE counter.
  Family<Gauge>& AddFloatCounter(std::string name, std::string help,
                                 std::vector<std::string> labels = {});
  Family<Histogram>& AddHistogram(std::string name, std::string help, std::vector<double> bounds,
                                  std::vector<std::string> labels = {});
  // The whole registry in the Prometheus text format.
  std::string Render() const;

 private:
  template <typename M>
  Family<M>& Add(std::unique_ptr<Family<M>> f);
  mutable std::mutex mu_;
  std::vector<std::unique_ptr<FamilyBase>> families_;
};

// Formats a sample value the way Prometheus expects (integers without exponent, +Inf, NaN).
std::string FormatValue(double v);

}  // namespace tidegate::metrics
