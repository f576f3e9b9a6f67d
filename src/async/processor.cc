// async/processor.cc — the async processor (see processor.h). Everything except the blocking
// queue calls runs on one event-loop thread, so the processor's state needs no locks.
#include "async/processor.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/algorithm/string/predicate.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cmath>
#include <csignal>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>
#include <unordered_map>

#include "async/dispatch.h"
#include "async/journal.h"
#include "async/message.h"
#include "common/fd_limit.h"
#include "common/rate_limit.h"
#include "http/client.h"
#include "metrics/registry.h"
#include "queue/queue.h"
#include "wire/wire.h"

namespace tidegate::async {

namespace net = boost::asio;
using net::awaitable;
using std::chrono::milliseconds;
using Steady = std::chrono::steady_clock;
using System = std::chrono::system_clock;

namespace {
constexpr auto kTok = net::as_tuple(net::use_awaitable);

DispatchConfig DispatchConfigOf(const ProcessorConfig& c) {
  DispatchConfig d;
  d.max_inflight = c.max_inflight;
  d.min_window = c.min_window;
  d.initial_window = c.initial_window;
  d.capacity_interval = c.capacity_interval;
  d.backoff_base = c.backoff_base;
  d.backoff_max = c.backoff_max;
  d.max_attempts = c.max_attempts;
  d.escalation_rate = c.escalation_objective.empty() ? 0 : c.escalation_rate;
  d.max_escalated = c.max_escalated;
  d.warmup = c.escalation_warmup;
  return d;
}

// Steady-clock image of a Unix-seconds time (capped ten years ahead).
Steady::time_point SteadyOf(int64_t unix_s, Steady::time_point steady_now,
                            System::time_point sys_now) {
  constexpr int64_t kMaxAheadMs = int64_t{10} * 365 * 24 * 3600 * 1000;
  const int64_t now_ms =
      std::chrono::duration_cast<milliseconds>(sys_now.time_since_epoch()).count();
  const int64_t left = std::clamp<int64_t>(unix_s * 1000 - now_ms, -kMaxAheadMs, kMaxAheadMs);
  return steady_now + milliseconds(left);
}

// (A function rather than aggregate initialization inside coroutines: GCC 12 rejects string
// literals as aggregate members there.)
Result MakeResult(std::string id, int status, std::string payload, ErrorCode code,
                  std::string message) {
  Result r;
  r.id = std::move(id);
  r.status_code = status;
  r.payload = std::move(payload);
  r.error_code = code;
  r.error_message = std::move(message);
  return r;
}
}  // namespace

std::string ProcessorConfig::Validate() const {
  if (requests.empty()) return "--requests is required (a queue URI to consume)";
  if (responses.empty()) return "--responses is required (a queue URI for the results)";
  if (objective.empty()) return "--objective must not be empty";
  if (max_inflight < 1) return "--max-inflight must be at least 1";
  if (min_window < 1 || min_window > max_inflight)
    return "--min-window must be between 1 and --max-inflight";
  if (max_held < 1) return "--max-held must be at least 1";
  if (lease < milliseconds(1000)) return "--lease must be at least 1s";
  if (workers < 1) return "--workers must be at least 1";
  if (escalation_rate < 0) return "--escalation-rate must not be negative";
  if (max_escalated < 1) return "--max-escalated must be at least 1";
  if (!escalation_objective.empty() && escalation_objective == objective)
    return "--escalation-objective must differ from --objective (" + objective +
           "), or be empty to turn escalation off";
  std::string err;
  http::Url u;
  if (!http::ParseHttpUrl(gateway, &u, &err)) return "--gateway: " + err;
  return "";
}

struct Processor::Impl {
  explicit Impl(ProcessorConfig c)
      : cfg(std::move(c)),
        io(1),
        blocking(static_cast<size_t>(cfg.workers)),
        wake(io),
        flush_wake(io),
        dc(DispatchConfigOf(cfg), std::random_device{}()) {
    auto& r = registry;
    m_pulled = &r.AddCounter("tidegate_async_messages_pulled_total",
                             "Request messages received from the request queue (every delivery)")
                    .With({});
    m_dispatched = &r.AddCounter("tidegate_async_requests_dispatched_total",
                                 "Attempts sent to the gateway (first tries and retries)")
                        .With({});
    m_succeeded = &r.AddCounter("tidegate_async_requests_succeeded_total",
                                "Requests answered with a 2xx and published as results")
                       .With({});
    m_failed = &r.AddCounter("tidegate_async_requests_failed_total",
                             "Requests published as error results, by error code", {"error_code"});
    m_retries = &r.AddCounter("tidegate_async_retries_total",
                              "Attempts scheduled again, by reason (shed, server_error, transport)",
                              {"reason"});
    m_sheds =
        &r.AddCounter("tidegate_async_sheds_total", "429 responses (requests shed by the gateway)")
             .With({});
    m_deadline = &r.AddCounter("tidegate_async_deadline_misses_total",
                               "Requests whose deadline passed before they could be served")
                      .With({});
    m_superseded = &r.AddCounter("tidegate_async_superseded_total",
                                 "Results not published because the message had been "
                                 "redelivered to another holder")
                        .With({});
    m_publish_errors = &r.AddCounter("tidegate_async_publish_errors_total",
                                     "Failed attempts to publish results (retried)")
                            .With({});
    m_handed_back = &r.AddCounter("tidegate_async_messages_handed_back_total",
                                  "Held messages handed back to the queue (nack) at shutdown")
                         .With({});
    m_inflight =
        &r.AddGauge("tidegate_async_in_flight", "Requests in flight to the gateway").With({});
    m_held = &r.AddGauge("tidegate_async_held_messages",
                         "Messages leased from the request queue and not yet answered")
                  .With({});
    m_window =
        &r.AddGauge("tidegate_async_dispatch_window", "Current AIMD limit on requests in flight")
             .With({});
    m_capacity = &r.AddGauge("tidegate_async_gateway_sheddable_capacity",
                             "The gateway's last reported sheddable capacity (-1 unknown)")
                      .With({});
    m_residence = &r.AddHistogram("tidegate_async_queue_residence_seconds",
                                  "Time from publication of a request to its first dispatch",
                                  metrics::LatencyBuckets())
                       .With({});
    m_e2e = &r.AddHistogram("tidegate_async_end_to_end_seconds",
                            "Time from publication of a request to the publication of its result",
                            metrics::LatencyBuckets())
                 .With({});
    m_replayed = &r.AddCounter("tidegate_async_results_replayed_total",
                               "Results republished from the journal for redelivered messages "
                               "(answered before a crash, not yet acknowledged)")
                      .With({});
    m_headers_dropped = &r.AddCounter("tidegate_async_message_headers_dropped_total",
                                      "Message headers not forwarded because a message may not "
                                      "set them (see allow_message_headers), by header",
                                      {"header"});
    m_escalations = &r.AddCounter("tidegate_async_escalations_total",
                                  "Messages sent with the escalation objective because their "
                                  "projected finish passed their soft deadline")
                         .With({});
    m_soft_misses = &r.AddCounter("tidegate_async_soft_deadline_misses_total",
                                  "Requests answered after their soft deadline")
                         .With({});
    m_soft_margin = &r.AddHistogram("tidegate_async_soft_deadline_margin_seconds",
                                    "How far ahead of its soft deadline a request was answered "
                                    "(negative: behind it); requests with a soft deadline only",
                                    {-3600, -600, -60, -10, -1, 0, 1, 10, 60, 600, 3600, 86400})
                         .With({});
    auto& prox = r.AddGauge("tidegate_async_backlog_deadline_proximity",
                            "Held messages waiting for dispatch whose soft deadline (else hard "
                            "deadline) is within `within` seconds, cumulative like histogram "
                            "buckets (refreshed every second)",
                            {"within"});
    for (const char* w : {"10", "60", "600", "3600", "86400", "+Inf"})
      m_proximity.emplace_back(w == std::string("+Inf") ? 1e300 : std::stod(w), &prox.With({w}));
    m_window->Set(dc.window());
    m_capacity->Set(-1);
  }

