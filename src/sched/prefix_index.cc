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
  std::lock_guard lock(mu_);
  for (size_t i = 0; i < hashes.size(); ++i) {
    auto it = map_.find(hashes[i]);
    if (it == map_.end()) return;
    const Entry& e = it->second;
    bool extended = false;
    for (uint32_t k = 0; k < e.count; ++k) {
      uint32_t id = e.ids[k];
      if (id >= matched.size() || matched[id] != i) continue;
      if (i == 0) touched->push_back(id);
      matched[id] = static_cast<uint32_t>(i + 1);
      extended = true;
    }
    if (!extended) return;
  }
}

void PrefixIndex::Record(uint32_t endpoint, std::span<const uint64_t> hashes) {
  if (capacity_ == 0 || hashes.empty()) return;
  std::lock_guard lock(mu_);
  if (endpoint >= rings_.size()) rings_.resize(endpoint + 1);
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
    Ring& ring = rings_[endpoint];
    ring.Push({h, tick});
    if (ring.size > capacity_) EvictOne(endpoint, ring);
  }
}

void PrefixIndex::EvictOne(uint32_t endpoint, Ring& ring) {
  // Bounded: every item gets at most one second chance per call.
  for (size_t attempts = ring.size; attempts > 0 && ring.size > 0; --attempts) {
    Item item = ring.Pop();
    auto it = map_.find(item.hash);
    if (it == map_.end()) return;  // orphaned item: popping it freed the slot
    Entry& e = it->second;
    uint32_t k = 0;
    while (k < e.count && e.ids[k] != endpoint) ++k;
    if (k == e.count) return;  // this endpoint was already forgotten for the block
    if (e.ticks[k] > item.tick && attempts > 1) {  // used since queued: second chance
      ring.Push({item.hash, e.ticks[k]});
      continue;
    }
    e.ids[k] = e.ids[e.count - 1];
    e.ticks[k] = e.ticks[e.count - 1];
    if (--e.count == 0) map_.erase(it);
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
