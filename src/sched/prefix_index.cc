#include "sched/prefix_index.h"

namespace tidegate::sched {

void PrefixIndex::Ring::Push(Item x) {
  if (size == buf.size()) {
    std::vector<Item> grown(std::max<size_t>(16, buf.size() * 2));
    for (size_t i = 0; i < size; ++i) grown[i] = buf[(head + i) % buf.size()];
    buf.swap(grown);
    head = 0;
  }
  buf[(head + size) % buf.size()] = x;
  ++size;
}

PrefixIndex::Item PrefixIndex::Ring::Pop() {
  Item x = buf[head];
  head = (head + 1) % buf.size();
  --size;
  return x;
}

void PrefixIndex::Match(std::span<const uint64_t> hashes, std::span<uint32_t> matched,
                        std::vector<uint32_t>* touched) const {
  const size_t n = hashes.size();
  if (n == 0) return;
  std::lock_guard lock(mu_);
  auto holds = [&](size_t i, uint32_t id) {
    auto it = map_.find(hashes[i]);
    if (it == map_.end()) return false;
    const Entry& e = it->second;
    for (uint32_t k = 0; k < e.count; ++k)
      if (e.ids[k] == id) return true;
    return false;
  };
  auto first = map_.find(hashes[0]);
  if (first == map_.end()) return;
  // Copy: the holders of block 0 are the only candidates for a match.
  const Entry e0 = first->second;
  for (uint32_t k = 0; k < e0.count; ++k) {
    uint32_t id = e0.ids[k];
    if (id >= matched.size() || matched[id] != 0) continue;
    // Blocks are chained, so holding block i implies having been sent blocks 0..i: the matched
    // length is the last block held, found by binary search (O(log n) lookups per holder).
    size_t lo = 1, hi = n;  // holds the first `lo` blocks; cannot hold more than `hi`
    if (holds(n - 1, id)) {
      lo = n;
    } else {
      hi = n - 1;
      while (lo < hi) {
        size_t mid = (lo + hi + 1) / 2;
        if (holds(mid - 1, id)) {
          lo = mid;
        } else {
          hi = mid - 1;
        }
      }
    }
    matched[id] = static_cast<uint32_t>(lo);
    touched->push_back(id);
  }
}

void PrefixIndex::Record(uint32_t endpoint, std::span<const uint64_t> hashes, size_t capacity) {
  if (capacity_ == 0 || hashes.empty()) return;
  std::lock_guard lock(mu_);
  if (endpoint >= rings_.size()) rings_.resize(endpoint + 1);
  if (capacity > 0) {
    Ring& ring = rings_[endpoint];
    ring.capacity = capacity;
    while (ring.size > capacity) EvictOne(endpoint, ring);
  }
  const uint64_t tick = ++tick_;
  for (uint64_t h : hashes) {
    Entry& e = map_[h];
    uint32_t k = 0;
    while (k < e.count && e.ids[k] != endpoint) ++k;
    if (k < e.count) {  // already held: refresh
      e.ticks[k] = tick;
      continue;
    }
    if (e.count < kMaxHolders) {
      k = e.count++;
    } else {  // forget the least recently used holder; its ring item dies when popped
      k = 0;
      for (uint32_t j = 1; j < e.count; ++j)
        if (e.ticks[j] < e.ticks[k]) k = j;
    }
    e.ids[k] = endpoint;
    e.ticks[k] = tick;
    e.queued[k] = tick;
    Ring& ring = rings_[endpoint];
    ring.Push({h, tick});
    if (ring.size > (ring.capacity ? ring.capacity : capacity_)) EvictOne(endpoint, ring);
  }
}

size_t PrefixIndex::CapacityOf(uint32_t endpoint) const {
  std::lock_guard lock(mu_);
  if (endpoint < rings_.size() && rings_[endpoint].capacity > 0) return rings_[endpoint].capacity;
  return capacity_;
}

void PrefixIndex::Forget(uint32_t endpoint, std::span<const uint64_t> hashes) {
  std::lock_guard lock(mu_);
  for (uint64_t h : hashes) {
    auto it = map_.find(h);
    if (it == map_.end()) continue;
    if (DropHolder(it->second, endpoint) && it->second.count == 0) map_.erase(it);
  }
}

bool PrefixIndex::DropHolder(Entry& e, uint32_t endpoint) {
  uint32_t k = 0;
  while (k < e.count && e.ids[k] != endpoint) ++k;
  if (k == e.count) return false;
  --e.count;
  e.ids[k] = e.ids[e.count];
  e.ticks[k] = e.ticks[e.count];
  e.queued[k] = e.queued[e.count];
  return true;
}

void PrefixIndex::DropEndpoint(uint32_t endpoint) {
  std::lock_guard lock(mu_);
  if (endpoint >= rings_.size()) return;
  Ring& ring = rings_[endpoint];
  while (ring.size > 0) {
    Item item = ring.Pop();
    auto it = map_.find(item.hash);
    if (it == map_.end()) continue;
    if (DropHolder(it->second, endpoint) && it->second.count == 0) map_.erase(it);
  }
  ring = Ring{};
}

void PrefixIndex::EvictOne(uint32_t endpoint, Ring& ring) {
  int chances = kMaxSecondChances;
  while (ring.size > 0) {
    Item item = ring.Pop();
    auto it = map_.find(item.hash);
    if (it == map_.end()) return;  // orphaned item: popping it freed the slot
    Entry& e = it->second;
    uint32_t k = 0;
    while (k < e.count && e.ids[k] != endpoint) ++k;
    if (k == e.count || e.queued[k] != item.tick) return;  // forgotten / superseded item
    if (e.ticks[k] > item.tick && chances-- > 0) {         // used since queued: second chance
      e.queued[k] = e.ticks[k];
      ring.Push({item.hash, e.ticks[k]});
      continue;
    }
    --e.count;
    e.ids[k] = e.ids[e.count];
    e.ticks[k] = e.ticks[e.count];
    e.queued[k] = e.queued[e.count];
    if (e.count == 0) map_.erase(it);
    return;
  }
}

size_t PrefixIndex::BlocksHeld(uint32_t endpoint) const {
  std::lock_guard lock(mu_);
  return endpoint < rings_.size() ? rings_[endpoint].size : 0;
}

size_t PrefixIndex::DistinctBlocks() const {
  std::lock_guard lock(mu_);
  return map_.size();
}

}  // namespace tidegate::sched
