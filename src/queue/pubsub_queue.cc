// queue/pubsub_queue.cc — see pubsub_queue.h.
#include "queue/pubsub_queue.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/datetime.h"
#include "queue/uri.h"

namespace tidegate::queue {
namespace {

using Json = nlohmann::json;
using std::chrono::milliseconds;

constexpr std::string_view kScheme = "pubsub://";
constexpr size_t kAckChunk = 1000;
constexpr int kMaxPullMessages = 1000;

// Resource ids (topics, subscriptions): 3..255 chars, a letter first, then [A-Za-z0-9-_.~+%].
bool ValidResourceId(std::string_view id) {
  if (id.size() < 3 || id.size() > 255 || !std::isalpha(static_cast<unsigned char>(id[0]))) {
    return false;
  }
  return std::all_of(id.begin(), id.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' ||
           c == '~' || c == '+' || c == '%';
  });
}

// Project ids: lowercase letters, digits, '-', and "domain.com:project" forms.
bool ValidProject(std::string_view p) {
  return !p.empty() && std::all_of(p.begin(), p.end(), [](char c) {
    return std::islower(static_cast<unsigned char>(c)) ||
           std::isdigit(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == ':';
  });
}

bool Retryable(const gcp::HttpResponse& r) {
  return !r.transport_error.empty() || r.status == 429 || r.status >= 500;
}

std::string GetEnv(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

}  // namespace

// ---- URI ------------------------------------------------------------------------------------

Status ParsePubSubUri(std::string_view uri, PubSubTarget* out) {
  auto fail = [&](std::string_view why) {
    return Status::Error("pubsub: bad queue URI \"" + std::string(uri) + "\": " + std::string(why) +
                         " (want pubsub://projects/P/subscriptions/S[?topic=T] or "
                         "pubsub://projects/P/topics/T)");
  };
  if (uri.size() < kScheme.size() ||
      !std::equal(kScheme.begin(), kScheme.end(), uri.begin(), [](char a, char b) {
        return a == std::tolower(static_cast<unsigned char>(b));
      })) {
    return fail("scheme is not pubsub://");
  }
  std::string_view rest = uri.substr(kScheme.size());
  std::string_view query;
  if (size_t q = rest.find('?'); q != rest.npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  auto parts = SplitView(rest, '/');
  if (parts.size() != 4 || parts[0] != "projects")
    return fail("path must be projects/P/<kind>/<id>");
  if (!ValidProject(parts[1])) return fail("invalid project id \"" + std::string(parts[1]) + "\"");
  if (!ValidResourceId(parts[3])) {
    return fail("invalid id \"" + std::string(parts[3]) +
                "\" (3-255 chars, a letter first, then letters, digits, - _ . ~ + %)");
  }
  PubSubTarget t;
  t.project = parts[1];
  std::string base = "projects/" + t.project + "/";
  if (parts[2] == "subscriptions") {
    t.subscription = base + "subscriptions/" + std::string(parts[3]);
  } else if (parts[2] == "topics") {
    t.topic = base + "topics/" + std::string(parts[3]);
  } else {
    return fail("kind must be subscriptions or topics, not \"" + std::string(parts[2]) + "\"");
  }
  if (!query.empty()) {
    for (std::string_view kv : SplitView(query, '&')) {
      if (kv.empty()) continue;
      size_t eq = kv.find('=');
      std::string_view k = kv.substr(0, eq);
      std::string_view v = eq == kv.npos ? std::string_view() : kv.substr(eq + 1);
      if (k != "topic") return fail("unknown parameter \"" + std::string(k) + "\" (only topic=)");
      if (t.subscription.empty()) return fail("topic= is only for subscription URIs");
      if (v.substr(0, 9) == "projects/") {
        auto tp = SplitView(v, '/');
        if (tp.size() != 4 || tp[2] != "topics" || !ValidProject(tp[1]) ||
            !ValidResourceId(tp[3])) {
          return fail("topic= must be an id or projects/Q/topics/T");
        }
        t.topic = std::string(v);
      } else {
        if (!ValidResourceId(v)) return fail("invalid topic id \"" + std::string(v) + "\"");
        t.topic = base + "topics/" + std::string(v);
      }
    }
  }
  *out = std::move(t);
  return Status::Ok();
}

// ---- Shaping --------------------------------------------------------------------------------

std::string PubSubPullBody(int max_messages) {
  // returnImmediately is deprecated for real Pub/Sub, but we poll with our own bounded wait
  // (see Pull) instead of holding a long request we could not cut without losing leases.
  return Json{{"maxMessages", std::clamp(max_messages, 1, kMaxPullMessages)},
              {"returnImmediately", true}}
      .dump();
}

std::string PubSubAckBody(const std::vector<std::string>& ack_ids) {
  return Json{{"ackIds", ack_ids}}.dump();
}

std::string PubSubModifyAckDeadlineBody(const std::vector<std::string>& ack_ids, int seconds) {
  return Json{{"ackIds", ack_ids}, {"ackDeadlineSeconds", seconds}}.dump();
}

std::string PubSubPublishBody(std::string_view data,
                              const std::map<std::string, std::string>& attrs) {
  Json msg = {{"data", gcp::Base64Encode(data)}};
  if (!attrs.empty()) msg["attributes"] = attrs;
  Json body = {{"messages", Json::array({std::move(msg)})}};
  // Arbitrary payload bytes are base64 already; attribute values must be valid UTF-8 for JSON,
  // so replace invalid sequences rather than throw.
  return body.dump(-1, ' ', false, Json::error_handler_t::replace);
}

Status ParsePubSubPullResponse(std::string_view body, std::vector<Message>* out) {
  Json j = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object())
    return Status::Error("response is not a JSON object: " + gcp::BodyExcerpt(body));
  auto rm = j.find("receivedMessages");
  if (rm == j.end()) return Status::Ok();  // empty pull: {}
  if (!rm->is_array()) return Status::Error("receivedMessages is not an array");
  for (const Json& r : *rm) {
    if (!r.is_object()) return Status::Error("receivedMessages[] entry is not an object");
    Message m;
    auto ack = r.find("ackId");
    if (ack == r.end() || !ack->is_string())
      return Status::Error("receivedMessages[] without ackId");
    m.ack_id = ack->get<std::string>();
    if (auto da = r.find("deliveryAttempt"); da != r.end() && da->is_number_integer()) {
      m.delivery_attempt = std::max(1, da->get<int>());
    }
    auto msg = r.find("message");
    if (msg == r.end() || !msg->is_object())
      return Status::Error("receivedMessages[] without message");
    m.id = msg->value("messageId", "");
    if (auto d = msg->find("data"); d != msg->end() && d->is_string()) {
      if (!gcp::Base64Decode(d->get_ref<const std::string&>(), &m.data)) {
        return Status::Error("message " + m.id + ": data is not valid base64");
      }
    }
    if (auto a = msg->find("attributes"); a != msg->end() && a->is_object()) {
      for (const auto& [k, v] : a->items()) {
        if (v.is_string()) m.attributes[k] = v.get<std::string>();
      }
    }
    if (auto pt = msg->find("publishTime"); pt != msg->end() && pt->is_string()) {
      ParseRfc3339(pt->get_ref<const std::string&>(), &m.publish_time);
    }
    out->push_back(std::move(m));
  }
  return Status::Ok();
}

Status ParsePubSubPublishResponse(std::string_view body, std::string* id) {
  Json j = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_object()) {
    auto ids = j.find("messageIds");
    if (ids != j.end() && ids->is_array() && !ids->empty() && (*ids)[0].is_string()) {
      if (id) *id = (*ids)[0].get<std::string>();
      return Status::Ok();
    }
  }
  return Status::Error("response has no messageIds: " + gcp::BodyExcerpt(body));
}

int PubSubAckDeadlineSeconds(milliseconds lease) {
  int64_t s = (std::max<int64_t>(lease.count(), 0) + 999) / 1000;
  return static_cast<int>(std::clamp<int64_t>(s, 10, 600));
}

// ---- PubSubQueue ----------------------------------------------------------------------------

PubSubQueue::PubSubQueue(std::string uri, PubSubTarget target, PubSubOptions options)
    : uri_(std::move(uri)), target_(std::move(target)), options_([&] {
        PubSubOptions o = std::move(options);
        if (!o.http) o.http = gcp::NewCurlHttpClient();
        if (!o.tokens) o.tokens = gcp::NoAuthTokenSource();
        while (!o.endpoint.empty() && o.endpoint.back() == '/') o.endpoint.pop_back();
        return o;
      }()) {}

Status PubSubQueue::Call(std::string_view op, const std::string& method,
                         const std::string& resource, std::string_view suffix, std::string body,
                         bool retry, std::string* resp_body) {
  std::string what = "pubsub " + std::string(op) + " " + resource;
  std::string token;
  if (Status st = options_.tokens->Token(&token); !st.ok)
    return Status::Error(what + ": " + st.error);
  gcp::HttpRequest req;
  req.method = method;
  req.url = options_.endpoint + "/v1/" + resource + std::string(suffix);
  req.body = std::move(body);
  req.timeout = options_.call_timeout;
  if (method != "GET") req.headers.emplace_back("Content-Type", "application/json");
  if (!token.empty()) req.headers.emplace_back("Authorization", "Bearer " + token);
  const int attempts = retry ? 3 : 1;
  milliseconds backoff = options_.retry_base;
  gcp::HttpResponse resp;
  for (int attempt = 1; attempt <= attempts; ++attempt) {
    resp = options_.http->Do(req);
    if (resp.transport_error.empty() && resp.status == 200) {
      if (resp_body) *resp_body = std::move(resp.body);
      return Status::Ok();
    }
    if (!Retryable(resp) || attempt == attempts) break;
    std::this_thread::sleep_for(backoff);
    backoff *= 3;
  }
  if (!resp.transport_error.empty()) {
    return Status::Error(what + ": " + resp.transport_error + " (endpoint " + options_.endpoint +
                         ")");
  }
  return Status::Error(what + ": HTTP " + std::to_string(resp.status) + ": " +
                       gcp::BodyExcerpt(resp.body));
}

Status PubSubQueue::NeedSubscription(std::string_view op) const {
  if (!target_.subscription.empty()) return Status::Ok();
  return Status::Error("pubsub " + std::string(op) + ": " + uri_ +
                       " is a topic (publish only); consuming needs "
                       "pubsub://projects/P/subscriptions/S");
}

Status PubSubQueue::Publish(std::string_view data, const std::map<std::string, std::string>& attrs,
                            std::string* id) {
  if (target_.topic.empty()) {
    return Status::Error("pubsub publish: " + uri_ +
                         " is a subscription without a topic; publish to "
                         "pubsub://projects/P/topics/T or add ?topic=T to the subscription URI");
  }
  std::string resp;
  Status st = Call("publish", "POST", target_.topic, ":publish", PubSubPublishBody(data, attrs),
                   /*retry=*/true, &resp);
  if (!st.ok) return st;
  st = ParsePubSubPublishResponse(resp, id);
  if (!st.ok) return Status::Error("pubsub publish " + target_.topic + ": " + st.error);
  return st;
}

std::optional<int> PubSubQueue::SubscriptionAckDeadline() {
  {
    std::lock_guard lock(mu_);
    if (sub_deadline_known_) return sub_deadline_;
  }
  std::string resp;
  std::optional<int> value;
  // A consumer may lack pubsub.subscriptions.get: then the deadline stays unknown and every
  // pull modifies it explicitly.
  if (Call("get", "GET", target_.subscription, "", "", /*retry=*/false, &resp).ok) {
    Json j = Json::parse(resp, nullptr, false);
    if (j.is_object()) {
      auto it = j.find("ackDeadlineSeconds");
      if (it != j.end() && it->is_number_integer()) value = it->get<int>();
    }
  }
  std::lock_guard lock(mu_);
  sub_deadline_known_ = true;
  sub_deadline_ = value;
  return value;
}

Status PubSubQueue::Pull(int max, milliseconds lease, milliseconds wait,
                         std::vector<Message>* out) {
  if (Status st = NeedSubscription("pull"); !st.ok) return st;
  if (max < 1) return Status::Error("pubsub pull " + target_.subscription + ": max must be >= 1");
  const int deadline_s = PubSubAckDeadlineSeconds(lease);
  const std::optional<int> sub_default = SubscriptionAckDeadline();
  const auto give_up = std::chrono::steady_clock::now() + wait;
  milliseconds sleep{50};
  std::vector<Message> got;
  while (true) {
    std::string resp;
    Status st = Call("pull", "POST", target_.subscription, ":pull", PubSubPullBody(max),
                     /*retry=*/false, &resp);
    if (!st.ok) return st;
    st = ParsePubSubPullResponse(resp, &got);
    if (!st.ok) return Status::Error("pubsub pull " + target_.subscription + ": " + st.error);
    if (!got.empty()) break;
    auto now = std::chrono::steady_clock::now();
    if (now >= give_up) return Status::Ok();
    std::this_thread::sleep_for(std::min<milliseconds>(
        sleep, std::chrono::duration_cast<milliseconds>(give_up - now) + milliseconds(1)));
    sleep = std::min<milliseconds>(sleep * 2, milliseconds(500));
  }
  if (!sub_default || *sub_default != deadline_s) {
    std::vector<std::string> ids;
    for (const Message& m : got) ids.push_back(m.ack_id);
    Status st = ModifyAckDeadline("pull (lease)", ids, deadline_s);
    if (!st.ok) {
      ModifyAckDeadline("pull (hand back)", ids, 0);  // best effort; redelivered anyway
      return st;
    }
  }
  for (Message& m : got) out->push_back(std::move(m));
  return Status::Ok();
}

Status PubSubQueue::ModifyAckDeadline(std::string_view op, const std::vector<std::string>& ack_ids,
                                      int seconds) {
  for (size_t i = 0; i < ack_ids.size(); i += kAckChunk) {
    std::vector<std::string> chunk(ack_ids.begin() + i,
                                   ack_ids.begin() + std::min(ack_ids.size(), i + kAckChunk));
    Status st = Call(op, "POST", target_.subscription, ":modifyAckDeadline",
                     PubSubModifyAckDeadlineBody(chunk, seconds), /*retry=*/true, nullptr);
    if (!st.ok) return st;
  }
  return Status::Ok();
}

Status PubSubQueue::Ack(const std::vector<std::string>& ack_ids) {
  if (Status st = NeedSubscription("ack"); !st.ok) return st;
  for (size_t i = 0; i < ack_ids.size(); i += kAckChunk) {
    std::vector<std::string> chunk(ack_ids.begin() + i,
                                   ack_ids.begin() + std::min(ack_ids.size(), i + kAckChunk));
    Status st = Call("ack", "POST", target_.subscription, ":acknowledge", PubSubAckBody(chunk),
                     /*retry=*/true, nullptr);
    if (!st.ok) return st;
  }
  return Status::Ok();
}

Status PubSubQueue::Nack(const std::vector<std::string>& ack_ids) {
  if (Status st = NeedSubscription("nack"); !st.ok) return st;
  return ModifyAckDeadline("nack", ack_ids, 0);
}

Status PubSubQueue::Extend(const std::vector<std::string>& ack_ids, milliseconds lease) {
  if (Status st = NeedSubscription("extend"); !st.ok) return st;
  return ModifyAckDeadline("extend", ack_ids, PubSubAckDeadlineSeconds(lease));
}

std::unique_ptr<Queue> OpenPubSubQueue(const std::string& uri, std::string* error) {
  PubSubTarget target;
  if (Status st = ParsePubSubUri(uri, &target); !st.ok) {
    *error = st.error;
    return nullptr;
  }
  PubSubOptions opts;
  opts.http = gcp::NewCurlHttpClient();
  if (std::string emu = GetEnv("PUBSUB_EMULATOR_HOST"); !emu.empty()) {
    opts.endpoint = emu.find("://") == std::string::npos ? "http://" + emu : emu;
    opts.tokens = gcp::NoAuthTokenSource();
  } else {
    std::string err;
    opts.tokens = gcp::DefaultTokenSource(opts.http, gcp::kPubSubScope, &err);
    if (!opts.tokens) {
      *error = "pubsub: cannot open " + uri + ": " + err;
      return nullptr;
    }
  }
  return std::make_unique<PubSubQueue>(uri, std::move(target), std::move(opts));
}

}  // namespace tidegate::queue
