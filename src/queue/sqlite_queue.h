// queue/sqlite_queue.h — the embedded, durable queue backend: one SQLite file, no server.
//
// Contract: implements queue::Queue (see queue.h) on a SQLite database in WAL mode. Every
// queue in a file lives in one `messages` table keyed by queue name; a row carries the payload,
// its attributes, publish time, delivery attempts and the current lease expiry. Publish()
// commits with synchronous=FULL before returning, so a published message survives a crash of
// the process (and of the machine). Pull() leases in one write transaction (BEGIN IMMEDIATE),
// so a message is never leased to two holders at once — also across processes sharing the
// file. Each delivery increments delivery_attempt; the ack id names that one delivery
// ("<message id>.<attempt>"), so an Ack/Nack/Extend from a delivery that was superseded (its
// lease expired and the message was leased again) is ignored rather than touching the new
// holder's lease. Ack() deletes; Nack() clears the lease (re-deliverable at once); Extend()
// renews it. An expired lease makes the message deliverable again with attempt + 1. When
// `max_attempts` is set, a message that has already been delivered max_attempts times is moved,
// instead of being delivered again, to the `dead_letter` queue in the same file (same id, same
// data, attempts reset, plus attributes "tidegate-dead-letter-source" and
// "tidegate-delivery-attempts"). Unknown or stale ack ids are ignored (like Pub/Sub); malformed
// ones are an error.
//
// URI: sqlite://PATH?queue=NAME[&max_attempts=N&dead_letter=NAME]
//   PATH is everything between "sqlite://" and the first '?', percent-decoded, used verbatim as
//   a file name: "sqlite:///var/lib/q.db" → "/var/lib/q.db" (absolute), "sqlite://data/q.db" →
//   "data/q.db" (relative to the process's working directory). There is no host part. The file
//   (not its directory) is created if missing. `queue` is required. `max_attempts` (1..1000000)
//   requires `dead_letter` (without a dead-letter queue messages are redelivered indefinitely,
//   never dropped); `dead_letter` alone implies max_attempts=5 (the Pub/Sub default).
//   `dead_letter` must differ from `queue`. Unknown parameters are an error.
//
// Thread-safety: a SqliteQueue is safe to use from any number of threads (one connection,
// guarded by a mutex; Pull's wait sleeps without holding it). Several SqliteQueue objects and
// several processes may share a file: writers serialize on SQLite's lock with a 10 s busy
// timeout. Calls block on disk I/O (fsync) — keep them off event loops.
#pragma once

#include <memory>
#include <string>

#include "queue/queue.h"

namespace tidegate::queue {

struct SqliteQueueOptions {
  std::string path;         // file name as given (not made absolute)
  std::string queue;        // queue name
  int max_attempts = 0;     // 0 = unlimited (no dead-lettering)
  std::string dead_letter;  // empty = none
};

// Parses a sqlite:// URI (see above). Returns false and sets *error on a malformed URI.
bool ParseSqliteQueueUri(const std::string& uri, SqliteQueueOptions* out, std::string* error);

// The "sqlite" QueueFactory: opens (creating if needed) the file and the schema.
std::unique_ptr<Queue> OpenSqliteQueue(const std::string& uri, std::string* error);

}  // namespace tidegate::queue
