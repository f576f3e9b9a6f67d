// queue/pubsub_queue.h — the Google Cloud Pub/Sub backend of the Queue seam (REST API v1 over
// libcurl).
//
// URIs:
//   pubsub://projects/P/subscriptions/S            consume: Pull/Ack/Nack/Extend
//   pubsub://projects/P/subscriptions/S?topic=T    ... and Publish to topic T (an id in project P
//                                                  or a full projects/Q/topics/T name)
//   pubsub://projects/P/topics/T                   publish only
// A call the URI does not allow fails with a Status saying which URI form is needed.
//
// Contract (on top of queue.h):
//  - Endpoint: PUBSUB_EMULATOR_HOST (host:port) → http://host:port without authentication, like
//    the official clients; otherwise https://pubsub.googleapis.com with a bearer token from
//    gcp::DefaultTokenSource() (GOOGLE_APPLICATION_CREDENTIALS key file, else the metadata
//    server). Opening never touches the network; a bad key file fails at open.
//  - Pull(max, lease, wait): `:pull {maxMessages, returnImmediately: true}` (max clamped to
//    1..1000), polled with short growing sleeps (50..500 ms) until a message arrives or `wait`
//    has passed (wait 0 = one attempt). When the lease (rounded up to seconds, clamped 10..600)
//    differs from the subscription's ackDeadlineSeconds (read once with a GET; unknown → always),
//    the pulled messages get `:modifyAckDeadline` at once; if that fails they are handed back
//    (best effort) and Pull fails, so the caller never holds a message on a lease it did not get.
//    Message::data is base64-decoded; delivery_attempt is the API's deliveryAttempt (set when the
//    subscription has a dead-letter policy), 1 when absent.
//  - Ack → `:acknowledge`; Nack → `:modifyAckDeadline 0`; Extend → `:modifyAckDeadline` with the
//    clamped lease. Ack ids are sent in chunks of 1000. Publish → `:publish` one message, *id =
//    messageIds[0].
//  - Every HTTP call has a timeout (PubSubOptions::call_timeout). Ack/Nack/Extend/Publish are
//    retried up to 3 attempts on transport errors, 429 and 5xx (100 ms, 300 ms back-off);
//    Publish retries may duplicate a message (at-least-once). Pull is not retried.
//  - Errors read "pubsub <op> <resource>: HTTP <status>: <body excerpt>" (or the transport
//    error and the endpoint).
// Thread-safety: a PubSubQueue is safe to call from any thread concurrently; calls block on
// HTTP (one reused curl handle per calling thread), so keep them off event loops. The free
// functions below are pure (exposed for unit tests).
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "queue/gcp_auth.h"
#include "queue/queue.h"

namespace tidegate::queue {

struct PubSubTarget {
  std::string project;       // P
  std::string subscription;  // full "projects/P/subscriptions/S", or empty for a topic URI
  std::string topic;         // full "projects/Q/topics/T", or empty (subscription without ?topic)
};

// Parses a pubsub:// URI (see the header comment). The error names the URI and the problem.
Status ParsePubSubUri(std::string_view uri, PubSubTarget* out);

// Request / response shaping (REST v1 JSON).
std::string PubSubPullBody(int max_messages);
std::string PubSubAckBody(const std::vector<std::string>& ack_ids);
std::string PubSubModifyAckDeadlineBody(const std::vector<std::string>& ack_ids, int seconds);
std::string PubSubPublishBody(std::string_view data,
                              const std::map<std::string, std::string>& attrs);
Status ParsePubSubPullResponse(std::string_view body, std::vector<Message>* out);
Status ParsePubSubPublishResponse(std::string_view body, std::string* id);
// Lease → ack deadline seconds: rounded up, clamped to [10, 600].
int PubSubAckDeadlineSeconds(std::chrono::milliseconds lease);

struct PubSubOptions {
  std::string endpoint = "https://pubsub.googleapis.com";  // scheme://host[:port], no slash
  std::shared_ptr<gcp::HttpClient> http;                   // default: NewCurlHttpClient()
  std::shared_ptr<gcp::TokenSource> tokens;                // default: NoAuthTokenSource()
  std::chrono::milliseconds call_timeout{30000};           // per HTTP call
  std::chrono::milliseconds retry_base{100};               // first retry back-off
};

class PubSubQueue final : public Queue {
 public:
  PubSubQueue(std::string uri, PubSubTarget target, PubSubOptions options);

  std::string_view kind() const override { return "pubsub"; }
  const std::string& uri() const override { return uri_; }

  Status Publish(std::string_view data, const std::map<std::string, std::string>& attrs,
                 std::string* id) override;
  Status Pull(int max, std::chrono::milliseconds lease, std::chrono::milliseconds wait,
              std::vector<Message>* out) override;
  Status Ack(const std::vector<std::string>& ack_ids) override;
  Status Nack(const std::vector<std::string>& ack_ids) override;
  Status Extend(const std::vector<std::string>& ack_ids, std::chrono::milliseconds lease) override;

  const PubSubTarget& target() const { return target_; }
  const std::string& endpoint() const { return options_.endpoint; }

 private:
  // POST/GET endpoint/v1/<resource><suffix>; *resp_body set on HTTP 200.
  Status Call(std::string_view op, const std::string& method, const std::string& resource,
              std::string_view suffix, std::string body, bool retry, std::string* resp_body);
  Status ModifyAckDeadline(std::string_view op, const std::vector<std::string>& ack_ids,
                           int seconds);
  Status NeedSubscription(std::string_view op) const;
  std::optional<int> SubscriptionAckDeadline();  // cached GET of ackDeadlineSeconds

  const std::string uri_;
  const PubSubTarget target_;
  const PubSubOptions options_;
  std::mutex mu_;
  bool sub_deadline_known_ = false;  // guarded by mu_ (true also when the GET failed)
  std::optional<int> sub_deadline_;  // guarded by mu_
};

// The "pubsub" registry factory: parses the URI and picks the endpoint and credentials from
// the environment (see the header comment). nullptr + *error on a bad URI or credentials file.
std::unique_ptr<Queue> OpenPubSubQueue(const std::string& uri, std::string* error);

}  // namespace tidegate::queue
