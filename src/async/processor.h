// async/processor.h — `tidegate async`: queue topic in → gateway (sheddable) → result topic out.
//
// Contract:
//  * Pulls request messages (async/message.h) from `requests` while it holds fewer than
//    max_held, leasing each for `lease` and extending the leases of everything it holds every
//    lease/3 — so it never holds more than it can extend.
//  * Dispatch is capacity-driven: the gateway's /v1/capacity is polled every capacity_interval;
//    new requests start only while the pool is not saturated, at most `sheddable_capacity` more
//    than were in flight at the last poll, and never more than the AIMD window (additive
//    increase of 1/window per success, halved on a 429 at most once per 100 ms, between
//    min_window and max_inflight). The shed request waits at least its Retry-After; all other
//    dispatching pauses only until a fresh capacity reading (two polls; 1 s without the signal).
//    When /v1/capacity cannot be read, the window alone decides.
//  * Among held messages the earliest deadline goes first (EDF on the soft deadline when the
//    message has one, else the hard one; a message without a deadline gets publish time +
//    default_deadline). The dispatch decisions are async/dispatch.h's.
//  * Soft deadlines: from its own completions the processor keeps its service rate and projects
//    when each waiting message will be done; one whose projection passes its soft deadline is
//    escalated: sent with escalation_objective instead of the sheddable one, without waiting for
//    the capacity signal, within the escalation budget (escalation_rate per second,
//    max_escalated in flight). Retries of a message with a soft deadline ahead come no later
//    than it. A message whose deadline has passed becomes a
//    DEADLINE_EXCEEDED result at once, even while dispatching is paused; an attempt's HTTP
//    timeout never outlives the deadline.
//  * 429, 408 and 5xx responses and transport failures are retried after an exponential
//    back-off with jitter (at least the Retry-After), never past the deadline and at most
//    max_attempts attempts (0 = until the deadline). When no further attempt fits, the result is
//    SHED_EXHAUSTED (last answer a 429) or INFERENCE_ERROR (5xx / transport), carrying the last
//    status and body. Other 4xx become an INVALID_REQUEST result with the gateway's status and
//    body; 2xx a success result with the body verbatim. A malformed message becomes an
//    INVALID_REQUEST result. Nothing is dropped silently.
//  * Results are published on `responses` (those of Batch API lines on `batch_responses` when it
//    is set) and only then is the request acknowledged
//    (Queue::PublishAndAck, batched; atomic for the embedded queue when both queues share a
//    file). A failed publish is retried while the lease is kept alive. Where publish+ack is not
//    atomic, a local journal (async/journal.h) records each result before it is published, so
//    a message redelivered after a crash gets the same result again (an identical duplicate at
//    worst, never a different one).
//  * Each attempt carries x-gateway-inference-objective: `objective`, x-request-id: the message
//    id, and the message's own headers (which win over the defaults).
//  * Stop() (SIGTERM / SIGINT in Run()) stops pulling, hands back (nacks) every held message not
//    in flight, lets in-flight requests finish and publishes their results for up to
//    drain_timeout, then hands back whatever is left and returns. Nothing is lost: anything not
//    answered is redelivered by the queue.
//  * Metrics (Prometheus text) and /healthz are served on metrics_host:metrics_port.
// Thread-safety: Run() blocks the calling thread, which runs the event loop; queue calls run on
// a small worker pool. Stop() may be called from any thread.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace tidegate::async {

struct ProcessorConfig {
  std::string gateway = "http://127.0.0.1:8080";
  // Where the gateway serves /v1/capacity (its admin listener). "" = find it: the gateway URL
  // itself (a gateway run with --admin-address public), else port 9090 of the gateway's host
  // (the admin listener's default).
  std::string gateway_admin;
  std::string requests;   // queue URI to consume
  std::string responses;  // queue URI to publish results on
  // Where the results of OpenAI Batch API lines go (messages whose metadata names a batch,
  // kBatchIdMetadata): the gateway that runs the batches consumes them there. "" = `responses`.
  std::string batch_responses;
  std::string objective = "sheddable";
  // Soft deadlines: a message whose projected finish passes its soft_deadline is sent with this
  // objective instead (choose one whose priority is not above your real-time objectives; ""
  // turns escalation off), at most escalation_rate times per second and max_escalated at once.
  std::string escalation_objective = "standard";
  double escalation_rate = 2;
  int max_escalated = 8;
  std::chrono::milliseconds escalation_warmup{10'000};  // no projection before this much runtime
  int max_inflight = 256;
  int min_window = 1;
  int initial_window = 4;
  int max_held = 1024;
  int pull_batch = 100;
  std::chrono::milliseconds lease{60'000};
  std::chrono::milliseconds capacity_interval{50};  // 0 disables the capacity signal
  std::chrono::milliseconds request_timeout{600'000};
  std::chrono::milliseconds backoff_base{250};
  std::chrono::milliseconds backoff_max{30'000};
  int max_attempts = 0;  // 0 = retry until the deadline
  std::chrono::milliseconds default_deadline{24 * 3600 * 1000LL};
  std::chrono::milliseconds drain_timeout{30'000};
  std::string metrics_host = "127.0.0.1";
  int metrics_port = 9464;  // -1 disables the metrics server; 0 picks a free port
  int workers = 4;          // threads for blocking queue calls
  std::chrono::milliseconds progress_interval{10'000};  // 0 = no periodic progress log
  // Result journal: "auto" = tidegate-async-journal.db in the working directory unless
  // publish+ack is atomic (both queues in one SQLite file); "off"; or a file path.
  std::string journal = "auto";
  // Request headers a message may set although they are held back by default: the objective
  // (x-gateway-inference-objective and its llm-d alias), authorization, proxy-authorization and
  // x-request-id. Lower-case names. (Hop-by-hop headers are refused when a message is parsed.)
  std::vector<std::string> allow_message_headers;
  // The processor's own API key for the gateway (sent as Authorization: Bearer); "" = none.
  std::string api_key;

  std::string Validate() const;  // an error message, or empty
};

class Processor {
 public:
  explicit Processor(ProcessorConfig cfg);
  ~Processor();
  Processor(const Processor&) = delete;
  Processor& operator=(const Processor&) = delete;

  // Opens both queues and binds the metrics port. Returns an error message or empty.
  std::string Start();
  // Runs until Stop() or SIGTERM/SIGINT (when handle_signals), then drains. Returns 0 when
  // everything held was answered or handed back, 1 otherwise.
  int Run(bool handle_signals = true);
  void Stop();
  int metrics_port() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tidegate::async
