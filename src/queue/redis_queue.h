// queue/redis_queue.h — the Redis Streams backend of the Queue seam (Redis >= 6.2, or Valkey),
// over the blocking RESP2 client of queue/resp.h (TCP or TLS).
//
// URI (one form for publishing and consuming):
//   redis[s]://[USER:PASSWORD@ | :PASSWORD@]HOST[:PORT][/DB]/STREAM?group=G[&consumer=C]
//       [&dead_letter=S][&max_attempts=N][&delete=true|false][&maxlen=N][&ca=FILE]
//   rediss:// is TLS; the server certificate is verified against HOST (and `ca`, a PEM file, or
//   the system trust store); `ca` is only for rediss://. PORT defaults to 6379, DB to 0. User,
//   password and STREAM are percent-decoded (write a '/' in a stream name as %2F). `group` is
//   required (created at open, at id 0 with MKSTREAM, so that messages published before the
//   first consumer started are not skipped; an existing group is kept). `consumer` defaults to
//   HOSTNAME-PID-RANDOM. `max_attempts` (1..1000000) needs `dead_letter`; `dead_letter` alone
//   means max_attempts=5 (as for sqlite://). `delete` (default true) XDELs an entry after XACK.
//   `maxlen` trims this stream approximately (XADD MAXLEN ~ N) when publishing to it. Unknown
//   parameters are an error. Error messages show the URI with the password replaced by ***.
//
// Contract (on top of queue.h):
//  - Entries: the message bytes are the field `data`; every other field is an attribute
//    (Publish writes attributes as fields; an attribute named `data` is not written). An entry
//    without `data` is delivered with empty data (the processor answers it INVALID_REQUEST).
//    Message::id is the entry id; publish_time is the id's millisecond part.
//  - Lease = the pending entry's idle time. Pull first claims, with XAUTOCLAIM (min idle = the
//    lease), entries whose holder stopped extending them (crashed or stalled consumers, or
//    handed back), then reads new ones with XREADGROUP ... BLOCK wait ... >. Extend resets the
//    idle time (XCLAIM ... JUSTID); Nack makes the entry claimable at once (XCLAIM IDLE 10
//    years); Ack is XACK then XDEL. delivery_attempt is the pending entry's delivery counter.
//    All consumers of a group must use the same lease (it is also the reclaim threshold).
//  - Ack ids are "<entry id>:<delivery count>". Ack/Nack/Extend act only when the pending entry
//    still has that delivery count (a Lua script checks and acts atomically), so an ack, nack or
//    extension from a delivery that was since reclaimed by another consumer is ignored.
//  - Dead-lettering: an entry claimed for a delivery beyond max_attempts is instead copied to the
//    dead-letter stream (all its fields, plus tidegate-dead-letter-source = this stream and
//    tidegate-delivery-attempts = deliveries so far) and acknowledged, in one script.
//  - PublishAndAck to a stream on the same server and database as the source is atomic (one Lua
//    script per batch: XADD result, XACK, XDEL, only while the request delivery is current;
//    otherwise the item is marked superseded), so AtomicPublishAck is true there.
//  - Durability is Redis's: a reply means the write is in Redis's memory and AOF buffer; with
//    appendonly yes it survives a restart of the Redis process (appendfsync always: also a
//    machine crash).
//  - Connections: a small pool (one connection per concurrent caller). A call connects when
//    needed, retrying with back-off (50 ms doubling to 1 s) until its timeout (5 s, plus `wait`
//    for Pull); a call that fails on a connection the server dropped is retried once on a new
//    one (a Publish may then duplicate, which is at-least-once). Failures return a Status naming
//    the stream and the operation; a lost and a regained connection are logged once each.
//    Wrong credentials, a bad database or a refused server certificate fail at once.
// Thread-safety: a RedisQueue is safe to call from any thread; calls block on the network for a
// bounded time, so keep them off event loops.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "queue/queue.h"
#include "queue/resp.h"

namespace tidegate::queue {

struct RedisQueueOptions {
  RespEndpoint endpoint;
  std::string stream;
  std::string group;
  std::string consumer;  // filled with the default when absent from the URI
  std::string dead_letter;
  int max_attempts = 0;  // 0 = unlimited
  bool delete_acked = true;
  int64_t maxlen = 0;  // 0 = no trimming
};

// Parses a redis:// or rediss:// URI (see above). False + *error (password redacted) when bad.
bool ParseRedisQueueUri(const std::string& uri, RedisQueueOptions* out, std::string* error);
// The URI with the password (if any) replaced by ***.
std::string RedactRedisUri(std::string_view uri);
// HOSTNAME-PID-6 random hex digits.
std::string DefaultRedisConsumerName();

// Ack ids: "<entry id>:<delivery count>".
std::string FormatRedisAckId(std::string_view entry_id, int64_t delivery_count);
bool ParseRedisAckId(std::string_view ack_id, std::string* entry_id, int64_t* delivery_count);
// "1700000000000-3" → true (both parts decimal).
bool ValidRedisEntryId(std::string_view id);

// One stream entry ([id, [field, value, ...]]) → a Message with this delivery count.
bool RedisEntryToMessage(const RespReply& entry, int64_t delivery_count, Message* out,
                         std::string* error);
// An XREADGROUP reply (nil, or [[stream, [entry, ...]], ...]) → messages (delivery 1).
bool ParseRedisReadReply(const RespReply& reply, std::vector<Message>* out, std::string* error);
// The claim script's reply ([next cursor, [[id, count, fields], ...], dead-lettered count]).
bool ParseRedisClaimReply(const RespReply& reply, std::string* cursor, std::vector<Message>* out,
                          int64_t* dead_lettered, std::string* error);

// The "redis" and "rediss" QueueFactory: parses the URI, connects, authenticates and creates
// the group. nullptr + *error when any of that fails.
std::unique_ptr<Queue> OpenRedisQueue(const std::string& uri, std::string* error);

}  // namespace tidegate::queue
