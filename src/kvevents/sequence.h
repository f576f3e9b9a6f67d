// kvevents/sequence.h — what a subscriber makes of each batch's sequence number (a decision, no
// I/O, so it is unit-tested on its own).
//
// Contract: a publisher numbers its batches 0, 1, 2, ... A subscriber that has applied up to
// `last` sees seq:
//  - last + 1, or anything when nothing was applied yet → kApply;
//  - > last + 1 → kGap: batches last+1 .. seq-1 were lost (replay them, or re-sync);
//  - ≤ last, at or after the start of the latest replay → kDuplicate (the live copy of a batch
//    the replay already gave);
//  - ≤ last otherwise → kRestart: the publisher started numbering again (a new engine process
//    whose cache is empty).
// Thread-safety: none (one per subscription, used by the subscriber's thread).
#pragma once

#include <cstdint>
#include <limits>

namespace tidegate::kvevents {

enum class SeqVerdict { kApply, kDuplicate, kGap, kRestart };

class SeqTracker {
 public:
  SeqVerdict Check(int64_t seq) const {
    if (last_ < 0 || seq - 1 == last_) return SeqVerdict::kApply;
    if (seq > last_) return SeqVerdict::kGap;
    return seq >= replay_floor_ ? SeqVerdict::kDuplicate : SeqVerdict::kRestart;
  }
  void Applied(int64_t seq) { last_ = seq; }
  // A live batch past the replayed range was applied: live copies of replayed batches are
  // behind us, so going back again means a restart.
  void LiveApplied(int64_t seq) {
    last_ = seq;
    replay_floor_ = std::numeric_limits<int64_t>::max();
  }
  // A replay from `from` starts: live copies of what it gives are duplicates.
  void ReplayFrom(int64_t from) { replay_floor_ = from; }
  void Reset() {
    last_ = -1;
    replay_floor_ = std::numeric_limits<int64_t>::max();
  }
  int64_t last() const { return last_; }

 private:
  int64_t last_ = -1;
  int64_t replay_floor_ = std::numeric_limits<int64_t>::max();
};

}  // namespace tidegate::kvevents
