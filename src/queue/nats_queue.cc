// queue/nats_queue.cc — see nats_queue.h.
#include "queue/nats_queue.h"

#include <nats/nats.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <charconv>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <unordered_map>

#include "common/units.h"
#include "queue/uri.h"

namespace tidegate::queue {
namespace {

using std::chrono::milliseconds;

constexpr int kDefaultPort = 4222;
constexpr int kMaxFetch = 1000;
constexpr int64_t kMaxAckPending = 10000;  // for consumers we create
constexpr milliseconds kDefaultAckWait{30000};
constexpr milliseconds kDeadLetterRetryDelay{1000};
constexpr milliseconds kMinFetchWait{50};
constexpr milliseconds kPullRequestSlack{100};  // a pull request may outlive our fetch by this

int64_t SteadyNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
constexpr int64_t kNanosPerMilli = 1000000;

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// Splits "scheme://" off; returns the rest, or nullopt when the scheme is not nats/tls.
std::optional<std::string_view> AfterScheme(std::string_view uri, bool* tls) {
  size_t sep = uri.find("://");
  if (sep == std::string_view::npos) return std::nullopt;
  std::string scheme = Lower(uri.substr(0, sep));
  if (scheme != "nats" && scheme != "tls") return std::nullopt;
  *tls = scheme == "tls";
  return uri.substr(sep + 3);
}

std::string Base36(uint64_t v) {
  static constexpr char kDigits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
  std::string out;
  do {
    out.push_back(kDigits[v % 36]);
    v /= 36;
  } while (v != 0);
  std::reverse(out.begin(), out.end());
  return out;
}

std::string StatusText(natsStatus s) {
  std::string text = natsStatus_GetText(s);
  natsStatus last = NATS_OK;
  const char* raw = nats_GetLastError(&last);
  std::string_view detail = raw != nullptr ? raw : "";
  // cnats prefixes its detail with the source location: "(conn.c:1905): ".
  if (!detail.empty() && detail.front() == '(') {
    if (size_t end = detail.find("): "); end != std::string_view::npos)
      detail.remove_prefix(end + 3);
  }
  if (last == s && !detail.empty() && Lower(detail) != Lower(text)) {
    text += " (";
    text += detail;
    text += ")";
  }
  return text;
}

std::string JsText(natsStatus s, jsErrCode jerr) {
  std::string text = StatusText(s);
  if (jerr != 0) text += " [JetStream error " + std::to_string(static_cast<int>(jerr)) + "]";
  return text;
}

int64_t ToNanos(milliseconds d) { return static_cast<int64_t>(d.count()) * kNanosPerMilli; }

std::string FormatNanos(int64_t ns) { return FormatDuration(milliseconds(ns / kNanosPerMilli)); }

// RAII for cnats objects.
struct OptionsDeleter {
  void operator()(natsOptions* o) const { natsOptions_Destroy(o); }
};
struct StreamInfoDeleter {
  void operator()(jsStreamInfo* si) const { jsStreamInfo_Destroy(si); }
};
struct ConsumerInfoDeleter {
  void operator()(jsConsumerInfo* ci) const { jsConsumerInfo_Destroy(ci); }
};
struct MsgDeleter {
  void operator()(natsMsg* m) const { natsMsg_Destroy(m); }
};
using StreamInfoPtr = std::unique_ptr<jsStreamInfo, StreamInfoDeleter>;
using ConsumerInfoPtr = std::unique_ptr<jsConsumerInfo, ConsumerInfoDeleter>;
using MsgPtr = std::unique_ptr<natsMsg, MsgDeleter>;

// Connection events, reported by cnats on its own thread. Lives on the heap so that a callback
// that runs late (after the queue is gone) never touches freed memory: the queue waits for the
// closed callback before it frees this.
struct ConnEvents {
  std::string name;  // the redacted URI
  std::mutex mu;
  std::condition_variable cv;
  bool closed = false;
  std::atomic<bool> closing{false};  // our own Close(): its disconnect is not news
  std::atomic<uint64_t> disconnects{0}, reconnects{0};
  std::atomic<int64_t> last_error_log{0};
};

void OnDisconnected(natsConnection*, void* closure) {
  auto* ev = static_cast<ConnEvents*>(closure);
  if (ev->closing.load()) return;
  ev->disconnects.fetch_add(1);
  spdlog::warn("nats {}: disconnected; reconnecting in the background", ev->name);
}

void OnReconnected(natsConnection*, void* closure) {
  auto* ev = static_cast<ConnEvents*>(closure);
  ev->reconnects.fetch_add(1);
  spdlog::info("nats {}: reconnected", ev->name);
}

void OnClosed(natsConnection*, void* closure) {
  auto* ev = static_cast<ConnEvents*>(closure);
  std::lock_guard lock(ev->mu);
  ev->closed = true;
  ev->cv.notify_all();
}

void OnError(natsConnection*, natsSubscription*, natsStatus err, void* closure) {
  auto* ev = static_cast<ConnEvents*>(closure);
  // At most one line every 5 s (a slow consumer reports on every dropped message).
  int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                    std::chrono::steady_clock::now().time_since_epoch())
                    .count();
  int64_t last = ev->last_error_log.load();
  if (now - last < 5 || !ev->last_error_log.compare_exchange_strong(last, now)) return;
  spdlog::warn("nats {}: asynchronous error: {}", ev->name, natsStatus_GetText(err));
}

class NatsQueue final : public Queue {
 public:
  NatsQueue(std::string redacted_uri, NatsQueueOptions opts)
      : uri_(std::move(redacted_uri)), opts_(std::move(opts)), events_(new ConnEvents) {
    events_->name = uri_;
    jsOptions_Init(&jsopts_);
    jsopts_.Wait = opts_.timeout.count();
  }

  ~NatsQueue() override {
    {
      std::lock_guard lock(held_mu_);
      for (auto& [id, msg] : held_) natsMsg_Destroy(msg);
      held_.clear();
    }
    if (sub_ != nullptr) natsSubscription_Destroy(sub_);  // keeps the durable consumer
    if (js_ != nullptr) jsCtx_Destroy(js_);
    if (nc_ != nullptr) {
      events_->closing = true;
      natsConnection_Close(nc_);
      std::unique_lock lock(events_->mu);
      bool closed =
          events_->cv.wait_for(lock, std::chrono::seconds(5), [&] { return events_->closed; });
      lock.unlock();
      natsConnection_Destroy(nc_);
      if (!closed) (void)events_.release();  // a late callback may still come: keep it valid
    }
  }