  struct Item {
    queue::Message msg;
    Request req;
    Steady::time_point deadline;  // steady-clock image of the request's deadline
    std::optional<Steady::time_point> soft_deadline;  // and of its soft deadline, when it has one
    bool escalated = false;  // sent with the escalation objective (from its first escalation on)
    Steady::time_point received;
    System::time_point published;  // when the request was published (or created)
    int attempts = 0;
    // Earlier deliveries of the same message still leased to us (Pub/Sub may deliver a message
    // again while it is held): acknowledged, extended and handed back together with msg.ack_id,
    // so the message runs once and gets one result.
    std::vector<std::string> older_acks;
    enum class State { kWaiting, kInFlight, kFinishing } state = State::kWaiting;
  };
  using ItemPtr = std::shared_ptr<Item>;

  ProcessorConfig cfg;
  net::io_context io;
  net::thread_pool blocking;
  std::unique_ptr<queue::Queue> requests, responses;
  std::unique_ptr<queue::Queue> batch_responses;  // null: Batch API results go to `responses`
  std::unique_ptr<http::Client> client;
  // Where /v1/capacity may be (see ProcessorConfig::gateway_admin) and the one in use.
  std::vector<std::pair<std::string, std::unique_ptr<http::Client>>> cap_clients;
  size_t cap_at = 0;
  std::unique_ptr<http::AdminServer> admin;
  metrics::Registry registry;
  net::steady_timer wake, flush_wake;

  std::unordered_map<std::string, ItemPtr> held;           // by queue message id
  std::set<std::pair<Steady::time_point, Item*>> ready;    // EDF: (soft or hard deadline, item)
  std::set<std::pair<Steady::time_point, Item*>> by_hard;  // the same items by hard deadline
  std::multimap<Steady::time_point, ItemPtr> delayed;      // retries by ready time
  struct Finished {
    ItemPtr item;
    Result result;
    std::string data;  // the rendered result message
    bool replayed = false;
    bool to_batch = false;  // published on batch_responses
  };
  std::vector<Finished> finished;    // results waiting for publication
  std::unique_ptr<Journal> journal;  // null when publish+ack is atomic or it is switched off
  metrics::Counter* m_replayed = nullptr;
  int inflight = 0;
  int flushing = 0;       // results in the PublishAndAck batch now running
  DispatchController dc;  // the dispatch decisions (async/dispatch.h)
  int escalated_inflight = 0;
  Steady::time_point escalation_scan_at{};
  Steady::time_point proximity_at{};  // last refresh of the backlog-by-deadline gauges
  // Capacity signal.
  bool cap_warned = false;

  std::atomic<bool> stop_requested{false};
  bool stopping = false;
  bool loops_done = false;
  bool pull_done = false;
  uint64_t n_failed = 0;  // over all error codes (the counter family is split by code)
  int exit_code = 0;

  metrics::Counter *m_pulled, *m_dispatched, *m_succeeded, *m_sheds, *m_deadline, *m_superseded,
      *m_publish_errors, *m_handed_back;
  metrics::Family<metrics::Counter>*m_failed, *m_retries, *m_headers_dropped;
  RateLimiter header_log{1, 5};  // warnings about held-back message headers
  metrics::Gauge *m_inflight, *m_held, *m_window, *m_capacity;
  metrics::Gauge* m_backlog = nullptr;  // set by BacklogLoop for backends that count
  metrics::Counter *m_escalations, *m_soft_misses;
  metrics::Histogram* m_soft_margin;
  std::vector<std::pair<double, metrics::Gauge*>> m_proximity;  // (within s, gauge)
  metrics::Histogram *m_residence, *m_e2e;

  // Runs f() on the worker pool and resumes on the event loop with its result.
  template <typename F>
  awaitable<std::invoke_result_t<F&>> Blocking(F f) {
    using R = std::invoke_result_t<F&>;
    auto task = [f = std::move(f)]() mutable -> awaitable<R> { co_return f(); };
    co_return co_await net::co_spawn(blocking, std::move(task), net::use_awaitable);
  }

