// sched/picker.h — the endpoint-selection seam.
//
// Contract: given what the gateway knows about a request and the pool, a Picker returns an
// ordered fallback list of endpoint indices (best first, at most kMaxChoices, only available
// endpoints). The data plane tries them in order: the first, then — if it refuses the
// connection or fails before any byte reached the client — the next. An empty list means no
// endpoint can take the request (503 no-endpoints). Pickers are created by name through
// MakePicker() so a scheduling framework can register more later.
// Thread-safety: Pick() is called concurrently from every event loop; implementations must
// keep only atomic or thread-local mutable state.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "pool/endpoint.h"

namespace tidegate::sched {

struct RequestInfo {
  std::string_view path;   // e.g. "/v1/chat/completions"
  std::string_view model;  // the body's "model"
  bool stream = false;
  size_t body_bytes = 0;
  // Used by the scheduling framework (sched/framework.h); all optional.
  std::string_view prompt;      // prompt text (chat messages flattened), for prefix affinity
  std::string_view adapter;     // LoRA adapter requested, if any
  std::string_view session_id;  // x-session-id, for session affinity
  int priority = 0;             // objective priority; negative = sheddable
};

struct PickResult {
  static constexpr size_t kMaxChoices = 4;
  std::array<uint32_t, kMaxChoices> order{};
  uint32_t count = 0;
  void Push(uint32_t i) {
    if (count < kMaxChoices) order[count++] = i;
  }
  bool empty() const { return count == 0; }
};

class Picker {
 public:
  virtual ~Picker() = default;
  virtual std::string_view name() const = 0;
  virtual PickResult Pick(const RequestInfo& req, const pool::Pool& pool, Nanos now) = 0;
};

// Names: "least-request" (fewest requests in flight from this gateway, random tie-break),
// "round-robin", and the scheduling-framework policies "gie-default" and "tidegate-default"
// (sched/policies.h). Returns nullptr for an unknown name.
std::unique_ptr<Picker> MakePicker(std::string_view name);
std::vector<std::string> PickerNames();

// A fast thread-local random number (splitmix64), for tie-breaks.
uint64_t FastRandom();

}  // namespace tidegate::sched