  std::string_view kind() const override { return "nats"; }
  const std::string& uri() const override { return uri_; }

  bool Open(std::string* error) {
    if (Status st = Connect(); !st.ok) {
      *error = st.error;
      return false;
    }
    if (Status st = EnsureStream(); !st.ok) {
      *error = st.error;
      return false;
    }
    if (!opts_.consumer.empty()) {
      Status st = EnsureDeadLetterStream();
      if (st.ok) st = EnsureConsumer();
      if (st.ok) st = Subscribe();
      if (!st.ok) {
        *error = st.error;
        return false;
      }
    }
    return true;
  }

  Status Publish(std::string_view data, const std::map<std::string, std::string>& attrs,
                 std::string* id) override {
    if (Status st = NeedConnected("publish"); !st.ok) return st;
    for (const auto& [k, v] : attrs) {
      if (!ValidNatsHeader(k, v))
        return Status::Error(Describe("publish") + ": attribute '" + k +
                             "' cannot be a NATS header (printable ASCII name without ':' or "
                             "spaces, value without CR/LF)");
    }
    natsMsg* raw = nullptr;
    natsStatus s = natsMsg_Create(&raw, opts_.subject.c_str(), nullptr, data.data(),
                                  static_cast<int>(data.size()));
    if (s != NATS_OK) return Status::Error(Describe("publish") + ": " + StatusText(s));
    MsgPtr msg(raw);
    for (const auto& [k, v] : attrs) {
      if ((s = natsMsgHeader_Set(raw, k.c_str(), v.c_str())) != NATS_OK)
        return Status::Error(Describe("publish") + ": header " + k + ": " + StatusText(s));
    }
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = opts_.timeout.count();
    jsPubAck* pa = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    s = js_PublishMsg(&pa, js_, raw, &po, &jerr);
    if (s != NATS_OK) {
      std::string hint;
      if (s == NATS_NO_RESPONDERS) hint = " (no stream captures subject " + opts_.subject + ")";
      return Status::Error(Describe("publish to " + opts_.subject) + ": " + JsText(s, jerr) + hint);
    }
    if (pa->Duplicate)
      spdlog::debug("nats {}: publish to {} was a duplicate (already stored)", uri_, opts_.subject);
    if (id != nullptr) {
      std::string stream = pa->Stream ? pa->Stream : opts_.stream;
      *id = stream == opts_.stream ? NatsMessageId(stream, pa->Sequence, stream_created_)
                                   : stream + ":" + std::to_string(pa->Sequence);
    }
    jsPubAck_Destroy(pa);
    return Status::Ok();
  }

  Status Pull(int max, milliseconds lease, milliseconds wait, std::vector<Message>* out) override {
    if (Status st = NeedConsumer("pull"); !st.ok) return st;
    if (max <= 0) return Status::Ok();
    max = std::min(max, kMaxFetch);
    std::lock_guard fetch_lock(fetch_mu_);
    if (Status st = NeedConnected("pull"); !st.ok) return st;
    if (Status st = FollowLease(lease); !st.ok) return st;
    natsMsgList list{nullptr, 0};
    jsErrCode jerr = static_cast<jsErrCode>(0);
    // wait 0 still gives the pull request a round trip (a no-wait fetch request leaves a late
    // "no messages" status behind that cuts the next fetch short).
    const int64_t wait_ms = std::max<int64_t>(wait.count(), kMinFetchWait.count());
    // The server may hold this pull request a little past our local timeout (see Nack).
    pull_open_until_ns_.store(SteadyNanos() +
                              (wait_ms + kPullRequestSlack.count()) * kNanosPerMilli);
    natsStatus s = natsSubscription_Fetch(&list, sub_, max, wait_ms, &jerr);
    if (s == NATS_TIMEOUT || (s == NATS_NOT_FOUND && list.Count == 0)) {
      natsMsgList_Destroy(&list);
      return Status::Ok();  // nothing to deliver now
    }
    if (s != NATS_OK) {
      natsMsgList_Destroy(&list);
      return Status::Error(Describe("pull") + ": " + JsText(s, jerr));
    }
    for (int i = 0; i < list.Count; ++i) {
      natsMsg* m = list.Msgs[i];
      if (m == nullptr) continue;
      jsMsgMetaData* meta = nullptr;
      if (natsMsg_GetMetaData(&meta, m) != NATS_OK || meta == nullptr) continue;  // not JS
      const uint64_t seq = meta->Sequence.Stream;
      const uint64_t delivered = std::max<uint64_t>(meta->NumDelivered, 1);
      const int64_t timestamp = meta->Timestamp;
      jsMsgMetaData_Destroy(meta);
      if (opts_.max_attempts > 0 && delivered > static_cast<uint64_t>(opts_.max_attempts)) {
        DeadLetter(m, seq, delivered);
        continue;  // list destroys m
      }
      Message msg;
      msg.id = NatsMessageId(opts_.stream, seq, stream_created_);
      msg.ack_id = NatsAckId(seq, delivered);
      msg.delivery_attempt = static_cast<int>(std::min<uint64_t>(delivered, 1 << 30));
      msg.data.assign(natsMsg_GetData(m), static_cast<size_t>(natsMsg_GetDataLength(m)));
      msg.attributes = Headers(m);
      msg.publish_time = std::chrono::system_clock::time_point(
          std::chrono::duration_cast<std::chrono::system_clock::duration>(
              std::chrono::nanoseconds(timestamp)));
      {
        std::lock_guard lock(held_mu_);
        auto [it, inserted] = held_.emplace(msg.ack_id, m);
        if (!inserted) {  // the same delivery twice cannot happen; keep the newest handle
          natsMsg_Destroy(it->second);
          it->second = m;
        }
      }
      list.Msgs[i] = nullptr;  // now owned by held_
      out->push_back(std::move(msg));
    }
    natsMsgList_Destroy(&list);
    return Status::Ok();
  }