  void Kick() { wake.cancel(); }

  static std::vector<std::string> AllAcks(const Item& item) {
    std::vector<std::string> acks = item.older_acks;
    acks.push_back(item.msg.ack_id);
    return acks;
  }

  void UpdateGauges() {
    m_inflight->Set(inflight);
    m_held->Set(static_cast<double>(held.size()));
    m_window->Set(dc.window());
    const auto now = Steady::now();
    if (now - proximity_at < std::chrono::seconds(1)) return;
    proximity_at = now;
    std::vector<double> counts(m_proximity.size(), 0);
    for (const auto& [key, item] : ready) {
      const double left = std::chrono::duration<double>(key - now).count();
      for (size_t i = 0; i < m_proximity.size(); ++i)
        if (left <= m_proximity[i].first) ++counts[i];
    }
    for (size_t i = 0; i < m_proximity.size(); ++i) m_proximity[i].second->Set(counts[i]);
  }

  // ------------------------------------------------------------------------------------------
  // Pulling

  awaitable<void> PullLoop() {
    net::steady_timer timer(io);
    while (!stopping) {
      int room = cfg.max_held - static_cast<int>(held.size());
      if (room <= 0) {
        timer.expires_after(milliseconds(20));
        co_await timer.async_wait(kTok);
        continue;
      }
      int max = std::min(room, cfg.pull_batch);
      auto lease = cfg.lease;
      queue::Queue* q = requests.get();
      Journal* j = journal.get();
      // (Lambdas are named before co_await: GCC 12 mis-destroys temporaries in its operand.)
      auto pull = [q, max, lease, j] {
        PullOut r;
        r.status = q->Pull(max, lease, milliseconds(500), &r.msgs);
        // A message whose result was already published (we crashed before acknowledging it)
        // gets that same result again, not a second run.
        if (j != nullptr)
          for (const auto& m : r.msgs) r.replays.push_back(j->Lookup(m.id));
        return r;
      };
      PullOut pulled = co_await Blocking(std::move(pull));
      queue::Status st = pulled.status;
      auto& msgs = pulled.msgs;
      if (!st.ok) {
        spdlog::warn("async: pull failed: {} (retrying in 1s)", st.error);
        timer.expires_after(milliseconds(1000));
        co_await timer.async_wait(kTok);
        continue;
      }
      if (stopping) {
        // Pulled while shutting down: hand them straight back.
        std::vector<std::string> ids;
        for (auto& m : msgs) ids.push_back(m.ack_id);
        if (!ids.empty()) co_await HandBack(std::move(ids));
        break;
      }
      for (size_t i = 0; i < msgs.size(); ++i) {
        std::optional<std::string> replay;
        if (i < pulled.replays.size()) replay = std::move(pulled.replays[i]);
        Accept(std::move(msgs[i]), std::move(replay));
      }
      if (!msgs.empty()) Kick();
      UpdateGauges();
    }
    pull_done = true;
  }

  struct PullOut {
    queue::Status status;
    std::vector<queue::Message> msgs;
    std::vector<std::optional<std::string>> replays;
  };

  void Accept(queue::Message m, std::optional<std::string> replay) {
    m_pulled->Inc();
    auto item = std::make_shared<Item>();
    item->received = Steady::now();
    auto sys_now = System::now();
    ParsedRequest parsed = ParseRequestMessage(m.data, m.id);
    item->msg = std::move(m);
    item->req = std::move(parsed.request);
    // Residence and end-to-end latency count from publication (the queue's precise timestamp),
    // else from the message's `created` (whole seconds), else from now.
    if (item->msg.publish_time.time_since_epoch().count() != 0)
      item->published = item->msg.publish_time;
    else if (item->req.created > 0)
      item->published = System::time_point(std::chrono::seconds(item->req.created));
    else
      item->published = sys_now;
    if (auto it = held.find(item->msg.id); it != held.end()) {
      // Delivered again while we hold it: keep one item, answer with the newest delivery.
      Item& existing = *it->second;
      if (existing.msg.ack_id != item->msg.ack_id) {
        spdlog::debug("async: message {} delivered again (attempt {}) while held", item->msg.id,
                      item->msg.delivery_attempt);
        existing.older_acks.push_back(existing.msg.ack_id);
        existing.msg.ack_id = item->msg.ack_id;
        existing.msg.delivery_attempt = item->msg.delivery_attempt;
      }
      return;
    }
    held[item->msg.id] = item;
    if (replay) {
      Result previous;
      std::string err;
      if (ParseResultMessage(*replay, &previous, &err)) {
        spdlog::info(
            "async: message {} (id {}) was answered before a restart; republishing "
            "that result",
            item->msg.id, previous.id);
        m_replayed->Inc();
        item->state = Item::State::kFinishing;
        const bool to_batch = ToBatchQueue(*item);
        finished.push_back(Finished{item, std::move(previous), std::move(*replay), true, to_batch});
        flush_wake.cancel();
        return;
      }
    }
    if (!parsed.ok()) {
      spdlog::warn("async: message {} is not a valid request: {}", item->msg.id,
                   parsed.error_message);
      Finish(item,
             MakeResult(item->req.id, 0, "", ErrorCode::kInvalidRequest, parsed.error_message));
      return;
    }
    const Steady::time_point steady_now = item->received;
    if (item->req.deadline > 0) {
      item->deadline = SteadyOf(std::min(item->req.deadline, kMaxUnixSeconds), steady_now, sys_now);
    } else {
      item->deadline = steady_now + std::chrono::duration_cast<milliseconds>(
                                        item->published - sys_now + cfg.default_deadline);
    }
    if (item->req.soft_deadline > 0)
      item->soft_deadline =
          SteadyOf(std::min(item->req.soft_deadline, kMaxUnixSeconds), steady_now, sys_now);
    if (item->deadline <= item->received) {
      m_deadline->Inc();
      Finish(item, MakeResult(item->req.id, 0, "", ErrorCode::kDeadlineExceeded,
                              "the deadline passed before the request could be dispatched"));
      return;
    }
    MakeReady(item.get());
  }

