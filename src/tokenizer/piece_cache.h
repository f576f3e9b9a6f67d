// tokenizer/piece_cache.h — a bounded, sharded string → token-ids cache.
//
// Contract: Get() appends the cached ids of `key` to `out` and returns true, or returns false
// and leaves `out` alone. Put() stores a copy of the ids. The cache holds about `capacity`
// entries: each shard keeps two generations (current, previous); when the current one is full it
// becomes the previous one and the old previous one is dropped, and a hit in the previous
// generation is promoted. That is an approximate LRU with O(1) work per call and no per-entry
// bookkeeping. Keys longer than max_key_bytes are not cached (Put ignores them).
// Thread-safety: every method may be called concurrently; each shard has its own mutex, and a
// key's shard is chosen by its hash, so concurrent Encode() calls on different words rarely
// contend. hits()/misses() are relaxed counters, for tests and metrics.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace tidegate::tokenizer {

class PieceCache {
 public:
  explicit PieceCache(size_t capacity, size_t max_key_bytes = 256)
      : per_shard_(capacity == 0 ? 0 : capacity / kShards + 1), max_key_bytes_(max_key_bytes) {}
  PieceCache(const PieceCache&) = delete;
  PieceCache& operator=(const PieceCache&) = delete;

  bool Get(std::string_view key, std::vector<int32_t>* out) const {
    if (per_shard_ == 0) return false;
    const size_t h = std::hash<std::string_view>{}(key);
    Shard& s = shards_[h % kShards];
    std::lock_guard lock(s.mu);
    auto it = s.current.find(key);
    if (it == s.current.end()) {
      auto old = s.previous.find(key);
      if (old == s.previous.end()) {
        misses_.fetch_add(1, std::memory_order_relaxed);
        return false;
      }
      // Promote: the entry survives the next generation change.
      auto node = s.previous.extract(old);
      it = InsertLocked(s, std::move(node.key()), std::move(node.mapped()));
    }
    out->insert(out->end(), it->second.begin(), it->second.end());
    hits_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }

  void Put(std::string_view key, std::span<const int32_t> ids) const {
    if (per_shard_ == 0 || key.size() > max_key_bytes_) return;
    const size_t h = std::hash<std::string_view>{}(key);
    Shard& s = shards_[h % kShards];
    std::lock_guard lock(s.mu);
    if (s.current.find(key) != s.current.end()) return;
    InsertLocked(s, std::string(key), std::vector<int32_t>(ids.begin(), ids.end()));
  }

  size_t size() const {
    size_t n = 0;
    for (auto& s : shards_) {
      std::lock_guard lock(s.mu);
      n += s.current.size() + s.previous.size();
    }
    return n;
  }
  uint64_t hits() const { return hits_.load(std::memory_order_relaxed); }
  uint64_t misses() const { return misses_.load(std::memory_order_relaxed); }

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using Map = std::unordered_map<std::string, std::vector<int32_t>, Hash, std::equal_to<>>;
  struct Shard {
    mutable std::mutex mu;
    Map current, previous;
  };
  static constexpr size_t kShards = 16;

  Map::iterator InsertLocked(Shard& s, std::string key, std::vector<int32_t> ids) const {
    if (s.current.size() >= per_shard_) {
      s.previous = std::move(s.current);
      s.current = Map();
    }
    return s.current.emplace(std::move(key), std::move(ids)).first;
  }

  const size_t per_shard_;
  const size_t max_key_bytes_;
  mutable Shard shards_[kShards];
  mutable std::atomic<uint64_t> hits_{0}, misses_{0};
};

}  // namespace tidegate::tokenizer
