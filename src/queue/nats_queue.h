// queue/nats_queue.h — the NATS JetStream backend of the Queue seam (cnats, Debian libnats-dev).
//
// URI (one URI both publishes and consumes):
//   nats://[USER:PASS@|TOKEN@]HOST[:PORT][,HOST[:PORT]...]/STREAM?consumer=C[&PARAM=VALUE...]
//   tls://...  the same, over TLS (ca=, cert=, key= are only allowed with tls://)
// Parameters (all optional; an unknown one is an error):
//   consumer=C        durable pull consumer on STREAM; needed to Pull/Ack/Nack/Extend (a URI
//                     without it can only publish)
//   subject=SUBJ      literal subject to publish to and the consumer's filter (default STREAM)
//   ack_wait=DUR      the consumer's AckWait, fixed; without it AckWait follows the lease the
//                     caller passes to Pull (the processor's --lease)
//   max_attempts=N    deliveries before a message is dead-lettered (needs dead_letter=)
//   dead_letter=SUBJ  literal subject for poison messages (alone: max_attempts=5)
//   creds=FILE        user JWT + NKey seed (.creds); user:pass@ and token@ are the alternatives
//   ca=FILE, cert=FILE, key=FILE   TLS trust roots and client certificate (tls:// only)
//   timeout=DUR       bound on every network call and on connecting (default 5s)
// Userinfo and values are percent-decoded. The port defaults to 4222.
//
// Contract (on top of queue.h):
//  - Opening connects (bounded by timeout=) and checks the stream and consumer: a missing
//    stream is created (file storage, subjects [SUBJ]); an existing one must capture SUBJ. A
//    missing consumer is created (durable pull, AckPolicy explicit, MaxDeliver -1, filter SUBJ,
//    MaxAckPending 10000); an existing one must be a pull consumer with explicit acks, no
//    BackOff, and filter SUBJ (or none); its AckWait (when ack_wait= is given) and MaxDeliver
//    (when not -1) are updated to ours. With dead_letter=, a stream capturing it is created
//    (STREAM_DLQ) when none does; the consumer must not capture it. Any mismatch or failure is
//    an error naming the URI (password and token redacted) and the problem.
//  - Pull = one Fetch of up to `max` (≤ 1000) messages waiting at most `wait` (at least 50 ms:
//    a no-wait pull request leaves a late status behind that cuts the next one short). Before the
//    first Fetch with a new lease, the consumer's AckWait is set to it (unless ack_wait=). The
//    delivery count is the metadata's NumDelivered. A delivery past max_attempts is copied to
//    dead_letter= (js publish, original headers plus tidegate-dead-letter-source/-consumer/
//    -sequence and tidegate-delivery-attempts,
//    Nats-Msg-Id set so a retried copy is stored once) and then terminated (+TERM) instead of
//    returned; if the copy fails it is NAKed with a 1 s delay and copied on a later delivery.
//    MaxDeliver stays unlimited so nothing is ever dropped by the server.
//  - Message::id = "STREAM:SEQ:CREATED" (stream sequence, and the stream's creation time in
//    base 36 so a re-created stream never reuses an id); ack_id = "SEQ.DELIVERIES" (one
//    delivery). data = the payload; attributes = the NATS headers (first value of each).
//    publish_time = the stream's timestamp.
//  - Ack = +ACK, waiting for the server's confirmation; Nack = -NAK, flushed (redelivered at
//    once, or after our own last pull request has surely expired on the server, so that it
//    cannot take the message straight back);
//    Extend = +WPI (the server restarts AckWait; `lease` is not used). Unknown or finished ack
//    ids are ignored (like Pub/Sub). The held deliveries (natsMsg objects) live in this object:
//    an ack id is only meaningful to the Queue that pulled it.
//  - Publish = JetStream publish of the payload with the attributes as headers, returning after
//    the stream's PubAck (the message is stored). No Nats-Msg-Id unless an attribute gives one
//    (then the stream stores a retried publish once, within its duplicate window).
//  - PublishAndAck(results, source) with a NATS source: as the default (publish, then ack the
//    request), with Nats-Msg-Id "tg-result-<request message id>" on each result, so that a
//    request that runs twice (a crash between publish and ack, or acks that nats-server lost
//    when it was killed: it confirms an ack before it writes the consumer state) still leaves
//    one result on the results stream when the second comes within the duplicate window.
//  - While the server is unreachable every call fails fast with a Status ("reconnecting")
//    and cnats reconnects forever in the background (250 ms between attempts, jittered).
//  - Backlog() = the consumer's pending + unacknowledged counts.
// Thread-safety: safe from any thread. Fetch and consumer updates are serialized by one mutex,
// the held deliveries (and their acks) by another; blocking calls are bounded by timeout=.
// The free functions below are pure (exposed for unit tests).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "queue/queue.h"

namespace tidegate::queue {

struct NatsQueueOptions {
  bool tls = false;                  // tls:// scheme
  std::vector<std::string> servers;  // "host:port" (IPv6 as "[::1]:4222")
  std::string user, password, token;
  std::string stream, consumer, subject;
  std::optional<std::chrono::milliseconds> ack_wait;  // set = fixed by the URI
  int max_attempts = 0;                               // 0 = no dead-lettering
  std::string dead_letter;
  std::string creds, ca, cert, key;
  std::chrono::milliseconds timeout{5000};
};

// Parses a nats:// or tls:// URI (see the header comment). The error names the redacted URI.
Status ParseNatsUri(std::string_view uri, NatsQueueOptions* out);
// The URI with the password or token replaced by "***" (for logs and errors).
std::string RedactNatsUri(std::string_view uri);
// NATS subject syntax: dot-separated non-empty tokens without whitespace; with wildcards, a
// token may be "*" and the last may be ">".
bool ValidNatsSubject(std::string_view subject, bool allow_wildcards);
// Stream and consumer names: non-empty, at most 255 characters, no whitespace, '.', '*', '>',
// '/' or '\\'.
bool ValidNatsName(std::string_view name);
// Does `filter` (may hold wildcards) match the literal `subject`?
bool NatsSubjectMatches(std::string_view filter, std::string_view subject);
// "SEQ.DELIVERIES" and back.
std::string NatsAckId(uint64_t stream_seq, uint64_t delivered);
bool ParseNatsAckId(std::string_view ack_id, uint64_t* stream_seq, uint64_t* delivered);
// "STREAM:SEQ:CREATED" (created = the stream's creation time in ns, base 36).
std::string NatsMessageId(std::string_view stream, uint64_t stream_seq, int64_t created_ns);
// A header name NATS can carry (printable ASCII, no ':' or spaces) and a value without CR/LF.
bool ValidNatsHeader(std::string_view key, std::string_view value);

// The "nats" and "tls" registry factory: parses the URI, connects, checks or creates the
// stream and consumer. nullptr + *error on any failure.
std::unique_ptr<Queue> OpenNatsQueue(const std::string& uri, std::string* error);

}  // namespace tidegate::queue