  // ------------------------------------------------------------------------------------------
  // Dispatching

  // The waiting set, two ways: by EDF key (the soft deadline, else the hard one) for dispatch
  // and escalation, and by hard deadline for expiry.
  void MakeReady(Item* item) {
    ready.emplace(DispatchController::OrderKey(item->deadline, item->soft_deadline), item);
    by_hard.emplace(item->deadline, item);
  }
  void Unready(Item* item) {
    ready.erase({DispatchController::OrderKey(item->deadline, item->soft_deadline), item});
    by_hard.erase({item->deadline, item});
  }

  void Start(const ItemPtr& item, bool escalate) {
    Unready(item.get());
    if (escalate && !item->escalated) {
      item->escalated = true;
      m_escalations->Inc();
    }
    ++inflight;
    if (item->escalated) ++escalated_inflight;
    item->state = Item::State::kInFlight;
    net::co_spawn(io, Dispatch(item), net::detached);
  }

  awaitable<void> DispatchLoop() {
    while (!stopping) {
      auto now = Steady::now();
      // Due retries join the waiting set.
      while (!delayed.empty() && delayed.begin()->first <= now) {
        ItemPtr it = delayed.begin()->second;
        delayed.erase(delayed.begin());
        MakeReady(it.get());
      }
      // Expired messages become results whether or not anything may be dispatched now.
      while (!by_hard.empty() && by_hard.begin()->first <= now) {
        Item* raw = by_hard.begin()->second;
        Unready(raw);
        auto hit = held.find(raw->msg.id);
        if (hit == held.end()) continue;
        m_deadline->Inc();
        Finish(hit->second,
               MakeResult(raw->req.id, 0, "", ErrorCode::kDeadlineExceeded,
                          "the deadline passed while the request waited for capacity"));
      }
      // Escalation: a message whose projected finish (at the service rate of late, behind what
      // is in flight and ahead of it) passes its soft deadline goes now, with the escalation
      // objective, within the escalation budget.
      // (Scanned at most every 100 ms: the projection moves slowly.)
      if (dc.config().escalation_rate > 0 && now - escalation_scan_at >= milliseconds(100)) {
        escalation_scan_at = now;
        size_t ahead = static_cast<size_t>(inflight);
        std::vector<ItemPtr> escalate;
        for (const auto& [key, raw] : ready) {
          const int busy = escalated_inflight + static_cast<int>(escalate.size());
          // Already escalated (a retry): it goes again as soon as there is an escalation slot.
          const bool go =
              raw->escalated
                  ? busy < dc.config().max_escalated
                  : raw->soft_deadline && dc.ShouldEscalate(now, ahead, *raw->soft_deadline, busy);
          if (go)
            if (auto hit = held.find(raw->msg.id); hit != held.end())
              escalate.push_back(hit->second);
          ++ahead;
        }
        // Those waiting out a back-off (after a 429, say) come after the waiting set; an
        // escalated request is not sheddable, so it need not wait for the sheddable Retry-After.
        std::vector<std::multimap<Steady::time_point, ItemPtr>::iterator> from_delayed;
        for (auto it = delayed.begin(); it != delayed.end(); ++it, ++ahead) {
          const Item& d = *it->second;
          const int busy = escalated_inflight + static_cast<int>(escalate.size());
          if (!d.escalated && d.soft_deadline &&
              dc.ShouldEscalate(now, ahead, *d.soft_deadline, busy)) {
            escalate.push_back(it->second);
            from_delayed.push_back(it);
          }
        }
        for (auto it : from_delayed) {
          MakeReady(it->second.get());  // (Start takes it out of the waiting set again)
          delayed.erase(it);
        }
        for (const ItemPtr& item : escalate) Start(item, true);
      }
      int allowed = dc.Allowed(now, inflight - escalated_inflight);
      while (allowed > 0 && !ready.empty()) {
        Item* raw = ready.begin()->second;
        auto hit = held.find(raw->msg.id);
        if (hit == held.end()) {
          Unready(raw);
          continue;
        }
        --allowed;
        Start(hit->second, false);
      }
      UpdateGauges();
      // Sleep until something changes: a kick (new messages, a finished request), the next
      // retry, the end of a pause, or a periodic re-check of the capacity signal.
      auto until = now + milliseconds(std::max<int64_t>(5, cfg.capacity_interval.count() / 2));
      if (cfg.capacity_interval.count() == 0) until = now + milliseconds(50);
      if (!delayed.empty()) until = std::min(until, delayed.begin()->first);
      if (dc.paused_until() > now) until = std::min(until, dc.paused_until());
      if (!by_hard.empty()) until = std::min(until, by_hard.begin()->first);
      wake.expires_at(until);
      co_await wake.async_wait(kTok);
    }
  }

  // Whether a message may set this header (see ProcessorConfig::allow_message_headers):
  // anyone who can publish to the queue must not escape shedding, take another tenant's
  // credentials or reuse another request's id.
  bool MessageHeaderAllowed(const std::string& name) const {
    static constexpr std::string_view kHeld[] = {wire::kObjective, wire::kObjectiveAlias,
                                                 "authorization", "proxy-authorization",
                                                 wire::kRequestId};
    for (std::string_view h : kHeld) {
      if (!boost::iequals(name, h)) continue;
      for (const auto& a : cfg.allow_message_headers)
        if (boost::iequals(a, name)) return true;
      return false;
    }
    return true;
  }