  Status Ack(const std::vector<std::string>& ack_ids) override {
    if (Status st = NeedConsumer("ack"); !st.ok) return st;
    if (ack_ids.empty()) return Status::Ok();
    if (Status st = NeedConnected("ack"); !st.ok) return st;
    std::lock_guard lock(held_mu_);
    for (const auto& id : ack_ids) {
      auto it = held_.find(id);
      if (it == held_.end()) continue;  // unknown or already finished
      jsErrCode jerr = static_cast<jsErrCode>(0);
      natsStatus s = natsMsg_AckSync(it->second, &jsopts_, &jerr);
      if (s != NATS_OK) return Status::Error(Describe("ack " + id) + ": " + JsText(s, jerr));
      natsMsg_Destroy(it->second);
      held_.erase(it);
    }
    return Status::Ok();
  }

  Status Nack(const std::vector<std::string>& ack_ids) override {
    if (Status st = NeedConsumer("nack"); !st.ok) return st;
    if (ack_ids.empty()) return Status::Ok();
    if (Status st = NeedConnected("nack"); !st.ok) return st;
    // A -NAK'd message is redelivered at once to any pull request waiting on the consumer,
    // including our own latest one: its messages could then arrive after our fetch returned
    // and sit unseen until AckWait. So while one of ours may still be open on the server the
    // NAK carries a delay that outlasts it.
    const int64_t open_ns = pull_open_until_ns_.load() - SteadyNanos();
    const int64_t delay_ms = open_ns > 0 ? open_ns / kNanosPerMilli + 1 : 0;
    std::lock_guard lock(held_mu_);
    for (const auto& id : ack_ids) {
      auto it = held_.find(id);
      if (it == held_.end()) continue;
      natsStatus s = delay_ms > 0 ? natsMsg_NakWithDelay(it->second, delay_ms, nullptr)
                                  : natsMsg_Nak(it->second, nullptr);
      if (s != NATS_OK) return Status::Error(Describe("nack " + id) + ": " + StatusText(s));
      natsMsg_Destroy(it->second);
      held_.erase(it);
    }
    // One round trip for the batch: the server has every -NAK when this returns (a hand-back
    // at shutdown must not die in the send buffer when the connection closes).
    if (natsStatus s = natsConnection_FlushTimeout(nc_, opts_.timeout.count()); s != NATS_OK)
      return Status::Error(Describe("nack (flush)") + ": " + StatusText(s));
    return Status::Ok();
  }

  Status Extend(const std::vector<std::string>& ack_ids, milliseconds) override {
    if (Status st = NeedConsumer("extend"); !st.ok) return st;
    if (ack_ids.empty()) return Status::Ok();
    if (Status st = NeedConnected("extend"); !st.ok) return st;
    std::lock_guard lock(held_mu_);
    for (const auto& id : ack_ids) {
      auto it = held_.find(id);
      if (it == held_.end()) continue;
      natsStatus s = natsMsg_InProgress(it->second, nullptr);
      if (s != NATS_OK) return Status::Error(Describe("extend " + id) + ": " + StatusText(s));
    }
    return Status::Ok();
  }

  // As Queue::PublishAndAck (publish, then acknowledge the request), but each result published
  // for a request from a NATS stream gets Nats-Msg-Id "tg-result-<request message id>": the
  // results stream stores one result per request message within its duplicate window, even when
  // the request runs twice (the processor crashed between publish and ack, or nats-server lost
  // recent acks when it was killed: it writes consumer state a moment after confirming an ack).
  Status PublishAndAck(std::vector<PublishAck>* items, Queue& source) override {
    auto* src = dynamic_cast<NatsQueue*>(&source);
    if (src == nullptr) return Queue::PublishAndAck(items, source);
    for (auto& item : *items) {
      if (item.done) continue;
      if (!item.published) {
        uint64_t seq = 0, delivered = 0;
        Status st;
        if (ParseNatsAckId(item.ack_id, &seq, &delivered) &&
            item.attributes.count("Nats-Msg-Id") == 0) {
          std::map<std::string, std::string> attrs = item.attributes;
          attrs["Nats-Msg-Id"] = "tg-result-" + src->MessageId(seq);
          st = Publish(item.data, attrs, nullptr);
        } else {
          st = Publish(item.data, item.attributes, nullptr);
        }
        if (!st.ok) return st;
        item.published = true;
      }
      if (Status st = source.Ack({item.ack_id}); !st.ok) return st;
      item.done = true;
    }
    return Status::Ok();
  }

  std::vector<std::pair<std::string, uint64_t>> EventCounts() override {
    return {{"disconnects", events_->disconnects.load()},
            {"reconnects", events_->reconnects.load()},
            {"dead_lettered", dead_lettered_.load()}};
  }

  std::optional<int64_t> Backlog() override {
    if (opts_.consumer.empty() || natsConnection_Status(nc_) != NATS_CONN_STATUS_CONNECTED)
      return std::nullopt;
    jsConsumerInfo* raw = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    if (js_GetConsumerInfo(&raw, js_, opts_.stream.c_str(), opts_.consumer.c_str(), &jsopts_,
                           &jerr) != NATS_OK)
      return std::nullopt;
    ConsumerInfoPtr ci(raw);
    return static_cast<int64_t>(ci->NumPending) + ci->NumAckPending;
  }

 private:
  std::string MessageId(uint64_t seq) const {
    return NatsMessageId(opts_.stream, seq, stream_created_);
  }

  std::string Describe(std::string_view op) const {
    return "nats " + std::string(op) + " (" + uri_ + ")";
  }

  Status NeedConsumer(std::string_view op) const {
    if (!opts_.consumer.empty()) return Status::Ok();
    return Status::Error(Describe(op) +
                         ": the URI has no consumer=; consuming needs "
                         "nats://HOST/STREAM?consumer=NAME");
  }

  Status NeedConnected(std::string_view op) const {
    natsConnStatus cs = natsConnection_Status(nc_);
    if (cs == NATS_CONN_STATUS_CONNECTED) return Status::Ok();
    const char* what = cs == NATS_CONN_STATUS_RECONNECTING ? "reconnecting"
                       : cs == NATS_CONN_STATUS_CLOSED     ? "connection closed"
                                                           : "not connected";
    return Status::Error(Describe(op) + ": " + what + " to the server");
  }

