// kvevents/config.h — the engine side's `--kv-events-config` (vLLM's JSON, same keys) and the
// address arithmetic both sides use.
//
// Contract: ParsePublisherConfig() reads vLLM's KVEventsConfig JSON: enable_kv_cache_events
// (bool), publisher ("zmq" or "null"), endpoint (default tcp://*:5557), replay_endpoint (default
// none), buffer_steps (default 10000), hwm (default 100000), topic (default ""). Unknown keys are
// refused, so a typo does not silently disable events. WithPortOffset() adds an offset to a
// tcp:// address's port (a data-parallel rank, or the k-th server of a `--port-count` sim,
// publishes on port + k); ipc:// and inproc:// addresses get "-k" appended instead.
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "kvevents/events.h"

namespace tidegate::kvevents {

struct PublisherConfig {
  bool enabled = false;
  std::string endpoint = "tcp://*:5557";
  std::string replay_endpoint;  // "" = no replay
  int64_t buffer_steps = 10000;
  int hwm = 100000;
  std::string topic;
  Encoding encoding = Encoding::kMap;
};

// False and a message naming the key on bad input.
bool ParsePublisherConfig(std::string_view json, PublisherConfig* out, std::string* error);
// "" and *error set when `address` has no port to offset.
std::string WithPortOffset(std::string_view address, int offset, std::string* error);
// The port of a tcp:// address, or -1.
int PortOf(std::string_view address);

}  // namespace tidegate::kvevents