  http::Headers BuildHeaders(const Item& item) {
    http::Headers headers;
    headers.reserve(item.req.headers.size() + 3);
    bool has_objective = false, has_id = false, has_authorization = false;
    for (const auto& [k, v] : item.req.headers) {
      if (!MessageHeaderAllowed(k)) {
        m_headers_dropped->With({LowerAscii(k)}).Inc();
        if (header_log.Allow(SystemClock::Instance().Now()))
          spdlog::warn(
              "message {}: header {} is not forwarded (a message may not set it; "
              "allow_message_headers lets it through)",
              item.req.id, k);
        continue;
      }
      if (boost::iequals(k, wire::kObjective) || boost::iequals(k, wire::kObjectiveAlias))
        has_objective = true;
      if (boost::iequals(k, wire::kRequestId)) has_id = true;
      if (boost::iequals(k, "authorization")) has_authorization = true;
      headers.emplace_back(k, v);
    }
    if (!cfg.api_key.empty() && !has_authorization)
      headers.emplace_back("authorization", "Bearer " + cfg.api_key);
    if (!has_objective)
      headers.emplace_back(wire::kObjective,
                           item.escalated ? cfg.escalation_objective : cfg.objective);
    if (!has_id) headers.emplace_back(wire::kRequestId, item.req.id);
    return headers;
  }

  // One attempt: the HTTP exchange is the only suspension point; the bookkeeping before and
  // after is in plain functions.
  awaitable<void> Dispatch(ItemPtr item) {
    http::Headers headers = BeforeAttempt(*item);
    http::ClientRequest req;
    req.method = "POST";
    req.target = item->req.path;
    req.body = item->req.payload;
    req.headers = &headers;
    req.deadline = std::min(item->deadline, Steady::now() + cfg.request_timeout);
    http::ClientResponse resp = co_await client->Send(req);
    if (AfterAttempt(item, std::move(resp))) {
      std::vector<std::string> ids = AllAcks(*item);
      co_await HandBack(std::move(ids));
    }
  }

  http::Headers BeforeAttempt(Item& item) {
    if (item.attempts == 0) {  // first dispatch: the end of its queue residence
      m_residence->Observe(
          std::max(0.0, std::chrono::duration<double>(System::now() - item.published).count()));
    }
    ++item.attempts;
    m_dispatched->Inc();
    return BuildHeaders(item);
  }

  // Classifies the answer: a result, a retry, or (while stopping) a hand-back — returns true
  // when the message must be handed back (it is no longer held).
  bool AfterAttempt(const ItemPtr& item, http::ClientResponse resp) {
    --inflight;
    if (item->escalated) --escalated_inflight;
    auto now = Steady::now();
    Kick();
    const int status = resp.status;
    if (status >= 200 && status < 300) {
      dc.Succeeded(now);
      RecordSoftMargin(*item, now);
      Finish(item, MakeResult(item->req.id, status, std::move(resp.body), ErrorCode::kNone, ""));
      return false;
    }
    if (status == 0 && resp.timed_out && now >= item->deadline) {
      m_deadline->Inc();
      Finish(item, MakeResult(item->req.id, 0, std::move(resp.body), ErrorCode::kDeadlineExceeded,
                              "the deadline passed while the request was in flight"));
      return false;
    }
    bool retryable = status == 0 || status == 429 || status == 408 || status >= 500;
    if (!retryable) {
      std::string msg = "the gateway answered " + std::to_string(status);
      Finish(item, MakeResult(item->req.id, status, std::move(resp.body),
                              ErrorCode::kInvalidRequest, std::move(msg)));
      return false;
    }
    std::string reason = "server_error";
    if (status == 429) reason = "shed";
    if (status == 0) reason = "transport";
    int64_t retry_after = resp.retry_after_ms;
    using F = DispatchController::Failure;
    if (status == 429) {
      m_sheds->Inc();
      dc.Failed(now, F::kShed, &retry_after);
    } else if (status == 0 && resp.connect_failed) {
      dc.Failed(now, F::kConnectFailed, &retry_after);
    } else if (status >= 500) {
      dc.Failed(now, F::kServerError, &retry_after);
    } else {
      dc.Failed(now, F::kOther, &retry_after);
    }
    const DispatchController::Retry plan =
        dc.PlanRetry(now, item->attempts, retry_after, item->deadline, item->soft_deadline);
    if (plan.give_up || stopping) {
      if (stopping && !plan.give_up) {
        // Shutting down: hand it back rather than give up on it.
        held.erase(item->msg.id);
        return true;
      }
      std::string msg;
      ErrorCode code = status == 429 ? ErrorCode::kShedExhausted : ErrorCode::kInferenceError;
      if (status == 0)
        msg = resp.error;
      else
        msg = "the gateway answered " + std::to_string(status);
      if (plan.attempts_exhausted)
        msg += " after " + std::to_string(item->attempts) + " attempts (--max-attempts)";
      else
        msg += "; no further attempt fits before the deadline";
      Finish(item, MakeResult(item->req.id, status, std::move(resp.body), code, std::move(msg)));
      return false;
    }
    RecordRetry(reason);
    item->state = Item::State::kWaiting;
    delayed.emplace(plan.at, item);
    return false;
  }

  // How far ahead of (positive) or behind its soft deadline a message finished.
  void RecordSoftMargin(const Item& item, Steady::time_point now) {
    if (!item.soft_deadline) return;
    const double margin = std::chrono::duration<double>(*item.soft_deadline - now).count();
    m_soft_margin->Observe(margin);
    if (margin < 0) m_soft_misses->Inc();
  }

  // ------------------------------------------------------------------------------------------
  // Results

  void RecordRetry(const std::string& reason) { m_retries->With({reason}).Inc(); }

  // A Batch API line's result goes to the batch results queue (when there is one).
  bool ToBatchQueue(const Item& item) const {
    return batch_responses != nullptr && item.req.metadata.count(std::string(kBatchIdMetadata)) > 0;
  }

  void Finish(const ItemPtr& item, Result result) {
    item->state = Item::State::kFinishing;
    std::string data = RenderResultMessage(result);
    const bool to_batch = ToBatchQueue(*item);
    finished.push_back(Finished{item, std::move(result), std::move(data), false, to_batch});
    flush_wake.cancel();
  }