  Status Connect() {
    natsOptions* raw = nullptr;
    natsStatus s = natsOptions_Create(&raw);
    if (s != NATS_OK) return Status::Error(Describe("connect") + ": " + StatusText(s));
    std::unique_ptr<natsOptions, OptionsDeleter> o(raw);
    std::vector<std::string> urls;
    for (const auto& hp : opts_.servers) urls.push_back((opts_.tls ? "tls://" : "nats://") + hp);
    std::vector<const char*> url_ptrs;
    for (const auto& u : urls) url_ptrs.push_back(u.c_str());
    auto step = [&](natsStatus st, const char* what) -> Status {
      if (st == NATS_OK) return Status::Ok();
      return Status::Error("nats: cannot open " + uri_ + ": " + what + ": " + StatusText(st));
    };
    Status st = step(natsOptions_SetServers(raw, url_ptrs.data(), static_cast<int>(urls.size())),
                     "servers");
    if (st.ok) st = step(natsOptions_SetName(raw, "tidegate"), "name");
    if (st.ok) st = step(natsOptions_SetTimeout(raw, opts_.timeout.count()), "timeout");
    if (st.ok && !opts_.user.empty())
      st = step(natsOptions_SetUserInfo(raw, opts_.user.c_str(), opts_.password.c_str()), "user");
    if (st.ok && !opts_.token.empty())
      st = step(natsOptions_SetToken(raw, opts_.token.c_str()), "token");
    if (st.ok && !opts_.creds.empty())
      st = step(natsOptions_SetUserCredentialsFromFiles(raw, opts_.creds.c_str(), nullptr),
                ("creds file " + opts_.creds).c_str());
    if (st.ok && opts_.tls) st = step(natsOptions_SetSecure(raw, true), "tls");
    if (st.ok && !opts_.ca.empty())
      st = step(natsOptions_LoadCATrustedCertificates(raw, opts_.ca.c_str()),
                ("ca file " + opts_.ca).c_str());
    if (st.ok && !opts_.cert.empty())
      st = step(natsOptions_LoadCertificatesChain(raw, opts_.cert.c_str(), opts_.key.c_str()),
                ("cert/key files " + opts_.cert + ", " + opts_.key).c_str());
    // Reconnect forever, quickly; pending requests (acks, publishes) fail at once on a
    // disconnect rather than at their timeout; pings find a silent peer within ~15 s.
    if (st.ok) st = step(natsOptions_SetAllowReconnect(raw, true), "reconnect");
    if (st.ok) st = step(natsOptions_SetMaxReconnect(raw, -1), "max reconnect");
    if (st.ok) st = step(natsOptions_SetReconnectWait(raw, 250), "reconnect wait");
    if (st.ok) st = step(natsOptions_SetReconnectJitter(raw, 100, 500), "reconnect jitter");
    if (st.ok) st = step(natsOptions_SetFailRequestsOnDisconnect(raw, true), "fail requests");
    if (st.ok) st = step(natsOptions_SetPingInterval(raw, 5000), "ping interval");
    if (st.ok) st = step(natsOptions_SetMaxPingsOut(raw, 3), "max pings");
    if (st.ok)
      st = step(natsOptions_SetDisconnectedCB(raw, OnDisconnected, events_.get()), "callback");
    if (st.ok)
      st = step(natsOptions_SetReconnectedCB(raw, OnReconnected, events_.get()), "callback");
    if (st.ok) st = step(natsOptions_SetClosedCB(raw, OnClosed, events_.get()), "callback");
    if (st.ok) st = step(natsOptions_SetErrorHandler(raw, OnError, events_.get()), "callback");
    if (!st.ok) return st;
    s = natsConnection_Connect(&nc_, raw);
    if (s != NATS_OK) {
      nc_ = nullptr;
      std::string hint;
      if (s == NATS_NO_SERVER) hint = " (is nats-server running and reachable?)";
      if (s == NATS_CONNECTION_AUTH_FAILED || s == NATS_NOT_PERMITTED)
        hint = " (check the user/password, token or creds file)";
      return Status::Error("nats: cannot connect to " + uri_ + ": " + StatusText(s) + hint);
    }
    jsErrCode jerr = static_cast<jsErrCode>(0);
    (void)jerr;
    s = natsConnection_JetStream(&js_, nc_, &jsopts_);
    if (s != NATS_OK)
      return Status::Error("nats: cannot open " + uri_ + ": JetStream context: " + StatusText(s));
    return Status::Ok();
  }

  Status OpenError(const std::string& what) const {
    return Status::Error("nats: cannot open " + uri_ + ": " + what);
  }

  Status EnsureStream() {
    jsStreamInfo* raw = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus s = js_GetStreamInfo(&raw, js_, opts_.stream.c_str(), &jsopts_, &jerr);
    if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr) {
      jsStreamConfig sc;
      jsStreamConfig_Init(&sc);
      const char* subjects[] = {opts_.subject.c_str()};
      sc.Name = opts_.stream.c_str();
      sc.Subjects = subjects;
      sc.SubjectsLen = 1;
      sc.Storage = js_FileStorage;
      raw = nullptr;
      jerr = static_cast<jsErrCode>(0);
      s = js_AddStream(&raw, js_, &sc, &jsopts_, &jerr);
      if (s != NATS_OK && jerr == JSStreamNameExistErr) {  // created by someone else meanwhile
        raw = nullptr;
        jerr = static_cast<jsErrCode>(0);
        s = js_GetStreamInfo(&raw, js_, opts_.stream.c_str(), &jsopts_, &jerr);
      } else if (s != NATS_OK) {
        std::string hint = jerr == JSStreamSubjectOverlapErr
                               ? " (another stream already captures subject " + opts_.subject +
                                     "; name that stream in the URI)"
                               : "";
        return OpenError("cannot create stream " + opts_.stream + ": " + JsText(s, jerr) + hint);
      } else {
        spdlog::info("nats {}: created stream {} (file storage, subject {})", uri_, opts_.stream,
                     opts_.subject);
      }
    }
    if (s != NATS_OK) {
      std::string hint;
      if (s == NATS_NO_RESPONDERS || s == NATS_TIMEOUT)
        hint = " (is JetStream enabled? start nats-server with -js)";
      return OpenError("stream " + opts_.stream + ": " + JsText(s, jerr) + hint);
    }
    StreamInfoPtr si(raw);
    stream_created_ = si->Created;
    bool captured = false;
    std::string subjects;
    for (int i = 0; i < si->Config->SubjectsLen; ++i) {
      const char* subj = si->Config->Subjects[i];
      if (subj == nullptr) continue;
      if (!subjects.empty()) subjects += ", ";
      subjects += subj;
      if (NatsSubjectMatches(subj, opts_.subject)) captured = true;
    }
    stream_subjects_ = subjects;
    if (!captured)
      return OpenError("stream " + opts_.stream + " (subjects " + subjects +
                       ") does not capture subject " + opts_.subject +
                       " (set &subject= to one of its subjects)");
    if (si->Config->Storage != js_FileStorage)
      spdlog::warn(
          "nats {}: stream {} uses memory storage: its messages do not survive a server "
          "restart",
          uri_, opts_.stream);
    return Status::Ok();
  }

