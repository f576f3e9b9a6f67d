// kvevents/publisher.h — the engine side: publishes EventBatches as vLLM's ZMQ publisher does.
//
// Contract: Open() binds a PUB socket at cfg.endpoint and, when cfg.replay_endpoint is set, a
// ROUTER socket there. Publish() gives the batch the next sequence number (0, 1, 2, ... from
// Open), keeps it in a ring of the last cfg.buffer_steps batches, and sends the multipart message
// [topic, seq as 8-byte big-endian, msgpack batch] without blocking (PUB drops for a subscriber
// past its high-water mark, as ZMQ does; nothing waits). Replay: a client (DEALER or REQ-like)
// sends [empty frame, start seq as 8-byte big-endian]; the publisher answers with one message
// [empty, seq, batch] per buffered batch from that seq on, then [empty, -1 as 8 bytes, empty].
// Replay is served by the publisher's own thread, so the engine's loop never waits for it.
// Thread-safety: Publish() from one thread at a time (the engine's loop); the ring is shared with
// the replay thread under a mutex. The destructor stops the replay thread and closes the sockets.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "kvevents/config.h"
#include "kvevents/events.h"

namespace tidegate::kvevents {

class Publisher {
 public:
  // nullptr and *error (naming the address) when a socket cannot be bound.
  static std::unique_ptr<Publisher> Open(const PublisherConfig& cfg, std::string* error);
  ~Publisher();

  void Publish(const EventBatch& batch);
  int64_t next_seq() const { return next_seq_.load(std::memory_order_relaxed); }
  // The addresses as bound (a "*" port resolved).
  const std::string& endpoint() const;
  const std::string& replay_endpoint() const;

 private:
  struct Impl;
  explicit Publisher(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  std::atomic<int64_t> next_seq_{0};
};

}  // namespace tidegate::kvevents