  awaitable<void> FlushLoop() {
    net::steady_timer retry_timer(io);
    for (;;) {
      if (finished.empty()) {
        if (loops_done) co_return;
        flush_wake.expires_after(milliseconds(200));
        co_await flush_wake.async_wait(kTok);
        continue;
      }
      std::vector<Finished> batch;
      // A run of results bound for the same queue (the results or the Batch API's).
      const bool to_batch = finished.front().to_batch;
      size_t n = 1;
      while (n < finished.size() && n < 512 && finished[n].to_batch == to_batch) ++n;
      batch.assign(std::make_move_iterator(finished.begin()),
                   std::make_move_iterator(finished.begin() + n));
      finished.erase(finished.begin(), finished.begin() + n);
      auto items = std::make_shared<std::vector<queue::PublishAck>>();
      items->reserve(n);
      auto journaled = std::make_shared<std::vector<std::pair<std::string, std::string>>>();
      auto older = std::make_shared<std::vector<std::string>>();
      for (auto& [item, result, data, replayed, batch_line] : batch) {
        queue::PublishAck pa;
        if (journal) journaled->emplace_back(item->msg.id, data);
        pa.data = data;
        pa.attributes["id"] = result.id;
        if (result.error_code != ErrorCode::kNone)
          pa.attributes["error_code"] = std::string(ErrorCodeName(result.error_code));
        pa.ack_id = item->msg.ack_id;
        items->push_back(std::move(pa));
        older->insert(older->end(), item->older_acks.begin(), item->older_acks.end());
      }
      flushing = static_cast<int>(n);
      queue::Queue* out = to_batch ? batch_responses.get() : responses.get();
      queue::Queue* src = requests.get();
      for (int attempt = 1;; ++attempt) {
        Journal* j = journal.get();
        auto publish = [out, src, items, j, journaled, older] {
          return PublishBatch(out, src, items.get(), j, *journaled, *older);
        };
        queue::Status st = co_await Blocking(std::move(publish));
        if (st.ok) break;
        m_publish_errors->Inc();
        spdlog::warn("async: publishing {} result(s) failed (attempt {}): {}", n, attempt,
                     st.error);
        retry_timer.expires_after(std::min(milliseconds(200 * attempt), milliseconds(5000)));
        co_await retry_timer.async_wait(kTok);
      }
      flushing = 0;
      auto sys_now = System::now();
      for (size_t i = 0; i < n; ++i) {
        auto& [item, result, data, replayed, batch_line] = batch[i];
        held.erase(item->msg.id);
        if ((*items)[i].superseded) {
          m_superseded->Inc();
          spdlog::info("async: result for {} not published: the message was redelivered",
                       result.id);
          continue;
        }
        m_e2e->Observe(
            std::max(0.0, std::chrono::duration<double>(sys_now - item->published).count()));
        if (result.error_code == ErrorCode::kNone) {
          m_succeeded->Inc();
        } else {
          ++n_failed;
          m_failed->With({std::string(ErrorCodeName(result.error_code))}).Inc();
        }
      }
      UpdateGauges();
      Kick();
    }
  }

  // On a worker thread: journal (when there is one), publish and acknowledge, then drop the
  // journal entries of what was acknowledged.
  static queue::Status PublishBatch(queue::Queue* out, queue::Queue* src,
                                    std::vector<queue::PublishAck>* items, Journal* j,
                                    const std::vector<std::pair<std::string, std::string>>& entries,
                                    const std::vector<std::string>& older_acks) {
    if (j != nullptr) {
      if (std::string err = j->Record(entries); !err.empty()) return queue::Status::Error(err);
    }
    queue::Status st = out->PublishAndAck(items, *src);
    if (st.ok && !older_acks.empty()) {
      if (queue::Status a = src->Ack(older_acks); !a.ok)
        spdlog::warn("async: acknowledging earlier deliveries failed: {}", a.error);
    }
    if (j != nullptr) {
      std::vector<std::string> done;
      for (size_t i = 0; i < items->size() && i < entries.size(); ++i)
        if ((*items)[i].done) done.push_back(entries[i].first);
      if (std::string err = j->Forget(done); !err.empty())
        spdlog::warn("async: {} (entries are purged after a week)", err);
    }
    return st;
  }

  // ------------------------------------------------------------------------------------------
  // Leases, capacity, shutdown

  awaitable<void> HandBack(std::vector<std::string> ack_ids) {
    queue::Queue* q = requests.get();
    size_t n = ack_ids.size();
    auto nack = [q, ids = std::move(ack_ids)] { return q->Nack(ids); };
    queue::Status st = co_await Blocking(std::move(nack));
    if (!st.ok)
      spdlog::warn(
          "async: handing back {} message(s) failed: {} (they return when their lease "
          "runs out)",
          n, st.error);
    else
      m_handed_back->Inc(n);
  }

  awaitable<void> LeaseLoop() {
    net::steady_timer timer(io);
    const auto period = std::max(milliseconds(200), cfg.lease / 3);
    while (!loops_done) {
      timer.expires_after(period);
      co_await timer.async_wait(kTok);
      if (held.empty()) continue;
      std::vector<std::string> ids;
      ids.reserve(held.size());
      for (const auto& [id, item] : held) {
        ids.insert(ids.end(), item->older_acks.begin(), item->older_acks.end());
        ids.push_back(item->msg.ack_id);
      }
      queue::Queue* q = requests.get();
      auto lease = cfg.lease;
      auto extend = [q, ids = std::move(ids), lease] { return q->Extend(ids, lease); };
      queue::Status st = co_await Blocking(std::move(extend));
      if (!st.ok) spdlog::warn("async: extending leases failed: {}", st.error);
    }
  }

  // The request queue's backlog every 2 s, for backends that can count it (the gauge exists
  // only then).
  awaitable<void> BacklogLoop() {
    net::steady_timer timer(io);
    queue::Queue* q = requests.get();
    while (!loops_done) {
      std::optional<int64_t> n = co_await Blocking([q] { return q->Backlog(); });
      if (!n) co_return;
      if (!m_backlog)
        m_backlog = &registry
                         .AddGauge("tidegate_async_queue_backlog",
                                   "Messages on the request queue (leased ones included), read "
                                   "every 2 s; only for backends that can count them (sqlite)")
                         .With({});
      m_backlog->Set(static_cast<double>(*n));
      timer.expires_after(milliseconds(2000));
      co_await timer.async_wait(kTok);
    }
  }