  Status EnsureDeadLetterStream() {
    if (opts_.dead_letter.empty()) return Status::Ok();
    jsOptions o = jsopts_;
    o.Stream.Info.SubjectsFilter = opts_.dead_letter.c_str();
    jsStreamNamesList* names = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus s = js_StreamNames(&names, js_, &o, &jerr);
    int count = 0;
    if (s == NATS_OK && names != nullptr) count = names->Count;
    if (names != nullptr) jsStreamNamesList_Destroy(names);
    if (s != NATS_OK && s != NATS_NOT_FOUND)
      return OpenError("looking for a stream capturing dead_letter=" + opts_.dead_letter + ": " +
                       JsText(s, jerr));
    if (count > 0) return Status::Ok();
    const std::string name = opts_.stream + "_DLQ";
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    const char* subjects[] = {opts_.dead_letter.c_str()};
    sc.Name = name.c_str();
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;
    jsStreamInfo* raw = nullptr;
    jerr = static_cast<jsErrCode>(0);
    s = js_AddStream(&raw, js_, &sc, &jsopts_, &jerr);
    if (raw != nullptr) jsStreamInfo_Destroy(raw);
    if (s != NATS_OK)
      return OpenError("no stream captures dead_letter=" + opts_.dead_letter +
                       " and creating stream " + name + " failed: " + JsText(s, jerr));
    spdlog::info("nats {}: created dead-letter stream {} (subject {})", uri_, name,
                 opts_.dead_letter);
    return Status::Ok();
  }

  Status EnsureConsumer() {
    jsConsumerInfo* raw = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    const char* stream = opts_.stream.c_str();
    natsStatus s = js_GetConsumerInfo(&raw, js_, stream, opts_.consumer.c_str(), &jsopts_, &jerr);
    if (s == NATS_NOT_FOUND || jerr == JSConsumerNotFoundErr) {
      jsConsumerConfig cc;
      jsConsumerConfig_Init(&cc);
      cc.Durable = opts_.consumer.c_str();
      cc.AckPolicy = js_AckExplicit;
      cc.DeliverPolicy = js_DeliverAll;
      cc.AckWait = ToNanos(opts_.ack_wait.value_or(kDefaultAckWait));
      cc.MaxDeliver = -1;
      cc.MaxAckPending = kMaxAckPending;
      cc.FilterSubject = opts_.subject.c_str();
      raw = nullptr;
      jerr = static_cast<jsErrCode>(0);
      s = js_AddConsumer(&raw, js_, stream, &cc, &jsopts_, &jerr);
      if (s != NATS_OK && jerr == JSConsumerNameExistErr) {
        raw = nullptr;
        jerr = static_cast<jsErrCode>(0);
        s = js_GetConsumerInfo(&raw, js_, stream, opts_.consumer.c_str(), &jsopts_, &jerr);
      } else if (s != NATS_OK) {
        return OpenError("cannot create consumer " + opts_.consumer + " on stream " + opts_.stream +
                         ": " + JsText(s, jerr));
      } else {
        spdlog::info("nats {}: created durable pull consumer {} on stream {} (filter {})", uri_,
                     opts_.consumer, opts_.stream, opts_.subject);
      }
    }
    if (s != NATS_OK) return OpenError("consumer " + opts_.consumer + ": " + JsText(s, jerr));
    ConsumerInfoPtr ci(raw);
    const jsConsumerConfig* c = ci->Config;
    const std::string what = "consumer " + opts_.consumer + " on stream " + opts_.stream;
    if (c->DeliverSubject != nullptr && *c->DeliverSubject != '\0')
      return OpenError(what + " is a push consumer (deliver subject " +
                       std::string(c->DeliverSubject) + "); tidegate needs a pull consumer");
    if (c->AckPolicy != js_AckExplicit)
      return OpenError(what + " does not use explicit acks; tidegate needs AckPolicy explicit");
    if (c->BackOffLen > 0)
      return OpenError(what + " has a BackOff list; tidegate's leases need a plain AckWait");
    const std::string filter = c->FilterSubject ? c->FilterSubject : "";
    if (!filter.empty() && filter != opts_.subject)
      return OpenError(what + " filters subject " + filter + ", the URI's subject is " +
                       opts_.subject + " (set &subject=" + filter + " or use another consumer)");
    if (!opts_.dead_letter.empty() &&
        (filter.empty() ? StreamCaptures(opts_.dead_letter)
                        : NatsSubjectMatches(filter, opts_.dead_letter)))
      return OpenError(what + " would consume its own dead letters (dead_letter=" +
                       opts_.dead_letter + " is in its filter)");
    filter_ = filter;
    ack_wait_ns_ = c->AckWait;
    const int64_t want_ack_wait = opts_.ack_wait ? ToNanos(*opts_.ack_wait) : c->AckWait;
    if (c->AckWait != want_ack_wait || (c->MaxDeliver != -1 && c->MaxDeliver != 0)) {
      spdlog::warn(
          "nats {}: updating {}: AckWait {} → {}, MaxDeliver {} → -1 (unlimited: "
          "tidegate dead-letters by itself)",
          uri_, what, FormatNanos(c->AckWait), FormatNanos(want_ack_wait), c->MaxDeliver);
      if (Status st = UpdateConsumer(*c, want_ack_wait); !st.ok)
        return OpenError(what + ": its settings differ and updating it failed: " + st.error);
    }
    return Status::Ok();
  }

  bool StreamCaptures(const std::string& subject) const {
    for (std::string_view s : SplitView(stream_subjects_, ',')) {
      while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
      if (NatsSubjectMatches(s, subject)) return true;
    }
    return false;
  }

