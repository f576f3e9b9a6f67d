// sched/prefix_index.h — approximate record of which endpoint holds which prompt prefix.
//
// Contract: the index maps a chained block hash (sched/framework.h ChainedBlockHashes) to the
// endpoints that were sent a prompt containing that block, and keeps for every endpoint an
// approximate LRU (CLOCK: FIFO with a second chance for blocks used since they were queued) of
// at most `capacity_per_endpoint` block hashes, mirroring the engine's own prefix-cache eviction;
// an eviction gives at most kMaxSecondChances blocks a second chance, so it is O(1).
// A block remembers at most kMaxHolders endpoints (the least recently used holder is forgotten
// first). Match() reports, for every endpoint that holds the first block, how many leading blocks
// of the prompt it holds (binary search over the chain, O(holders · log blocks) lookups, never
// proportional to the pool size).
// Record() learns that `endpoint` was sent the whole prompt; Forget() takes that back (the ring
// items it leaves behind are dropped when they reach the head).
// Thread-safety: all methods are safe from any thread (one mutex; the critical sections are a
// few hundred hash-table operations at most, and hashing happens outside them).
#pragma once

#include <boost/unordered/unordered_flat_map.hpp>
#include <cstdint>
#include <mutex>
#include <span>
#include <vector>

namespace tidegate::sched {

class PrefixIndex {
 public:
  static constexpr uint32_t kMaxHolders = 8;
  static constexpr int kMaxSecondChances = 8;

  explicit PrefixIndex(size_t capacity_per_endpoint) : capacity_(capacity_per_endpoint) {}

  // For each endpoint e that holds block 0: (*matched)[e] = number of leading blocks it holds,
  // and e is appended to *touched. `matched` must be zero for every endpoint on entry and be at
  // least as large as the highest endpoint index recorded (larger indices are ignored).
  void Match(std::span<const uint64_t> hashes, std::span<uint32_t> matched,
             std::vector<uint32_t>* touched) const;
  // `capacity` > 0 sets this endpoint's own ring capacity (from its engine's cache size; the
  // oldest blocks beyond it are evicted), 0 keeps what it has (capacity_per_endpoint at first).
  void Record(uint32_t endpoint, std::span<const uint64_t> hashes, size_t capacity = 0);
  size_t CapacityOf(uint32_t endpoint) const;
  // Forgets that `endpoint` holds these blocks (a request recorded there never reached it).
  void Forget(uint32_t endpoint, std::span<const uint64_t> hashes);
  // Forgets everything about `endpoint` (it left the pool): its blocks and its capacity.
  void DropEndpoint(uint32_t endpoint);

  size_t capacity_per_endpoint() const { return capacity_; }
  size_t BlocksHeld(uint32_t endpoint) const;  // ring occupancy, for tests and /v1/pool
  size_t DistinctBlocks() const;

 private:
  struct Entry {
    uint32_t count = 0;
    uint32_t ids[kMaxHolders];
    uint64_t ticks[kMaxHolders];   // last use
    uint64_t queued[kMaxHolders];  // tick of the holder's live ring item
  };
  struct Item {
    uint64_t hash;
    uint64_t tick;  // when queued
  };
  struct Ring {
    std::vector<Item> buf;
    size_t head = 0, size = 0;
    size_t capacity = 0;  // 0 = capacity_
    void Push(Item x);
    Item Pop();
  };
  void EvictOne(uint32_t endpoint, Ring& ring);
  // Removes `endpoint` from the block's holders; false when it was not one.
  static bool DropHolder(Entry& e, uint32_t endpoint);

  size_t capacity_;
  mutable std::mutex mu_;
  boost::unordered_flat_map<uint64_t, Entry> map_;
  std::vector<Ring> rings_;
  uint64_t tick_ = 0;
};

}  // namespace tidegate::sched