  // The queues' own events (reconnects, reclaimed, dead-lettered...) every 2 s.
  awaitable<void> QueueEventsLoop() {
    net::steady_timer timer(io);
    auto& family = registry.AddFloatCounter(
        "tidegate_async_queue_events_total",
        "Events of the queue backends, by queue (requests, responses) and event: reconnects, "
        "disconnects, reclaimed (messages taken over from a consumer whose lease ran out), "
        "dead_lettered (read every 2 s; backends without such events export none)",
        {"queue", "event"});
    queue::Queue* req = requests.get();
    queue::Queue* res = responses.get();
    while (!loops_done) {
      using Counts = std::vector<std::pair<std::string, uint64_t>>;
      auto read = [req, res] {
        return std::pair<Counts, Counts>(req->EventCounts(), res->EventCounts());
      };
      std::pair<Counts, Counts> counts = co_await Blocking(std::move(read));
      for (const auto& [event, n] : counts.first)
        family.With({"requests", event}).Set(static_cast<double>(n));
      for (const auto& [event, n] : counts.second)
        family.With({"responses", event}).Set(static_cast<double>(n));
      timer.expires_after(milliseconds(2000));
      co_await timer.async_wait(kTok);
    }
  }

  awaitable<void> CapacityLoop() {
    if (cfg.capacity_interval.count() == 0) co_return;
    net::steady_timer timer(io);
    while (!stopping) {
      http::ClientRequest req;
      req.method = "GET";
      req.target = "/v1/capacity";
      req.deadline = Steady::now() + std::max(milliseconds(1000), cfg.capacity_interval * 4);
      http::ClientResponse resp = co_await cap_clients[cap_at].second->Send(req);
      if ((resp.status == 404 || resp.status == 0) && cap_clients.size() > 1) {
        // Not here: try the other place the admin listener may be.
        cap_at = (cap_at + 1) % cap_clients.size();
        req.deadline = Steady::now() + std::max(milliseconds(1000), cfg.capacity_interval * 4);
        resp = co_await cap_clients[cap_at].second->Send(req);
        if (resp.status == 200)
          spdlog::info("async: reading the gateway's capacity signal at {}/v1/capacity",
                       cap_clients[cap_at].first);
      }
      bool ok = false;
      wire::Capacity cap;
      std::string parse_error;
      if (resp.status == 200) {
        if (wire::ParseCapacity(resp.body, &cap, &parse_error)) {
          if (!dc.capacity_known() && cap_warned)
            spdlog::info("async: the gateway's capacity signal is back");
          // (Escalated requests are not paced by the signal: the base is the sheddable ones.)
          dc.CapacityRead(Steady::now(), cap.saturation, cap.sheddable_capacity, cap.retry_after_ms,
                          inflight - escalated_inflight);
          ok = true;
          cap_warned = false;
          m_capacity->Set(static_cast<double>(cap.sheddable_capacity));
          Kick();
        }
      }
      if (!ok) {
        if (!cap_warned) {
          std::string why = resp.status == 200 ? parse_error
                            : resp.status      ? "HTTP " + std::to_string(resp.status)
                                               : resp.error;
          std::string where;
          for (const auto& [u, c] : cap_clients) where += (where.empty() ? "" : " or ") + u;
          spdlog::warn("async: cannot read {}/v1/capacity ({}); pacing by the AIMD window alone",
                       where, why);
          cap_warned = true;
        }
        dc.CapacityLost();
        m_capacity->Set(-1);
      }
      timer.expires_after(cfg.capacity_interval);
      co_await timer.async_wait(kTok);
    }
  }

  awaitable<void> ProgressLoop() {
    if (cfg.progress_interval.count() == 0) co_return;
    net::steady_timer timer(io);
    uint64_t last = ~0ull;
    while (!stopping) {
      timer.expires_after(cfg.progress_interval);
      co_await timer.async_wait(kTok);
      uint64_t sig = m_pulled->Value() + m_succeeded->Value() + n_failed + held.size();
      if (sig == last) continue;
      last = sig;
      spdlog::info(
          "async: pulled {}, succeeded {}, failed {}, held {}, in flight {}, window {:.1f}",
          m_pulled->Value(), m_succeeded->Value(), n_failed, held.size(), inflight, dc.window());
    }
  }

