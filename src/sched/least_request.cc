// Least-outstanding-requests picking with a random tie-break, plus plain round-robin.
#include <atomic>
#include <limits>
#include <random>

#include "sched/picker.h"
#include "sched/policies.h"

namespace tidegate::sched {

uint64_t FastRandom() {
  thread_local uint64_t state = [] {
    std::random_device rd;
    return (static_cast<uint64_t>(rd()) << 32) ^ rd();
  }();
  uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

namespace {

class LeastRequestPicker final : public Picker {
 public:
  std::string_view name() const override { return "least-request"; }

  PickResult Pick(const RequestInfo&, const pool::Pool& pool, Nanos now) override {
    PickResult out;
    // Selection of the best few by repeated scans: the fallback list is short, so this is
    // O(k·n) with no allocation.
    uint64_t taken = 0;  // bitmap for the first 64; beyond that we re-check the order list
    auto already = [&](uint32_t i) {
      if (i < 64) return ((taken >> i) & 1) != 0;
      for (uint32_t k = 0; k < out.count; ++k)
        if (out.order[k] == i) return true;
      return false;
    };
    const size_t n = pool.size();
    for (size_t round = 0; round < PickResult::kMaxChoices; ++round) {
      int best_load = std::numeric_limits<int>::max();
      uint32_t best = UINT32_MAX;
      uint32_t ties = 0;
      for (uint32_t i = 0; i < n; ++i) {
        const auto& ep = pool.at(i);
        if (already(i) || !ep.Available(now)) continue;
        int load = ep.InFlight();
        if (load < best_load) {
          best_load = load;
          best = i;
          ties = 1;
        } else if (load == best_load) {
          // Reservoir sampling: each tied endpoint ends up chosen with equal probability.
          ++ties;
          if (FastRandom() % ties == 0) best = i;
        }
      }
      if (best == UINT32_MAX) break;
      out.Push(best);
      if (best < 64) taken |= (1ULL << best);
    }
    return out;
  }
};

class RoundRobinPicker final : public Picker {
 public:
  std::string_view name() const override { return "round-robin"; }

  PickResult Pick(const RequestInfo&, const pool::Pool& pool, Nanos now) override {
    PickResult out;
    const size_t n = pool.size();
    if (n == 0) return out;
    size_t start = next_.fetch_add(1, std::memory_order_relaxed) % n;
    for (size_t k = 0; k < n && out.count < PickResult::kMaxChoices; ++k) {
      size_t i = (start + k) % n;
      if (pool.at(i).Available(now)) out.Push(static_cast<uint32_t>(i));
    }
    return out;
  }

 private:
  std::atomic<size_t> next_{0};
};

}  // namespace

std::unique_ptr<Picker> MakePicker(std::string_view name) {
  if (name == "least-request") return std::make_unique<LeastRequestPicker>();
  if (name == "round-robin") return std::make_unique<RoundRobinPicker>();
  return MakePolicyPicker(name);
}

std::vector<std::string> PickerNames() {
  std::vector<std::string> names = {"least-request", "round-robin"};
  for (auto& n : PolicyNames()) names.push_back(std::move(n));
  return names;
}

}  // namespace tidegate::sched
