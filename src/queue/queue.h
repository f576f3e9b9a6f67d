// queue/queue.h — the queue-backend seam of the async processor.
//
// Contract: a Queue is one topic/subscription pair seen from one side. Publish() appends a
// message and returns only once the backend has it durably (the async processor acknowledges a
// request only after its result was published). Pull() leases up to `max` messages for
// `lease`: while leased, a message is not handed to anyone else; Extend() renews the lease;
// Ack() removes it for good; Nack() hands it back at once (Pub/Sub: modifyAckDeadline 0). A
// message whose lease runs out is delivered again (at-least-once), with delivery_attempt + 1;
// after the backend's max delivery attempts it goes to the dead-letter topic when one is
// configured. Backends are chosen by URI scheme through OpenQueue() (a registry by name), e.g.
//   sqlite:///path/to/queue.db?queue=NAME          embedded, durable, no server
//   pubsub://projects/P/subscriptions/S            Google Cloud Pub/Sub (consume)
//   pubsub://projects/P/topics/T                   Google Cloud Pub/Sub (publish)
// and later redis://, nats://.
// Thread-safety: implementations are safe to call from any thread; calls may block on I/O, so
// callers keep them off event loops (the async processor runs them on a worker pool).
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tidegate::queue {

struct Message {
  std::string id;      // backend message id (unique per message, stable across deliveries)
  std::string ack_id;  // handle for Ack/Nack/Extend of this delivery
  std::string data;    // the payload bytes (already base64-decoded for Pub/Sub)
  std::map<std::string, std::string> attributes;
  int delivery_attempt = 1;  // 1 on first delivery
  std::chrono::system_clock::time_point publish_time{};
};

struct Status {
  bool ok = true;
  std::string error;  // human-readable, names the backend and the operation
  static Status Ok() { return {}; }
  static Status Error(std::string e) { return {false, std::move(e)}; }
};

// One result to publish on this queue together with the acknowledgement of the request delivery
// (`ack_id` on the source queue) it answers. See Queue::PublishAndAck.
struct PublishAck {
  std::string data;
  std::map<std::string, std::string> attributes;
  std::string ack_id;       // the source delivery to acknowledge
  bool published = false;   // the data is on this queue (a retry only acknowledges)
  bool done = false;        // set when both steps happened (or the item was superseded)
  bool superseded = false;  // the source delivery was no longer current: nothing was published
};

class Queue {
 public:
  virtual ~Queue() = default;
  // "sqlite", "pubsub", ... and the URI it was opened with.
  virtual std::string_view kind() const = 0;
  virtual const std::string& uri() const = 0;

  // Durably appends one message; on success *id (if non-null) is the backend's message id.
  virtual Status Publish(std::string_view data, const std::map<std::string, std::string>& attrs,
                         std::string* id) = 0;
  // Leases up to `max` messages; waits at most `wait` for the first one (0 = return at once).
  virtual Status Pull(int max, std::chrono::milliseconds lease, std::chrono::milliseconds wait,
                      std::vector<Message>* out) = 0;
  // Publishes several messages (no attributes) in order; *published counts those that made it
  // (all or none for the embedded queue, which does it in one transaction and one fsync).
  virtual Status PublishBatch(const std::vector<std::string>& data, size_t* published);
  virtual Status Ack(const std::vector<std::string>& ack_ids) = 0;
  virtual Status Nack(const std::vector<std::string>& ack_ids) = 0;
  virtual Status Extend(const std::vector<std::string>& ack_ids,
                        std::chrono::milliseconds lease) = 0;

  // Publishes each item's data on this queue and then acknowledges its ack_id on `source`,
  // marking items done in order; on an error the remaining items are left not done (the caller
  // retries them). The default does Publish then source.Ack per item: a crash between the two
  // redelivers the request (at-least-once; its result may then be published twice). Backends
  // that can do both atomically override it: the embedded queue does, when `source` lives in
  // the same file, in one transaction per batch; there an item whose delivery is no longer
  // current (its lease ran out and it was delivered again, or it is gone) is skipped and marked
  // superseded, so each request gets exactly one result even across crashes.
  virtual Status PublishAndAck(std::vector<PublishAck>* items, Queue& source);
  // True when PublishAndAck(…, source) is atomic (no duplicate result can follow a crash).
  virtual bool AtomicPublishAck(const Queue& source) const { return false; }
  // Messages on the queue now, leased ones included, when the backend can count them cheaply
  // (the embedded queue); nullopt otherwise (Pub/Sub: read num_undelivered_messages in Cloud
  // Monitoring). May block like Pull.
  virtual std::optional<int64_t> Backlog() { return std::nullopt; }
  // Backend events worth counting, as (event, total so far): reconnects, reclaimed messages,
  // dead-lettered messages... (none for backends without such events). Cheap; never blocks on
  // I/O. The processor exports them as tidegate_async_queue_events_total{queue,event}.
  virtual std::vector<std::pair<std::string, uint64_t>> EventCounts() { return {}; }
};

// Opens a queue by URI. Returns nullptr and sets *error (naming the URI and the problem) when
// the scheme is unknown or the backend cannot be opened.
using QueueFactory =
    std::function<std::unique_ptr<Queue>(const std::string& uri, std::string* error)>;
void RegisterQueueBackend(const std::string& scheme, QueueFactory factory);
std::unique_ptr<Queue> OpenQueue(const std::string& uri, std::string* error);
// The URI fit for logs: a password or token in its user-info part becomes *** (user:*** or ***).
std::string RedactUri(std::string_view uri);
std::vector<std::string> QueueSchemes();

}  // namespace tidegate::queue