  // js_UpdateConsumer with `base` (the current config) and our AckWait / MaxDeliver.
  Status UpdateConsumer(const jsConsumerConfig& base, int64_t ack_wait_ns) {
    jsConsumerConfig cc = base;
    cc.AckWait = ack_wait_ns;
    cc.MaxDeliver = -1;
    jsConsumerInfo* raw = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus s = js_UpdateConsumer(&raw, js_, opts_.stream.c_str(), &cc, &jsopts_, &jerr);
    if (raw != nullptr) jsConsumerInfo_Destroy(raw);
    if (s != NATS_OK) return Status::Error(JsText(s, jerr));
    ack_wait_ns_ = ack_wait_ns;
    return Status::Ok();
  }

  // Without ack_wait=, the consumer's AckWait follows the caller's lease. Caller holds fetch_mu_.
  Status FollowLease(milliseconds lease) {
    if (opts_.ack_wait || lease.count() <= 0 || ack_wait_fixed_) return Status::Ok();
    const int64_t want = ToNanos(lease);
    if (want == ack_wait_ns_) return Status::Ok();
    jsConsumerInfo* raw = nullptr;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus s = js_GetConsumerInfo(&raw, js_, opts_.stream.c_str(), opts_.consumer.c_str(),
                                      &jsopts_, &jerr);
    if (s != NATS_OK)
      return Status::Error(Describe("pull (read AckWait)") + ": " + JsText(s, jerr));
    ConsumerInfoPtr ci(raw);
    if (ci->Config->AckWait == want) {
      ack_wait_ns_ = want;
      return Status::Ok();
    }
    Status st = UpdateConsumer(*ci->Config, want);
    if (st.ok) {
      spdlog::info("nats {}: consumer {} AckWait {} → {} (the lease)", uri_, opts_.consumer,
                   FormatNanos(ci->Config->AckWait), FormatDuration(lease));
      return st;
    }
    if (s == NATS_TIMEOUT || natsConnection_Status(nc_) != NATS_CONN_STATUS_CONNECTED)
      return Status::Error(Describe("pull (set AckWait)") + ": " + st.error);
    // Refused (e.g. no permission to update consumers): keep the consumer's AckWait.
    ack_wait_fixed_ = true;
    spdlog::warn(
        "nats {}: cannot set consumer {} AckWait to the lease {} ({}); leases last its AckWait "
        "{} (set ack_wait= to say so)",
        uri_, opts_.consumer, FormatDuration(lease), st.error, FormatNanos(ack_wait_ns_));
    return Status::Ok();
  }

  Status Subscribe() {
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = opts_.stream.c_str();
    so.Consumer = opts_.consumer.c_str();
    so.ManualAck = true;
    jsErrCode jerr = static_cast<jsErrCode>(0);
    const char* subject = filter_.empty() ? nullptr : filter_.c_str();
    natsStatus s =
        js_PullSubscribe(&sub_, js_, subject, opts_.consumer.c_str(), &jsopts_, &so, &jerr);
    if (s != NATS_OK) {
      sub_ = nullptr;
      return OpenError("subscribing to consumer " + opts_.consumer + ": " + JsText(s, jerr));
    }
    // cnats drops a subscription's messages past its pending limits (65536 messages / 64 MiB
    // by default); a fetch never asks for more than kMaxFetch, so those are ample.
    return Status::Ok();
  }

  static std::map<std::string, std::string> Headers(natsMsg* m) {
    std::map<std::string, std::string> out;
    const char** keys = nullptr;
    int count = 0;
    if (natsMsgHeader_Keys(m, &keys, &count) != NATS_OK) return out;
    for (int i = 0; i < count; ++i) {
      const char* value = nullptr;
      if (keys[i] != nullptr && natsMsgHeader_Get(m, keys[i], &value) == NATS_OK)
        out.emplace(keys[i], value ? value : "");
    }
    std::free(static_cast<void*>(keys));
    return out;
  }

  // Copies a delivery past max_attempts to dead_letter= and terminates it; if the copy fails,
  // NAKs it with a delay so that a later delivery tries again. Never throws or fails the pull.
  void DeadLetter(natsMsg* m, uint64_t seq, uint64_t delivered) {
    const uint64_t attempts = delivered - 1;
    natsMsg* raw = nullptr;
    natsStatus s = natsMsg_Create(&raw, opts_.dead_letter.c_str(), nullptr, natsMsg_GetData(m),
                                  natsMsg_GetDataLength(m));
    MsgPtr copy(raw);
    if (s == NATS_OK) {
      for (const auto& [k, v] : Headers(m)) {
        if (k == "Nats-Msg-Id" || k == "Nats-Expected-Stream" || k.rfind("Nats-Expected-", 0) == 0)
          continue;  // would make the copy a duplicate or fail an expectation
        natsMsgHeader_Set(raw, k.c_str(), v.c_str());
      }
      const std::string seq_s = std::to_string(seq), attempts_s = std::to_string(attempts);
      const std::string dedupe = "tg-dl-" + NatsMessageId(opts_.stream, seq, stream_created_);
      natsMsgHeader_Set(raw, "tidegate-dead-letter-source", opts_.stream.c_str());
      natsMsgHeader_Set(raw, "tidegate-dead-letter-consumer", opts_.consumer.c_str());
      natsMsgHeader_Set(raw, "tidegate-dead-letter-sequence", seq_s.c_str());
      natsMsgHeader_Set(raw, "tidegate-delivery-attempts", attempts_s.c_str());
      natsMsgHeader_Set(raw, "Nats-Msg-Id", dedupe.c_str());
      jsPubOptions po;
      jsPubOptions_Init(&po);
      po.MaxWait = opts_.timeout.count();
      jsPubAck* pa = nullptr;
      jsErrCode jerr = static_cast<jsErrCode>(0);
      s = js_PublishMsg(&pa, js_, raw, &po, &jerr);
      if (pa != nullptr) jsPubAck_Destroy(pa);
      if (s != NATS_OK) {
        spdlog::warn(
            "nats {}: copying message {} to dead_letter={} failed: {} (retried on its "
            "next delivery)",
            uri_, seq, opts_.dead_letter, JsText(s, jerr));
      }
    }
    if (s != NATS_OK) {
      natsMsg_NakWithDelay(m, kDeadLetterRetryDelay.count(), nullptr);
      return;
    }
    // +TERM, confirmed: a lost one only means the next delivery is copied again (and the copy
    // deduplicated by its Nats-Msg-Id).
    natsMsg* reply = nullptr;
    s = natsConnection_RequestString(&reply, nc_, natsMsg_GetReply(m), "+TERM",
                                     opts_.timeout.count());
    if (reply != nullptr) natsMsg_Destroy(reply);
    dead_lettered_.fetch_add(1);
    spdlog::warn("nats {}: message {} moved to dead_letter={} after {} deliveries{}", uri_, seq,
                 opts_.dead_letter, attempts,
                 s == NATS_OK ? "" : " (its +TERM was not confirmed: " + StatusText(s) + ")");
  }

