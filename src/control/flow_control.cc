#include "control/flow_control.h"

#include <algorithm>

namespace tidegate::control {

FlowController::Key FlowController::KeyOf(const QueuedRequest& r) {
  const uint64_t seq = ++seq_;
  if (ordering_ == Ordering::kEdf) return Key{r.deadline, seq};
  return Key{r.arrival, seq};
}

FlowController::Band& FlowController::BandOf(int priority) {
  auto [it, inserted] = bands_.try_emplace(priority);
  if (inserted) {
    it->second.priority = priority;
    it->second.turn = it->second.flows.end();
  }
  return it->second;
}

FlowController::Admission FlowController::Enqueue(QueuedRequest r,
                                                  std::vector<QueuedRequest>* evicted) {
  if (auto it = bands_.find(r.priority); it != bands_.end()) {
    if (it->second.count + 1 > limits_.band_max_requests ||
        it->second.bytes + r.bytes > limits_.band_max_bytes)
      return Admission::kBandFull;
  } else if (r.bytes > limits_.band_max_bytes || limits_.band_max_requests == 0) {
    return Admission::kBandFull;
  }
  if (r.bytes > limits_.max_bytes) return Admission::kFull;
  // Make room globally by evicting the newest request of the lowest band below this one.
  while (items_.size() + 1 > limits_.max_requests || bytes_ + r.bytes > limits_.max_bytes) {
    if (bands_.empty()) return Admission::kFull;
    Band& lowest = std::prev(bands_.end())->second;
    if (lowest.priority >= r.priority) return Admission::kFull;
    uint64_t victim = 0, victim_seq = 0;
    for (const Flow& f : lowest.flows)
      for (const auto& [key, id] : f.items)
        if (key.seq >= victim_seq) {
          victim_seq = key.seq;
          victim = id;
        }
    evicted->push_back(items_.at(victim).req);
    Erase(victim);
  }

  Band& band = BandOf(r.priority);
  auto flow = std::find_if(band.flows.begin(), band.flows.end(),
                           [&](const Flow& f) { return f.name == r.flow; });
  if (flow == band.flows.end()) {
    // A new flow joins at the end of the round.
    flow = band.flows.insert(band.turn == band.flows.end() ? band.flows.end() : band.turn,
                             Flow{r.flow, {}});
    if (band.turn == band.flows.end()) band.turn = flow;
  }
  const uint64_t id = r.id;
  Item item;
  item.key = KeyOf(r);
  item.flow = flow;
  item.expiry = expiries_.emplace(r.expires, id).first;
  flow->items.emplace(item.key, id);
  band.count += 1;
  band.bytes += r.bytes;
  bytes_ += r.bytes;
  item.req = std::move(r);
  items_.emplace(id, std::move(item));
  return Admission::kQueued;
}

std::list<FlowController::Flow>::iterator FlowController::NextFlow(const Band& b) const {
  auto& band = const_cast<Band&>(b);
  if (fairness_ == Fairness::kRoundRobin) return band.turn;
  auto best = band.flows.begin();
  for (auto it = band.flows.begin(); it != band.flows.end(); ++it)
    if (it->items.begin()->first < best->items.begin()->first) best = it;
  return best;
}

const QueuedRequest* FlowController::Peek() const {
  if (bands_.empty()) return nullptr;
  const Band& band = bands_.begin()->second;
  auto flow = NextFlow(band);
  return &items_.at(flow->items.begin()->second).req;
}

QueuedRequest FlowController::Pop() {
  Band& band = bands_.begin()->second;
  auto flow = NextFlow(band);
  const uint64_t id = flow->items.begin()->second;
  QueuedRequest out = items_.at(id).req;
  // The next flow gets the next turn (Erase moves the turn on if this flow empties).
  if (fairness_ == Fairness::kRoundRobin && flow->items.size() > 1) {
    band.turn = std::next(flow);
    if (band.turn == band.flows.end()) band.turn = band.flows.begin();
  }
  Erase(id);
  return out;
}

void FlowController::Erase(uint64_t id) {
  auto it = items_.find(id);
  if (it == items_.end()) return;
  Item& item = it->second;
  auto bit = bands_.find(item.req.priority);
  Band& band = bit->second;
  auto flow = item.flow;
  flow->items.erase(item.key);
  if (flow->items.empty()) {
    if (band.turn == flow) {
      band.turn = std::next(flow);
      if (band.turn == band.flows.end()) band.turn = band.flows.begin();
    }
    band.flows.erase(flow);
    if (band.flows.empty()) band.turn = band.flows.end();
  }
  band.count -= 1;
  band.bytes -= item.req.bytes;
  bytes_ -= item.req.bytes;
  expiries_.erase(item.expiry);
  items_.erase(it);
  if (band.count == 0) bands_.erase(bit);
}

bool FlowController::Remove(uint64_t id) {
  if (!items_.count(id)) return false;
  Erase(id);
  return true;
}

void FlowController::Expire(Nanos now, std::vector<QueuedRequest>* expired) {
  while (!expiries_.empty() && expiries_.begin()->first <= now) {
    const uint64_t id = expiries_.begin()->second;
    expired->push_back(items_.at(id).req);
    Erase(id);
  }
}

std::optional<Nanos> FlowController::OldestArrival(int min_priority) const {
  std::optional<Nanos> best;
  for (const auto& [priority, band] : bands_) {
    if (priority < min_priority) break;
    for (const Flow& f : band.flows)
      for (const auto& [key, id] : f.items) {
        const Nanos a = items_.at(id).req.arrival;
        if (!best || a < *best) best = a;
      }
  }
  return best;
}

std::optional<int> FlowController::HighestPriority() const {
  if (bands_.empty()) return std::nullopt;
  return bands_.begin()->first;
}

std::vector<BandStats> FlowController::Stats() const {
  std::vector<BandStats> out;
  for (const auto& [priority, band] : bands_)
    out.push_back({priority, band.count, band.bytes, band.flows.size()});
  return out;
}

}  // namespace tidegate::control
