// sched/kv_block_index.h — the precise record of which endpoint's engine holds which KV blocks,
// built from the engines' own KV events (kvevents/), for precise-prefix-cache-scorer.
//
// Contract:
//  - Keys. A block's key is the gateway's own chained hash of its token ids: key_0 =
//    H(RootKey(adapter), tokens of block 0), key_i = H(key_{i-1}, tokens of block i). Store()
//    maps each engine block hash to that key when the block is stored (the engine's parent hash
//    gives the chain's previous key), so the engine's hash seed never needs reproducing; a
//    request's keys come from ChainKeys() over its own token ids.
//  - Store() of blocks whose parent the endpoint does not hold (its BlockStored was lost, or the
//    parent was evicted first) is refused as orphaned: their keys cannot be known. A block_size
//    other than the index's (the first block stored sets it) is refused too.
//  - Media: a block may be held in several tiers (GPU, CPU, other); it is held while any remains.
//    Match() weighs a run by the best tier of its last block: GPU 1.0, CPU 0.8, other 0.5.
//  - Match(): for every endpoint holding the first key, the length of its longest run of
//    consecutive leading keys, found by binary search (engines evict a prompt's tail before its
//    head, so what an engine holds of one prompt is a prefix), times the tier weight.
//    O(holders · log blocks) lookups, independent of the pool size.
//  - Bounds: at most max_blocks_per_endpoint blocks per endpoint (Store() refuses more and
//    counts them); kBytesPerBlock is the measured-by-layout cost of one held block.
//  - Live: an endpoint is live while its event feed is connected and in sequence (the subscriber
//    says so through SetLive); the scorer trusts only live endpoints and falls back to the
//    approximate index for the others. Clear() keeps the live flag.
// Thread-safety: every method may be called from any thread (a shared mutex: decisions read
// concurrently, the event feed writes).
#pragma once

#include <atomic>
#include <boost/container/small_vector.hpp>
#include <boost/unordered/unordered_flat_map.hpp>
#include <cstdint>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string_view>
#include <vector>

namespace tidegate::sched {

class KvBlockIndex {
 public:
  // engine hash → (key, media) 24 B and key → (media, refs) 16 B per endpoint, plus the shared
  // key → holders entry (~40 B), at the flat maps' 7/8 maximum load: ≈ 100 bytes a block.
  static constexpr size_t kBytesPerBlock = 100;
  static constexpr size_t kDefaultMaxBlocksPerEndpoint = size_t{1} << 18;  // ≈ 26 MB each
  static constexpr uint32_t kMaxEndpoints = 4096;

  static uint8_t MediumBit(std::string_view medium);  // "" / "GPU" → 1, "CPU" → 2, other → 4
  static double TierWeight(uint8_t media);            // best held tier's weight
  static uint64_t RootKey(std::string_view adapter);
  // Appends the keys of the leading full blocks of `tokens` (at most max_blocks) to *out.
  static void ChainKeys(uint64_t root, std::span<const uint32_t> tokens, size_t block_size,
                        size_t max_blocks, std::vector<uint64_t>* out);

  explicit KvBlockIndex(size_t max_blocks_per_endpoint = kDefaultMaxBlocksPerEndpoint);

  struct StoreResult {
    size_t stored = 0, orphaned = 0, refused = 0;
  };
  StoreResult Store(uint32_t endpoint, std::span<const uint64_t> engine_hashes,
                    std::optional<uint64_t> parent, std::span<const uint32_t> tokens,
                    size_t block_size, std::string_view adapter, std::string_view medium);
  // Returns how many of the blocks were held.
  size_t Remove(uint32_t endpoint, std::span<const uint64_t> engine_hashes,
                std::string_view medium);
  void Clear(uint32_t endpoint);

  void SetLive(uint32_t endpoint, bool live);
  bool Live(uint32_t endpoint) const {
    return endpoint < kMaxEndpoints && live_[endpoint].load(std::memory_order_relaxed);
  }
  size_t block_size() const { return block_size_.load(std::memory_order_relaxed); }

  // (*matched)[e] = the weighted run for each endpoint e holding keys[0]; e is appended to
  // *touched. `matched` must be zero on entry and cover every endpoint index.
  void Match(std::span<const uint64_t> keys, std::span<double> matched,
             std::vector<uint32_t>* touched) const;

  size_t Blocks(uint32_t endpoint) const;
  size_t TotalBlocks() const;
  std::vector<uint64_t> EngineHashes(uint32_t endpoint) const;  // sorted
  size_t max_blocks_per_endpoint() const { return cap_; }

 private:
  struct Held {
    uint64_t key;
    uint8_t media;
  };
  // Engine blocks with this key, and how many of them are held in each tier (several engine
  // hashes can map to one key: e.g. a cache salt, or image placeholders with equal token ids).
  struct KeyRef {
    uint32_t refs = 0;
    uint32_t tiers[3] = {0, 0, 0};  // GPU, CPU, other
    uint8_t media() const {
      return static_cast<uint8_t>((tiers[0] ? 1 : 0) | (tiers[1] ? 2 : 0) | (tiers[2] ? 4 : 0));
    }
    void Count(uint8_t bits, int delta) {
      for (int t = 0; t < 3; ++t)
        if (bits & (1 << t))
          tiers[t] = static_cast<uint32_t>(static_cast<int64_t>(tiers[t]) + delta);
    }
  };
  struct PerEndpoint {
    boost::unordered_flat_map<uint64_t, Held> by_engine;
    boost::unordered_flat_map<uint64_t, KeyRef> keys;
  };
  void AddKey(uint32_t e, PerEndpoint& p, uint64_t key, uint8_t media);
  void DropKey(uint32_t e, PerEndpoint& p, uint64_t key, uint8_t media);

  size_t cap_;
  mutable std::shared_mutex mu_;
  std::vector<PerEndpoint> eps_;
  boost::unordered_flat_map<uint64_t, boost::container::small_vector<uint32_t, 2>> holders_;
  std::atomic<size_t> block_size_{0};
  std::unique_ptr<std::atomic<bool>[]> live_;
};

// The process's index: the gateway's KV event feed writes it, every precise-prefix-cache-scorer
// reads it.
KvBlockIndex& SharedKvBlockIndex();

}  // namespace tidegate::sched