  std::atomic<uint64_t> dead_lettered_{0};
  const std::string uri_;  // redacted
  const NatsQueueOptions opts_;
  std::unique_ptr<ConnEvents> events_;
  jsOptions jsopts_;
  natsConnection* nc_ = nullptr;
  jsCtx* js_ = nullptr;
  natsSubscription* sub_ = nullptr;
  int64_t stream_created_ = 0;
  std::string stream_subjects_;  // ", "-separated, as read at open
  std::string filter_;           // the consumer's filter subject ("" = the whole stream)

  std::atomic<int64_t> pull_open_until_ns_{0};  // steady clock: our last pull request's end
  std::mutex fetch_mu_;                         // serializes Fetch and AckWait updates
  int64_t ack_wait_ns_ = 0;                     // guarded by fetch_mu_ (after Open)
  bool ack_wait_fixed_ = false;                 // guarded by fetch_mu_: updating it was refused

  std::mutex held_mu_;  // guards held_ and every ack/nak/wpi on its messages
  std::unordered_map<std::string, natsMsg*> held_;  // by ack id; owned
};

}  // namespace

// ---- Pure helpers ------------------------------------------------------------------------

bool ValidNatsSubject(std::string_view subject, bool allow_wildcards) {
  if (subject.empty() || subject.size() > 4096) return false;
  auto tokens = SplitView(subject, '.');
  for (size_t i = 0; i < tokens.size(); ++i) {
    std::string_view t = tokens[i];
    if (t.empty()) return false;
    for (char c : t) {
      unsigned char u = static_cast<unsigned char>(c);
      if (u <= ' ' || u == 0x7f) return false;
    }
    if (t == "*" || t == ">") {
      if (!allow_wildcards || (t == ">" && i + 1 != tokens.size())) return false;
    } else if (t.find_first_of("*>") != std::string_view::npos) {
      return false;  // a wildcard character inside a token
    }
  }
  return true;
}

bool ValidNatsName(std::string_view name) {
  if (name.empty() || name.size() > 255) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    unsigned char u = static_cast<unsigned char>(c);
    return u > ' ' && u != 0x7f && c != '.' && c != '*' && c != '>' && c != '/' && c != '\\';
  });
}

bool NatsSubjectMatches(std::string_view filter, std::string_view subject) {
  auto f = SplitView(filter, '.');
  auto s = SplitView(subject, '.');
  for (size_t i = 0; i < f.size(); ++i) {
    if (f[i] == ">") return i < s.size();  // one or more tokens left
    if (i >= s.size()) return false;
    if (f[i] != "*" && f[i] != s[i]) return false;
  }
  return f.size() == s.size();
}

std::string NatsAckId(uint64_t stream_seq, uint64_t delivered) {
  return std::to_string(stream_seq) + "." + std::to_string(delivered);
}

bool ParseNatsAckId(std::string_view ack_id, uint64_t* stream_seq, uint64_t* delivered) {
  return ParseDottedPair(ack_id, stream_seq, delivered);
}

std::string NatsMessageId(std::string_view stream, uint64_t stream_seq, int64_t created_ns) {
  return std::string(stream) + ":" + std::to_string(stream_seq) + ":" +
         Base36(static_cast<uint64_t>(std::max<int64_t>(created_ns, 0)));
}

bool ValidNatsHeader(std::string_view key, std::string_view value) {
  if (key.empty()) return false;
  for (char c : key) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u <= ' ' || u >= 0x7f || c == ':') return false;
  }
  return value.find_first_of("\r\n") == std::string_view::npos &&
         value.find('\0') == std::string_view::npos;
}

std::string RedactNatsUri(std::string_view uri) {
  size_t sep = uri.find("://");
  if (sep == std::string_view::npos) return std::string(uri);
  size_t start = sep + 3;
  size_t end = uri.find_first_of("/?", start);
  std::string_view authority =
      uri.substr(start, end == std::string_view::npos ? uri.npos : end - start);
  size_t at = authority.rfind('@');
  if (at == std::string_view::npos) return std::string(uri);
  std::string_view userinfo = authority.substr(0, at);
  std::string redacted;
  size_t colon = userinfo.find(':');
  if (colon == std::string_view::npos)
    redacted = "***";  // a token
  else
    redacted = std::string(userinfo.substr(0, colon)) + ":***";
  return std::string(uri.substr(0, start)) + redacted + std::string(uri.substr(start + at));
}

