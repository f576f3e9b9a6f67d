// queue/queue.cc — the registry of queue backends by URI scheme.
//
// Built-in backends are registered explicitly by RegisterBuiltinQueueBackends(), run once,
// lazily, by the first call to any registry function — not by static initializers, which a
// static library would silently drop when nothing else references their object file. Scheme
// matching is case-insensitive (schemes are stored lower-case). RegisterQueueBackend() after
// the built-ins replaces a built-in of the same scheme (tests use this for fakes).
// Thread-safety: all functions may be called from any thread; factories run outside the lock.
#include "queue/queue.h"

#include <algorithm>
#include <cctype>
#include <mutex>

#include "queue/nats_queue.h"
#include "queue/pubsub_queue.h"
#include "queue/redis_queue.h"
#include "queue/sqlite_queue.h"

namespace tidegate::queue {
namespace {

struct Registry {
  std::mutex mu;
  std::map<std::string, QueueFactory> factories;  // by lower-case scheme
};

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

void RegisterBuiltinQueueBackends(Registry& r) {
  auto add = [&r](const char* scheme, QueueFactory factory) {
    r.factories[scheme] = std::move(factory);
  };
  // ---- Built-in backends: one line each (plus its #include above). ----
  add("sqlite", OpenSqliteQueue);
  // >>> Pub/Sub backend registers here, e.g.:  add("pubsub", OpenPubSubQueue);
  add("pubsub", OpenPubSubQueue);
  for (const char* scheme : {"redis", "rediss"}) add(scheme, OpenRedisQueue);
  for (const char* scheme : {"nats", "tls"}) add(scheme, OpenNatsQueue);
  // ---- end of built-in backends ----
}

Registry& GetRegistry() {
  static Registry* registry = [] {
    auto* r = new Registry;  // never destroyed: usable from other static destructors
    RegisterBuiltinQueueBackends(*r);
    return r;
  }();
  return *registry;
}

std::string JoinSchemes(const std::vector<std::string>& schemes) {
  std::string out;
  for (const auto& s : schemes) {
    if (!out.empty()) out += ", ";
    out += s + "://";
  }
  return out.empty() ? "none" : out;
}

}  // namespace

Status Queue::PublishBatch(const std::vector<std::string>& data, size_t* published) {
  *published = 0;
  for (const auto& d : data) {
    if (Status st = Publish(d, {}, nullptr); !st.ok) return st;
    ++*published;
  }
  return Status::Ok();
}

Status Queue::PublishAndAck(std::vector<PublishAck>* items, Queue& source) {
  for (auto& item : *items) {
    if (item.done) continue;
    if (!item.published) {
      if (Status st = Publish(item.data, item.attributes, nullptr); !st.ok) return st;
      item.published = true;
    }
    if (Status st = source.Ack({item.ack_id}); !st.ok) return st;
    item.done = true;
  }
  return Status::Ok();
}

void RegisterQueueBackend(const std::string& scheme, QueueFactory factory) {
  Registry& r = GetRegistry();
  std::lock_guard lock(r.mu);
  r.factories[Lower(scheme)] = std::move(factory);
}

std::vector<std::string> QueueSchemes() {
  Registry& r = GetRegistry();
  std::lock_guard lock(r.mu);
  std::vector<std::string> out;
  for (const auto& [scheme, factory] : r.factories) out.push_back(scheme);
  return out;  // sorted (std::map order)
}

std::unique_ptr<Queue> OpenQueue(const std::string& uri, std::string* error) {
  std::string local_error;
  if (error == nullptr) error = &local_error;
  size_t sep = uri.find("://");
  if (sep == std::string::npos || sep == 0) {
    *error = "queue URI '" + uri +
             "' has no scheme (expected SCHEME://...; known: " + JoinSchemes(QueueSchemes()) + ")";
    return nullptr;
  }
  std::string scheme = Lower(uri.substr(0, sep));
  QueueFactory factory;
  {
    Registry& r = GetRegistry();
    std::lock_guard lock(r.mu);
    auto it = r.factories.find(scheme);
    if (it != r.factories.end()) factory = it->second;
  }
  if (!factory) {
    *error = "queue URI '" + uri + "': unknown scheme '" + scheme +
             "://' (known: " + JoinSchemes(QueueSchemes()) + ")";
    return nullptr;
  }
  auto q = factory(uri, error);
  if (q == nullptr && error->empty()) *error = "queue URI '" + uri + "': cannot open";
  return q;
}

std::string RedactUri(std::string_view uri) {
  const size_t scheme = uri.find("://");
  if (scheme == std::string_view::npos) return std::string(uri);
  const size_t host = scheme + 3;
  const size_t end = std::min(uri.find('/', host), uri.size());
  const size_t at = uri.rfind('@', end == uri.size() ? uri.size() - 1 : end);
  if (at == std::string_view::npos || at < host) return std::string(uri);
  const std::string_view info = uri.substr(host, at - host);
  const size_t colon = info.find(':');
  std::string out(uri.substr(0, host));
  out += colon == std::string_view::npos ? std::string("***")
                                         : std::string(info.substr(0, colon)) + ":***";
  out += uri.substr(at);
  return out;
}

}  // namespace tidegate::queue
