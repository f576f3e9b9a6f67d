#include "metrics/registry.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace tidegate::metrics {

size_t ThreadShard() {
  static std::atomic<size_t> next{0};
  thread_local const size_t shard = next.fetch_add(1, std::memory_order_relaxed) % kShards;
  return shard;
}

Histogram::Histogram(const std::vector<double>& bounds)
    : bounds_(bounds),
      lines_per_shard_((bounds.size() + 1 + 7) / 8),
      lines_(new Line[kShards * lines_per_shard_]) {
  for (size_t i = 0; i < kShards * lines_per_shard_; ++i)
    for (auto& v : lines_[i].v) v.store(0, std::memory_order_relaxed);
}

void Histogram::Observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  const size_t s = ThreadShard();
  Bucket(s, i).fetch_add(1, std::memory_order_relaxed);
  Shard& sh = shards_[s];
  sh.count.fetch_add(1, std::memory_order_relaxed);
  double cur = sh.sum.load(std::memory_order_relaxed);
  while (!sh.sum.compare_exchange_weak(cur, cur + v, std::memory_order_relaxed)) {
  }
}

uint64_t Histogram::BucketCount(size_t i) const {
  uint64_t n = 0;
  for (size_t s = 0; s < kShards; ++s) n += Bucket(s, i).load(std::memory_order_relaxed);
  return n;
}

uint64_t Histogram::Count() const {
  uint64_t n = 0;
  for (const auto& sh : shards_) n += sh.count.load(std::memory_order_relaxed);
  return n;
}

double Histogram::Sum() const {
  double v = 0;
  for (const auto& sh : shards_) v += sh.sum.load(std::memory_order_relaxed);
  return v;
}

std::vector<double> LatencyBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
}

std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    std::snprintf(buf, sizeof buf, "%.0f", v);
  } else {
    std::snprintf(buf, sizeof buf, "%.9g", v);
  }
  return buf;
}

namespace {

void AppendEscaped(std::string& out, std::string_view s, bool is_help) {
  for (char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && !is_help) {
      out += "\\\"";
    } else {
      out += c;
    }
  }
}

const char* TypeName(Type t) {
  switch (t) {
    case Type::kCounter:
      return "counter";
    case Type::kGauge:
      return "gauge";
    case Type::kHistogram:
      return "histogram";
  }
  return "untyped";
}

}  // namespace

void FamilyBase::RenderHeader(std::string& out) const {
  out += "# HELP ";
  out += name_;
  out += ' ';
  AppendEscaped(out, help_, true);
  out += "\n# TYPE ";
  out += name_;
  out += ' ';
  out += TypeName(type_);
  out += '\n';
}

std::string FamilyBase::LabelString(const std::vector<std::string>& values,
                                    std::string_view extra_name,
                                    std::string_view extra_value) const {
  if (labels_.empty() && extra_name.empty()) return {};
  std::string out = "{";
  bool first = true;
  for (size_t i = 0; i < labels_.size() && i < values.size(); ++i) {
    if (!first) out += ',';
    first = false;
    out += labels_[i];
    out += "=\"";
    AppendEscaped(out, values[i], false);
    out += '"';
  }
  if (!extra_name.empty()) {
    if (!first) out += ',';
    out += extra_name;
    out += "=\"";
    out += extra_value;
    out += '"';
  }
  out += '}';
  return out;
}

template <typename M>
M& Family<M>::With(const std::vector<std::string>& values) {
  std::lock_guard lock(mu_);
  auto it = children_.find(values);
  if (it != children_.end()) return *it->second;
  std::unique_ptr<M> child;
  if constexpr (std::is_same_v<M, Histogram>) {
    child = std::make_unique<Histogram>(bounds_);
  } else {
    child = std::make_unique<M>();
  }
  M& ref = *child;
  children_.emplace(values, std::move(child));
  return ref;
}

template <typename M>
void Family<M>::RetainFirstLabel(const std::vector<std::string>& keep) {
  std::lock_guard lock(mu_);
  std::erase_if(children_, [&](const auto& kv) {
    return kv.first.empty() || !std::binary_search(keep.begin(), keep.end(), kv.first[0]);
  });
}

template <typename M>
void Family<M>::Render(std::string& out) const {
  RenderHeader(out);
  std::lock_guard lock(mu_);
  for (const auto& [values, child] : children_) {
    if constexpr (std::is_same_v<M, Histogram>) {
      uint64_t cumulative = 0;
      const auto& b = child->bounds();
      for (size_t i = 0; i <= b.size(); ++i) {
        cumulative += child->BucketCount(i);
        out += name_;
        out += "_bucket";
        out += LabelString(values, "le", i < b.size() ? FormatValue(b[i]) : "+Inf");
        out += ' ';
        out += std::to_string(cumulative);
        out += '\n';
      }
      out += name_ + "_sum" + LabelString(values) + ' ' + FormatValue(child->Sum()) + '\n';
      out += name_ + "_count" + LabelString(values) + ' ' + std::to_string(cumulative) + '\n';
    } else {
      out += name_;
      out += LabelString(values);
      out += ' ';
      out += FormatValue(static_cast<double>(child->Value()));
      out += '\n';
    }
  }
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

template <typename M>
Family<M>& Registry::Add(std::unique_ptr<Family<M>> f) {
  std::lock_guard lock(mu_);
  auto& ref = *f;
  families_.push_back(std::move(f));
  return ref;
}

Family<Counter>& Registry::AddCounter(std::string name, std::string help,
                                      std::vector<std::string> labels) {
  return Add(std::make_unique<Family<Counter>>(std::move(name), std::move(help), Type::kCounter,
                                               std::move(labels)));
}

Family<Gauge>& Registry::AddGauge(std::string name, std::string help,
                                  std::vector<std::string> labels) {
  return Add(std::make_unique<Family<Gauge>>(std::move(name), std::move(help), Type::kGauge,
                                             std::move(labels)));
}

Family<Gauge>& Registry::AddFloatCounter(std::string name, std::string help,
                                         std::vector<std::string> labels) {
  return Add(std::make_unique<Family<Gauge>>(std::move(name), std::move(help), Type::kCounter,
                                             std::move(labels)));
}

Family<Histogram>& Registry::AddHistogram(std::string name, std::string help,
                                          std::vector<double> bounds,
                                          std::vector<std::string> labels) {
  return Add(std::make_unique<Family<Histogram>>(std::move(name), std::move(help), Type::kHistogram,
                                                 std::move(labels), std::move(bounds)));
}

std::string Registry::Render() const {
  std::string out;
  out.reserve(8192);
  std::lock_guard lock(mu_);
  for (const auto& f : families_) f->Render(out);
  return out;
}

}  // namespace tidegate::metrics
