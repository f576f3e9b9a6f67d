#include "sched/kv_block_index.h"

#include <algorithm>
#include <mutex>

#include "sched/framework.h"

namespace tidegate::sched {

uint8_t KvBlockIndex::MediumBit(std::string_view m) {
  if (m.empty() || m == "GPU" || m == "gpu" || m == "cuda") return 1;
  if (m == "CPU" || m == "cpu") return 2;
  return 4;
}

double KvBlockIndex::TierWeight(uint8_t media) {
  if (media & 1) return 1.0;
  if (media & 2) return 0.8;
  if (media & 4) return 0.5;
  return 0;
}

uint64_t KvBlockIndex::RootKey(std::string_view adapter) {
  return HashBytes64(adapter, 0x6b76626c6f636b73ULL);  // "kvblocks"
}

void KvBlockIndex::ChainKeys(uint64_t root, std::span<const uint32_t> tokens, size_t block_size,
                             size_t max_blocks, std::vector<uint64_t>* out) {
  if (block_size == 0) return;
  const size_t n = std::min(tokens.size() / block_size, max_blocks);
  uint64_t prev = root;
  for (size_t i = 0; i < n; ++i) {
    std::string_view bytes(reinterpret_cast<const char*>(tokens.data() + i * block_size),
                           block_size * sizeof(uint32_t));
    prev = HashBytes64(bytes, prev);
    out->push_back(prev);
  }
}

KvBlockIndex::KvBlockIndex(size_t cap)
    : cap_(std::max<size_t>(1, cap)), live_(new std::atomic<bool>[kMaxEndpoints]) {
  for (uint32_t i = 0; i < kMaxEndpoints; ++i) live_[i].store(false, std::memory_order_relaxed);
}

void KvBlockIndex::AddKey(uint32_t e, PerEndpoint& p, uint64_t key, uint8_t media) {
  KeyRef& k = p.keys[key];
  if (k.refs++ == 0) {
    auto& h = holders_[key];
    if (std::find(h.begin(), h.end(), e) == h.end()) h.push_back(e);
  }
  k.Count(media, +1);
}

void KvBlockIndex::DropKey(uint32_t e, PerEndpoint& p, uint64_t key, uint8_t media) {
  auto it = p.keys.find(key);
  if (it == p.keys.end()) return;
  it->second.Count(media, -1);
  if (--it->second.refs > 0) return;
  p.keys.erase(it);
  auto h = holders_.find(key);
  if (h == holders_.end()) return;
  auto& v = h->second;
  v.erase(std::remove(v.begin(), v.end(), e), v.end());
  if (v.empty()) holders_.erase(h);
}

KvBlockIndex::StoreResult KvBlockIndex::Store(uint32_t e, std::span<const uint64_t> hashes,
                                              std::optional<uint64_t> parent,
                                              std::span<const uint32_t> tokens, size_t block_size,
                                              std::string_view adapter, std::string_view medium) {
  StoreResult r;
  if (e >= kMaxEndpoints || block_size == 0) {
    r.refused = hashes.size();
    return r;
  }
  if (const size_t bs = block_size_.load(); bs != 0 && bs != block_size) {
    r.refused = hashes.size();
    return r;
  }
  const uint8_t bit = MediumBit(medium);
  std::unique_lock lock(mu_);
  if (eps_.size() <= e) eps_.resize(e + 1);
  PerEndpoint& p = eps_[e];
  uint64_t prev;
  if (parent) {
    auto it = p.by_engine.find(*parent);
    if (it == p.by_engine.end()) {
      r.orphaned = hashes.size();
      return r;
    }
    prev = it->second.key;
  } else {
    prev = RootKey(adapter);
  }
  for (size_t i = 0; i < hashes.size(); ++i) {
    if ((i + 1) * block_size > tokens.size()) {  // fewer token ids than blocks: cannot key them
      r.orphaned += hashes.size() - i;
      break;
    }
    std::string_view bytes(reinterpret_cast<const char*>(tokens.data() + i * block_size),
                           block_size * sizeof(uint32_t));
    const uint64_t key = HashBytes64(bytes, prev);
    prev = key;
    auto it = p.by_engine.find(hashes[i]);
    if (it != p.by_engine.end()) {  // the same block stored again (another tier, or re-stored)
      if (it->second.key != key) {
        DropKey(e, p, it->second.key, it->second.media);
        it->second = {key, bit};
        AddKey(e, p, key, bit);
      } else if (!(it->second.media & bit)) {
        it->second.media |= bit;
        p.keys[key].Count(bit, +1);
      }
      ++r.stored;
      continue;
    }
    if (p.by_engine.size() >= cap_) {
      r.refused += hashes.size() - i;
      break;
    }
    p.by_engine.emplace(hashes[i], Held{key, bit});
    AddKey(e, p, key, bit);
    ++r.stored;
  }
  if (r.stored > 0) {
    size_t expected = 0;
    block_size_.compare_exchange_strong(expected, block_size);
  }
  return r;
}

size_t KvBlockIndex::Remove(uint32_t e, std::span<const uint64_t> hashes, std::string_view medium) {
  const uint8_t bit = MediumBit(medium);
  std::unique_lock lock(mu_);
  if (e >= eps_.size()) return 0;
  PerEndpoint& p = eps_[e];
  size_t n = 0;
  for (uint64_t h : hashes) {
    auto it = p.by_engine.find(h);
    if (it == p.by_engine.end()) continue;
    if (!(it->second.media & bit)) continue;  // not held in that tier
    ++n;
    it->second.media &= static_cast<uint8_t>(~bit);
    if (it->second.media != 0) {
      p.keys[it->second.key].Count(bit, -1);
      continue;
    }
    const uint64_t key = it->second.key;
    p.by_engine.erase(it);
    DropKey(e, p, key, bit);
  }
  return n;
}

void KvBlockIndex::Clear(uint32_t e) {
  std::unique_lock lock(mu_);
  if (e >= eps_.size()) return;
  PerEndpoint& p = eps_[e];
  for (const auto& [key, ref] : p.keys) {
    auto h = holders_.find(key);
    if (h == holders_.end()) continue;
    auto& v = h->second;
    v.erase(std::remove(v.begin(), v.end(), e), v.end());
    if (v.empty()) holders_.erase(h);
  }
  p = PerEndpoint{};
}

void KvBlockIndex::SetLive(uint32_t e, bool live) {
  if (e < kMaxEndpoints) live_[e].store(live, std::memory_order_relaxed);
}

void KvBlockIndex::Match(std::span<const uint64_t> keys, std::span<double> matched,
                         std::vector<uint32_t>* touched) const {
  if (keys.empty()) return;
  std::shared_lock lock(mu_);
  auto h = holders_.find(keys[0]);
  if (h == holders_.end()) return;
  for (uint32_t e : h->second) {
    if (e >= matched.size() || e >= eps_.size()) continue;
    const auto& held = eps_[e].keys;
    // Largest n with keys[n-1] held (keys[0] is): binary search on [1, size].
    size_t lo = 1, hi = keys.size();
    while (lo < hi) {
      size_t mid = lo + (hi - lo + 1) / 2;
      if (held.contains(keys[mid - 1])) {
        lo = mid;
      } else {
        hi = mid - 1;
      }
    }
    auto last = held.find(keys[lo - 1]);
    const double w = last == held.end() ? 0 : TierWeight(last->second.media());
    matched[e] = static_cast<double>(lo) * w;
    touched->push_back(e);
  }
}

size_t KvBlockIndex::Blocks(uint32_t e) const {
  std::shared_lock lock(mu_);
  return e < eps_.size() ? eps_[e].by_engine.size() : 0;
}

size_t KvBlockIndex::TotalBlocks() const {
  std::shared_lock lock(mu_);
  size_t n = 0;
  for (const auto& p : eps_) n += p.by_engine.size();
  return n;
}

std::vector<uint64_t> KvBlockIndex::EngineHashes(uint32_t e) const {
  std::shared_lock lock(mu_);
  std::vector<uint64_t> out;
  if (e < eps_.size())
    for (const auto& [h, held] : eps_[e].by_engine) out.push_back(h);
  std::sort(out.begin(), out.end());
  return out;
}

KvBlockIndex& SharedKvBlockIndex() {
  static KvBlockIndex* index = new KvBlockIndex();  // never destroyed: read until exit
  return *index;
}

}  // namespace tidegate::sched