  awaitable<void> StopWatch() {
    net::steady_timer timer(io);
    while (!stop_requested.load()) {
      timer.expires_after(milliseconds(50));
      co_await timer.async_wait(kTok);
    }
    stopping = true;
    Kick();
    spdlog::info(
        "async: stopping: no more pulls; handing back {} waiting message(s), finishing "
        "{} in flight (up to {} ms)",
        ready.size() + delayed.size(), inflight, cfg.drain_timeout.count());
    // Hand back everything not in flight and not being published.
    std::vector<std::string> back;
    for (auto it = held.begin(); it != held.end();) {
      if (it->second->state == Item::State::kWaiting) {
        for (auto& a : AllAcks(*it->second)) back.push_back(std::move(a));
        it = held.erase(it);
      } else {
        ++it;
      }
    }
    ready.clear();
    by_hard.clear();
    delayed.clear();
    if (!back.empty()) co_await HandBack(std::move(back));
    auto give_up = Steady::now() + cfg.drain_timeout;
    while ((inflight > 0 || !finished.empty() || flushing > 0 || !held.empty() || !pull_done) &&
           Steady::now() < give_up) {
      // Retries scheduled during the drain were handed back by Dispatch; wait for the rest.
      timer.expires_after(milliseconds(20));
      co_await timer.async_wait(kTok);
      for (auto it = held.begin(); it != held.end();) {
        if (it->second->state == Item::State::kWaiting) {
          std::vector<std::string> one = AllAcks(*it->second);
          it = held.erase(it);
          co_await HandBack(std::move(one));
        } else {
          ++it;
        }
      }
      ready.clear();
      by_hard.clear();
      by_hard.clear();
      delayed.clear();
    }
    if (!held.empty()) {
      std::vector<std::string> rest;
      for (const auto& [id, item] : held)
        for (auto& a : AllAcks(*item)) rest.push_back(std::move(a));
      spdlog::warn("async: drain timeout: handing back {} message(s) still in flight", rest.size());
      held.clear();
      co_await HandBack(std::move(rest));
      exit_code = 1;
    }
    loops_done = true;
    flush_wake.cancel();
    spdlog::info("async: stopped (pulled {}, succeeded {}, failed {})", m_pulled->Value(),
                 m_succeeded->Value(), n_failed);
    if (admin) admin->Stop();
    io.stop();
  }
};

Processor::Processor(ProcessorConfig cfg) : impl_(std::make_unique<Impl>(std::move(cfg))) {}
Processor::~Processor() {
  if (impl_) impl_->blocking.join();
}

std::string Processor::Start() {
  auto& im = *impl_;
  if (auto err = im.cfg.Validate(); !err.empty()) return err;
  if (const OpenFilesLimit fds = RaiseOpenFilesLimit(); !fds.error.empty()) {
    spdlog::warn("open files: cannot raise the limit from {} to {}: {}", fds.before, fds.hard,
                 fds.error);
  } else if (fds.soft > fds.before) {
    spdlog::info("open files: limit {} (raised from {})", fds.soft, fds.before);
  }
  std::string err;
  im.requests = queue::OpenQueue(im.cfg.requests, &err);
  if (!im.requests) return "--requests: " + err;
  im.responses = queue::OpenQueue(im.cfg.responses, &err);
  if (!im.responses) return "--responses: " + err;
  if (!im.cfg.batch_responses.empty()) {
    im.batch_responses = queue::OpenQueue(im.cfg.batch_responses, &err);
    if (!im.batch_responses) return "--batch-responses: " + err;
  }
  const bool atomic = im.responses->AtomicPublishAck(*im.requests) &&
                      (!im.batch_responses || im.batch_responses->AtomicPublishAck(*im.requests));
  if (im.cfg.journal != "off" && !im.cfg.journal.empty() && !(im.cfg.journal == "auto" && atomic)) {
    std::string path = im.cfg.journal == "auto" ? "tidegate-async-journal.db" : im.cfg.journal;
    im.journal = Journal::Open(path, &err);
    if (!im.journal) return "--journal: " + err;
    spdlog::info(
        "async: result journal {} (a crash between publishing a result and "
        "acknowledging its request republishes the same result)",
        path);
  }
  http::Url url;
  http::ParseHttpUrl(im.cfg.gateway, &url, &err);
  im.client = std::make_unique<http::Client>(im.io.get_executor(), url,
                                             static_cast<size_t>(im.cfg.max_inflight));
  std::vector<std::string> cap_urls;
  if (!im.cfg.gateway_admin.empty()) {
    cap_urls.push_back(im.cfg.gateway_admin);
  } else {
    cap_urls.push_back(im.cfg.gateway);
    cap_urls.push_back("http://" + url.host + ":9090");
  }
  for (const auto& u : cap_urls) {
    http::Url cu;
    if (!http::ParseHttpUrl(u, &cu, &err)) return "--gateway-admin: " + err;
    im.cap_clients.emplace_back(u, std::make_unique<http::Client>(im.io.get_executor(), cu, 2));
  }
  if (im.cfg.metrics_port >= 0) {
    im.admin = std::make_unique<http::AdminServer>(
        im.io.get_executor(), [&im](std::string_view path) -> http::AdminResponse {
          if (path == "/metrics")
            return {200, "text/plain; version=0.0.4; charset=utf-8", im.registry.Render()};
          if (path == "/healthz") return {200, "text/plain; charset=utf-8", "ok\n"};
          return {404, "text/plain; charset=utf-8", "not found (try /metrics or /healthz)\n"};
        });
    if (auto e = im.admin->Start(im.cfg.metrics_host, static_cast<uint16_t>(im.cfg.metrics_port));
        !e.empty())
      return "metrics server: " + e;
  }
  return "";
}

int Processor::metrics_port() const { return impl_->admin ? impl_->admin->port() : -1; }

void Processor::Stop() { impl_->stop_requested.store(true); }

int Processor::Run(bool handle_signals) {
  auto& im = *impl_;
  std::optional<net::signal_set> signals;
  if (handle_signals) {
    signals.emplace(im.io, SIGINT, SIGTERM);
    signals->async_wait([this](const boost::system::error_code& ec, int sig) {
      if (ec) return;
      spdlog::info("async: received signal {}", sig);
      Stop();
    });
  }
  spdlog::info("async: {} → {} (objective {}) → {}", queue::RedactUri(im.cfg.requests),
               im.cfg.gateway, im.cfg.objective, queue::RedactUri(im.cfg.responses));
  if (im.batch_responses)
    spdlog::info("async: Batch API results → {}", queue::RedactUri(im.cfg.batch_responses));
  if (im.admin)
    spdlog::info("async: metrics on http://{}:{}/metrics", im.cfg.metrics_host, im.admin->port());
  net::co_spawn(im.io, im.PullLoop(), net::detached);
  net::co_spawn(im.io, im.DispatchLoop(), net::detached);
  net::co_spawn(im.io, im.FlushLoop(), net::detached);
  net::co_spawn(im.io, im.LeaseLoop(), net::detached);
  net::co_spawn(im.io, im.CapacityLoop(), net::detached);
  net::co_spawn(im.io, im.BacklogLoop(), net::detached);
  net::co_spawn(im.io, im.QueueEventsLoop(), net::detached);
  net::co_spawn(im.io, im.ProgressLoop(), net::detached);
  net::co_spawn(im.io, im.StopWatch(), net::detached);
  im.dc.Begin(Steady::now());
  im.io.run();
  if (signals) signals->cancel();
  im.blocking.join();
  return im.exit_code;
}

}  // namespace tidegate::async