Status ParseNatsUri(std::string_view uri, NatsQueueOptions* out) {
  const std::string shown = RedactNatsUri(uri);
  auto fail = [&](const std::string& why) {
    return Status::Error(
        "nats: bad queue URI '" + shown + "': " + why +
        " (want nats://[USER:PASS@|TOKEN@]HOST[:PORT]/STREAM?consumer=C[&subject=S]"
        "[&ack_wait=DUR][&max_attempts=N&dead_letter=S][&creds=FILE][&timeout=DUR], or tls://... "
        "with [&ca=FILE][&cert=FILE&key=FILE])");
  };
  NatsQueueOptions o;
  auto rest_opt = AfterScheme(uri, &o.tls);
  if (!rest_opt) return fail("the scheme must be nats:// or tls://");
  std::string_view rest = *rest_opt;
  std::string_view query;
  if (size_t q = rest.find('?'); q != rest.npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  size_t slash = rest.find('/');
  if (slash == std::string_view::npos) return fail("missing /STREAM after the host");
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = rest.substr(slash + 1);
  if (size_t at = authority.rfind('@'); at != std::string_view::npos) {
    std::string_view userinfo = authority.substr(0, at);
    authority = authority.substr(at + 1);
    size_t colon = userinfo.find(':');
    if (colon == std::string_view::npos) {
      if (!PercentDecode(userinfo, &o.token) || o.token.empty())
        return fail("bad or empty token before '@'");
    } else {
      if (!PercentDecode(userinfo.substr(0, colon), &o.user) || o.user.empty())
        return fail("bad or empty user name before ':'");
      if (!PercentDecode(userinfo.substr(colon + 1), &o.password))
        return fail("bad percent-escape in the password");
    }
  }
  if (authority.empty()) return fail("missing host");
  for (std::string_view hp : SplitView(authority, ',')) {
    if (hp.empty()) return fail("empty host in the server list");
    std::string_view host = hp, port;
    if (hp.front() == '[') {
      size_t close = hp.find(']');
      if (close == std::string_view::npos) return fail("unclosed '[' in host " + std::string(hp));
      host = hp.substr(0, close + 1);
      std::string_view after = hp.substr(close + 1);
      if (!after.empty()) {
        if (after.front() != ':') return fail("bad host " + std::string(hp));
        port = after.substr(1);
      }
    } else if (size_t colon = hp.rfind(':'); colon != std::string_view::npos) {
      host = hp.substr(0, colon);
      port = hp.substr(colon + 1);
    }
    if (host.empty() || host == "[]") return fail("empty host name in " + std::string(hp));
    for (char c : host) {
      if (static_cast<unsigned char>(c) <= ' ' || c == '/' || c == '@')
        return fail("bad host name " + std::string(host));
    }
    int port_n = kDefaultPort;
    if (hp.back() == ':') return fail("empty port in " + std::string(hp));
    if (!port.empty()) {
      auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), port_n);
      if (ec != std::errc() || ptr != port.data() + port.size() || port_n < 1 || port_n > 65535)
        return fail("bad port '" + std::string(port) + "'");
    }
    o.servers.push_back(std::string(host) + ":" + std::to_string(port_n));
  }
  if (path.empty()) return fail("missing STREAM name in the path");
  if (!PercentDecode(path, &o.stream)) return fail("bad percent-escape in the stream name");
  if (!ValidNatsName(o.stream))
    return fail("invalid stream name '" + o.stream +
                "' (no '/', '.', '*', '>', spaces; at most 255 characters)");
  bool have_max = false;
  std::map<std::string, bool> seen;
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view param = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (param.empty()) continue;
    size_t eq = param.find('=');
    std::string key(param.substr(0, eq));
    std::string value;
    if (eq == std::string_view::npos || !PercentDecode(param.substr(eq + 1), &value))
      return fail("malformed parameter '" + key + "'");
    if (seen[key]) return fail("parameter '" + key + "' given twice");
    seen[key] = true;
    auto duration = [&](milliseconds min, milliseconds max, milliseconds* d) -> Status {
      auto v = ParseDuration(value);
      if (!v || *v < min || *v > max)
        return fail(key + " must be a duration from " + FormatDuration(min) + " to " +
                    FormatDuration(max) + " (e.g. 30s), got '" + value + "'");
      *d = *v;
      return Status::Ok();
    };
    if (key == "consumer") {
      if (!ValidNatsName(value))
        return fail("invalid consumer name '" + value + "' (no '.', '*', '>', '/', spaces)");
      o.consumer = value;
    } else if (key == "subject") {
      if (!ValidNatsSubject(value, false))
        return fail(
            "subject must be a literal NATS subject (dot-separated tokens, no "
            "wildcards or spaces), got '" +
            value + "'");
      o.subject = value;
    } else if (key == "dead_letter") {
      if (!ValidNatsSubject(value, false))
        return fail("dead_letter must be a literal NATS subject, got '" + value + "'");
      o.dead_letter = value;
    } else if (key == "ack_wait") {
      milliseconds d;
      if (Status st = duration(milliseconds(1000), std::chrono::hours(12), &d); !st.ok) return st;
      o.ack_wait = d;
    } else if (key == "timeout") {
      if (Status st = duration(milliseconds(100), std::chrono::minutes(5), &o.timeout); !st.ok)
        return st;
    } else if (key == "max_attempts") {
      int n = 0;
      auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (ec != std::errc() || ptr != value.data() + value.size() || n < 1 || n > kMaxAttemptsLimit)
        return fail("max_attempts must be an integer in 1.." + std::to_string(kMaxAttemptsLimit) +
                    ", got '" + value + "'");
      o.max_attempts = n;
      have_max = true;
    } else if (key == "creds" || key == "ca" || key == "cert" || key == "key") {
      if (value.empty()) return fail(key + "= needs a file name");
      (key == "creds" ? o.creds : key == "ca" ? o.ca : key == "cert" ? o.cert : o.key) = value;
    } else {
      return fail("unknown parameter '" + key +
                  "' (known: consumer, subject, ack_wait, max_attempts, dead_letter, creds, ca, "
                  "cert, key, timeout)");
    }
  }
  if (o.subject.empty()) {
    if (!ValidNatsSubject(o.stream, false))
      return fail("the stream name '" + o.stream + "' is not a valid subject; set &subject=");
    o.subject = o.stream;
  }
  int auth_kinds = (!o.user.empty()) + (!o.token.empty()) + (!o.creds.empty());
  if (auth_kinds > 1) return fail("give only one of USER:PASS@, TOKEN@ and creds=");
  if (!o.tls && (!o.ca.empty() || !o.cert.empty() || !o.key.empty()))
    return fail("ca=, cert= and key= need the tls:// scheme");
  if (o.cert.empty() != o.key.empty()) return fail("cert= and key= go together");
  if (auto e = CheckDeadLetter(have_max, o.dead_letter, o.subject, "subject", &o.max_attempts);
      !e.empty())
    return fail(e);
  if (!o.dead_letter.empty() && o.consumer.empty())
    return fail("dead_letter= only applies to a consuming URI (add consumer=)");
  if (o.ack_wait && o.consumer.empty()) return fail("ack_wait= needs consumer=");
  *out = std::move(o);
  return Status::Ok();
}

std::unique_ptr<Queue> OpenNatsQueue(const std::string& uri, std::string* error) {
  NatsQueueOptions opts;
  if (Status st = ParseNatsUri(uri, &opts); !st.ok) {
    *error = st.error;
    return nullptr;
  }
  auto q = std::make_unique<NatsQueue>(RedactNatsUri(uri), std::move(opts));
  if (!q->Open(error)) return nullptr;
  return q;
}

}  // namespace tidegate::queue
