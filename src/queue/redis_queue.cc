// queue/redis_queue.cc — see redis_queue.h.
//
// Why a RESP client of our own and not hiredis: Debian 12's libhiredis is 0.14.1, built without
// TLS, and rediss:// is a requirement. A blocking client is all the Queue seam needs (its calls
// run on the processor's worker pool), and RESP2 is small enough to parse completely, with
// limits, in resp.cc.
#include "queue/redis_queue.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <charconv>
#include <mutex>
#include <random>
#include <thread>

#include "queue/uri.h"

namespace tidegate::queue {
namespace {

using std::chrono::milliseconds;
using Steady = std::chrono::steady_clock;

constexpr int kMaxPullRedis = 1000;
constexpr milliseconds kCallTimeout{5000};
constexpr milliseconds kConnectTimeout{3000};
constexpr milliseconds kBackoffFirst{50};
constexpr milliseconds kBackoffMax{1000};
constexpr size_t kAckIdsPerScript = 500;             // ids per script call
constexpr size_t kMaxIdlePool = 8;                   // idle connections kept
constexpr const char* kNackIdleMs = "315360000000";  // 10 years: claimable by anyone at once

// Claims entries idle for at least the lease, reads their delivery counts and dead-letters the
// ones past max_attempts, atomically.
// KEYS: stream, dead-letter stream (the stream again when none).
// ARGV: group, consumer, min idle ms, cursor, count, max_attempts (0 = none), delete (1/0),
//       source name.
// Returns {next cursor, {{id, delivery count, fields}, ...}, number dead-lettered}.
constexpr const char* kClaimScript = R"lua(
local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 'COUNT', ARGV[5])
local max_attempts = tonumber(ARGV[6])
local out, dead = {}, 0
for _, e in ipairs(r[2]) do
  if type(e) == 'table' and type(e[2]) ~= 'table' then
    -- Redis 6.2 claims entries deleted from the stream with nil fields: drop them.
    redis.call('XACK', KEYS[1], ARGV[1], e[1])
  elseif type(e) == 'table' then
    local id = e[1]
    local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
    local cnt = 1
    if p[1] then cnt = tonumber(p[1][4]) end
    if max_attempts > 0 and cnt > max_attempts then
      local args = {'XADD', KEYS[2], '*'}
      for i = 1, #e[2] do args[#args + 1] = e[2][i] end
      args[#args + 1] = 'tidegate-dead-letter-source'
      args[#args + 1] = ARGV[8]
      args[#args + 1] = 'tidegate-delivery-attempts'
      args[#args + 1] = tostring(cnt - 1)
      redis.call(unpack(args))
      redis.call('XACK', KEYS[1], ARGV[1], id)
      if ARGV[7] == '1' then redis.call('XDEL', KEYS[1], id) end
      dead = dead + 1
    else
      out[#out + 1] = {id, cnt, e[2]}
    end
  end
end
return {r[1], out, dead}
)lua";

// Ack / extend / nack of the deliveries that are still current (same delivery count).
// KEYS: stream. ARGV: group, op (ack|extend|nack), consumer, delete (1/0), nack idle ms, then
// id, count pairs.
// Returns how many were current.
constexpr const char* kAckScript = R"lua(
local n = 0
for i = 6, #ARGV, 2 do
  local id = ARGV[i]
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
  if p[1] and tonumber(p[1][4]) == tonumber(ARGV[i + 1]) then
    if ARGV[2] == 'ack' then
      redis.call('XACK', KEYS[1], ARGV[1], id)
      if ARGV[4] == '1' then redis.call('XDEL', KEYS[1], id) end
    elseif ARGV[2] == 'extend' then
      redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, id, 'JUSTID')
    else
      redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, id, 'IDLE', ARGV[5], 'JUSTID')
    end
    n = n + 1
  end
end
return n
)lua";

// Publishes each result and acknowledges its request delivery, only while that delivery is
// current. KEYS: request stream, result stream. ARGV: group, delete (1/0), maxlen (0 = none),
// then per item: id, count, number of field/value strings, the strings.
// Returns {1 (done) or 0 (superseded), ...}.
constexpr const char* kPublishAckScript = R"lua(
local out = {}
local i = 4
while i <= #ARGV do
  local id, cnt, nf = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
  if p[1] and tonumber(p[1][4]) == cnt then
    local args = {'XADD', KEYS[2]}
    if ARGV[3] ~= '0' then
      args[3] = 'MAXLEN'
      args[4] = '~'
      args[5] = ARGV[3]
    end
    args[#args + 1] = '*'
    for j = 1, nf do args[#args + 1] = ARGV[i + 2 + j] end
    redis.call(unpack(args))
    redis.call('XACK', KEYS[1], ARGV[1], id)
    if ARGV[2] == '1' then redis.call('XDEL', KEYS[1], id) end
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
  i = i + 3 + nf
end
return out
)lua";

bool StartsWithNoCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() &&
         std::equal(prefix.begin(), prefix.end(), s.begin(), [](char a, char b) {
           return a == std::tolower(static_cast<unsigned char>(b));
         });
}

template <typename Int>
bool ParseDecimal(std::string_view s, Int* v) {
  if (s.empty()) return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), *v);
  return ec == std::errc() && ptr == s.data() + s.size();
}

bool ErrorStartsWith(const RespReply& r, std::string_view code) {
  return r.is_error() && r.str.compare(0, code.size(), code) == 0;
}

// Fields [f1, v1, f2, v2, ...] → data + attributes.
bool FieldsToMessage(const RespReply& fields, Message* m, std::string* error) {
  if (fields.is_nil()) return true;  // an entry deleted while pending: no fields
  if (!fields.is_array() || fields.elements.size() % 2 != 0) {
    *error = "entry fields are not a list of field/value pairs: " + fields.Describe();
    return false;
  }
  bool have_data = false;
  for (size_t i = 0; i + 1 < fields.elements.size(); i += 2) {
    const RespReply& k = fields.elements[i];
    const RespReply& v = fields.elements[i + 1];
    if (!k.is_string() || !v.is_string()) {
      *error = "entry field or value is not a string: " + fields.Describe();
      return false;
    }
    if (k.str == "data") {
      if (!have_data) m->data = v.str;  // the first one wins
      have_data = true;
    } else {
      m->attributes.emplace(k.str, v.str);
    }
  }
  return true;
}

}  // namespace

// ---- URIs, ids, replies ---------------------------------------------------------------------

std::string RedactRedisUri(std::string_view uri) {
  size_t scheme = uri.find("://");
  if (scheme == std::string_view::npos) return std::string(uri);
  size_t auth_start = scheme + 3;
  size_t auth_end = uri.find_first_of("/?", auth_start);
  if (auth_end == std::string_view::npos) auth_end = uri.size();
  std::string_view authority = uri.substr(auth_start, auth_end - auth_start);
  size_t at = authority.rfind('@');
  if (at == std::string_view::npos) return std::string(uri);
  size_t colon = authority.find(':');
  if (colon == std::string_view::npos || colon > at) {
    // "SECRET@host": treat the whole user info as secret.
    return std::string(uri.substr(0, auth_start)) + "***" +
           std::string(uri.substr(auth_start + at));
  }
  return std::string(uri.substr(0, auth_start + colon + 1)) + "***" +
         std::string(uri.substr(auth_start + at));
}

std::string DefaultRedisConsumerName() {
  char host[256] = {0};
  if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') std::snprintf(host, 8, "host");
  std::random_device rd;
  char suffix[8];
  std::snprintf(suffix, sizeof(suffix), "%06x", static_cast<unsigned>(rd()) & 0xffffff);
  return std::string(host) + "-" + std::to_string(getpid()) + "-" + suffix;
}

bool ValidRedisEntryId(std::string_view id) {
  size_t dash = id.find('-');
  if (dash == std::string_view::npos) return false;
  uint64_t a, b;
  return ParseDecimal(id.substr(0, dash), &a) && ParseDecimal(id.substr(dash + 1), &b) &&
         std::isdigit(static_cast<unsigned char>(id[0])) &&
         std::isdigit(static_cast<unsigned char>(id[dash + 1]));
}

std::string FormatRedisAckId(std::string_view entry_id, int64_t delivery_count) {
  return std::string(entry_id) + ":" + std::to_string(delivery_count);
}

bool ParseRedisAckId(std::string_view ack_id, std::string* entry_id, int64_t* delivery_count) {
  size_t colon = ack_id.rfind(':');
  if (colon == std::string_view::npos) return false;
  std::string_view id = ack_id.substr(0, colon);
  if (!ValidRedisEntryId(id)) return false;
  std::string_view n = ack_id.substr(colon + 1);
  if (n.empty() || !std::isdigit(static_cast<unsigned char>(n[0]))) return false;
  if (!ParseDecimal(n, delivery_count) || *delivery_count < 1) return false;
  entry_id->assign(id);
  return true;
}

bool RedisEntryToMessage(const RespReply& entry, int64_t delivery_count, Message* out,
                         std::string* error) {
  if (!entry.is_array() || entry.elements.size() != 2 || !entry.elements[0].is_string() ||
      !ValidRedisEntryId(entry.elements[0].str)) {
    *error = "stream entry is not [id, fields]: " + entry.Describe();
    return false;
  }
  if (delivery_count < 1 || delivery_count > (1 << 30)) {
    *error = "stream entry " + entry.elements[0].Describe() + " has delivery count " +
             std::to_string(delivery_count);
    return false;
  }
  Message m;
  m.id = entry.elements[0].str;
  if (!FieldsToMessage(entry.elements[1], &m, error)) return false;
  m.delivery_attempt = static_cast<int>(delivery_count);
  m.ack_id = FormatRedisAckId(m.id, delivery_count);
  int64_t ms = 0;
  // (An id's time part is the publisher's clock in ms; one beyond year ~2262 would overflow the
  // nanosecond clock, so it is not taken as a publish time.)
  constexpr int64_t kMaxMs = int64_t{9'000'000'000'000};  // year 2255
  if (ParseDecimal(std::string_view(m.id).substr(0, m.id.find('-')), &ms) && ms > 0 && ms < kMaxMs)
    m.publish_time = std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(milliseconds(ms)));
  *out = std::move(m);
  return true;
}

bool ParseRedisReadReply(const RespReply& reply, std::vector<Message>* out, std::string* error) {
  if (reply.is_nil()) return true;  // BLOCK timed out
  if (reply.is_error()) {
    *error = reply.str;
    return false;
  }
  if (!reply.is_array()) {
    *error = "XREADGROUP reply is not a list: " + reply.Describe();
    return false;
  }
  for (const RespReply& s : reply.elements) {
    if (!s.is_array() || s.elements.size() != 2 || !s.elements[1].is_array()) {
      *error = "XREADGROUP reply is not [[stream, entries], ...]: " + reply.Describe();
      return false;
    }
    for (const RespReply& e : s.elements[1].elements) {
      Message m;
      if (!RedisEntryToMessage(e, 1, &m, error)) return false;
      out->push_back(std::move(m));
    }
  }
  return true;
}

bool ParseRedisClaimReply(const RespReply& reply, std::string* cursor, std::vector<Message>* out,
                          int64_t* dead_lettered, std::string* error) {
  if (reply.is_error()) {
    *error = reply.str;
    return false;
  }
  if (!reply.is_array() || reply.elements.size() != 3 || !reply.elements[0].is_string() ||
      !reply.elements[1].is_array() || reply.elements[2].type != RespReply::Type::kInteger) {
    *error = "claim reply is not [cursor, entries, count]: " + reply.Describe();
    return false;
  }
  if (!ValidRedisEntryId(reply.elements[0].str)) {
    *error = "claim reply has a bad cursor: " + reply.elements[0].Describe();
    return false;
  }
  *cursor = reply.elements[0].str;
  *dead_lettered = reply.elements[2].integer;
  for (const RespReply& c : reply.elements[1].elements) {
    if (!c.is_array() || c.elements.size() != 3 ||
        c.elements[1].type != RespReply::Type::kInteger) {
      *error = "claimed entry is not [id, count, fields]: " + c.Describe();
      return false;
    }
    RespReply entry;
    entry.type = RespReply::Type::kArray;
    entry.elements = {c.elements[0], c.elements[2]};
    Message m;
    if (!RedisEntryToMessage(entry, c.elements[1].integer, &m, error)) return false;
    out->push_back(std::move(m));
  }
  return true;
}

bool ParseRedisQueueUri(const std::string& uri, RedisQueueOptions* out, std::string* error) {
  const std::string shown = RedactRedisUri(uri);
  auto fail = [&](const std::string& why) {
    *error = "redis queue URI '" + shown + "': " + why +
             " (expected redis[s]://[USER:PASSWORD@]HOST:PORT[/DB]/STREAM?group=G"
             "[&consumer=C][&dead_letter=S][&max_attempts=N][&delete=true|false][&maxlen=N]"
             "[&ca=FILE])";
    return false;
  };
  *out = RedisQueueOptions{};
  std::string_view rest;
  if (StartsWithNoCase(uri, "rediss://")) {
    out->endpoint.tls = true;
    rest = std::string_view(uri).substr(9);
  } else if (StartsWithNoCase(uri, "redis://")) {
    rest = std::string_view(uri).substr(8);
  } else {
    return fail("not a redis:// or rediss:// URI");
  }
  size_t q = rest.find('?');
  std::string_view query = q == std::string_view::npos ? std::string_view() : rest.substr(q + 1);
  rest = rest.substr(0, q);
  size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
  // User info.
  if (size_t at = authority.rfind('@'); at != std::string_view::npos) {
    std::string_view info = authority.substr(0, at);
    authority = authority.substr(at + 1);
    size_t colon = info.find(':');
    if (colon == std::string_view::npos)
      return fail("user info must be USER:PASSWORD or :PASSWORD");
    if (!PercentDecode(info.substr(0, colon), &out->endpoint.user) ||
        !PercentDecode(info.substr(colon + 1), &out->endpoint.password))
      return fail("bad percent-escape in the user info");
    if (out->endpoint.password.empty()) return fail("empty password");
  }
  // Host and port.
  std::string_view host = authority, port;
  if (!authority.empty() && authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return fail("unterminated [IPv6] host");
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return fail("junk after the [IPv6] host");
      port = after.substr(1);
      if (port.empty()) return fail("empty port");
    }
  } else if (size_t colon = authority.rfind(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
    if (port.empty()) return fail("empty port");
  }
  if (host.empty()) return fail("missing host");
  for (char c : host)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_' ||
          c == ':'))
      return fail("bad character in host '" + std::string(host) + "'");
  out->endpoint.host = std::string(host);
  if (!port.empty()) {
    unsigned p = 0;
    if (!ParseDecimal(port, &p) || p < 1 || p > 65535)
      return fail("bad port '" + std::string(port) + "' (1..65535)");
    out->endpoint.port = static_cast<uint16_t>(p);
  }
  // Path: /STREAM or /DB/STREAM.
  if (path.size() <= 1) return fail("missing /STREAM");
  path.remove_prefix(1);
  std::string_view stream_part = path;
  if (size_t s2 = path.find('/'); s2 != std::string_view::npos) {
    std::string_view db = path.substr(0, s2);
    stream_part = path.substr(s2 + 1);
    int n = 0;
    if (!ParseDecimal(db, &n) || n < 0 || n > 1000000)
      return fail("bad database number '" + std::string(db) + "' (the path is /DB/STREAM)");
    out->endpoint.db = n;
    if (stream_part.find('/') != std::string_view::npos)
      return fail("too many path segments (write '/' in a stream name as %2F)");
  }
  if (stream_part.empty()) return fail("missing stream name");
  if (!PercentDecode(stream_part, &out->stream)) return fail("bad percent-escape in the stream");
  bool have_max = false;
  std::string ca;
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view param = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (param.empty()) continue;
    size_t eq = param.find('=');
    std::string_view key = param.substr(0, eq);
    std::string value;
    if (eq == std::string_view::npos || !PercentDecode(param.substr(eq + 1), &value))
      return fail("malformed parameter '" + std::string(param) + "'");
    if (key == "group") {
      if (value.empty()) return fail("empty group");
      out->group = value;
    } else if (key == "consumer") {
      if (value.empty()) return fail("empty consumer");
      out->consumer = value;
    } else if (key == "dead_letter") {
      if (value.empty()) return fail("empty dead_letter");
      out->dead_letter = value;
    } else if (key == "max_attempts") {
      int n = 0;
      if (!ParseDecimal(std::string_view(value), &n) || n < 1 || n > kMaxAttemptsLimit)
        return fail("max_attempts must be an integer in 1.." + std::to_string(kMaxAttemptsLimit) +
                    ", got '" + value + "'");
      out->max_attempts = n;
      have_max = true;
    } else if (key == "delete") {
      if (value == "true" || value == "1") {
        out->delete_acked = true;
      } else if (value == "false" || value == "0") {
        out->delete_acked = false;
      } else {
        return fail("delete must be true or false, got '" + value + "'");
      }
    } else if (key == "maxlen") {
      int64_t n = 0;
      if (!ParseDecimal(std::string_view(value), &n) || n < 1)
        return fail("maxlen must be a positive integer, got '" + value + "'");
      out->maxlen = n;
    } else if (key == "ca") {
      if (!out->endpoint.tls) return fail("ca= is only for rediss:// (TLS)");
      if (value.empty()) return fail("empty ca");
      out->endpoint.ca_file = value;
    } else {
      return fail("unknown parameter '" + std::string(key) + "'");
    }
  }
  if (out->group.empty()) return fail("missing ?group=NAME (the consumer group)");
  if (auto e =
          CheckDeadLetter(have_max, out->dead_letter, out->stream, "stream", &out->max_attempts);
      !e.empty())
    return fail(e);
  if (out->consumer.empty()) out->consumer = DefaultRedisConsumerName();
  return true;
}

// ---- The queue ------------------------------------------------------------------------------

namespace {

class RedisQueue final : public Queue {
 public:
  RedisQueue(const std::string& uri, RedisQueueOptions opts)
      : uri_(RedactRedisUri(uri)), opts_(std::move(opts)) {}

  std::string_view kind() const override { return "redis"; }
  const std::string& uri() const override { return uri_; }

  // Connects (retrying for the call timeout), authenticates and creates the group at 0.
  bool Open(std::string* error) {
    std::vector<RespReply> replies;
    const auto give_up = Steady::now() + kCallTimeout;
    for (;;) {
      Status st = Run("open", {{"XGROUP", "CREATE", opts_.stream, opts_.group, "0", "MKSTREAM"}},
                      &replies, milliseconds(0));
      if (!st.ok) {
        *error = st.error;
        return false;
      }
      // A Redis that has just restarted answers LOADING while it reads its AOF: wait for it.
      if (!ErrorStartsWith(replies[0], "LOADING") || Steady::now() >= give_up) break;
      std::this_thread::sleep_for(milliseconds(200));
    }
    if (replies[0].is_error() && !ErrorStartsWith(replies[0], "BUSYGROUP")) {
      *error = Describe("XGROUP CREATE") + ": " + replies[0].str;
      return false;
    }
    return true;
  }

  Status Publish(std::string_view data, const std::map<std::string, std::string>& attrs,
                 std::string* id) override {
    std::vector<RespReply> replies;
    if (Status st = Run("Publish", {XAdd(data, attrs)}, &replies, milliseconds(0)); !st.ok)
      return st;
    const RespReply& r = replies[0];
    if (!r.is_string()) return Status::Error(Describe("Publish (XADD)") + ": " + r.Describe());
    if (id != nullptr) *id = r.str;
    return Status::Ok();
  }

  Status PublishBatch(const std::vector<std::string>& data, size_t* published) override {
    *published = 0;
    for (size_t start = 0; start < data.size(); start += kAckIdsPerScript) {
      std::vector<std::vector<std::string>> cmds;
      for (size_t i = start; i < std::min(data.size(), start + kAckIdsPerScript); ++i)
        cmds.push_back(XAdd(data[i], {}));
      std::vector<RespReply> replies;
      if (Status st = Run("PublishBatch", cmds, &replies, milliseconds(0)); !st.ok) return st;
      for (const RespReply& r : replies) {
        if (!r.is_string())
          return Status::Error(Describe("PublishBatch (XADD)") + ": " + r.Describe());
        ++*published;
      }
    }
    return Status::Ok();
  }

  Status Pull(int max, milliseconds lease, milliseconds wait, std::vector<Message>* out) override {
    out->clear();
    if (max <= 0) return Status::Ok();
    if (lease.count() <= 0) return Status::Error(Describe("Pull") + ": lease must be positive");
    max = std::min(max, kMaxPullRedis);
    wait = std::max(wait, milliseconds(0));
    for (int round = 0; round < 2; ++round) {
      bool recreate = false;
      Status st = TryPull(max, lease, wait, out, &recreate);
      if (st.ok || !recreate || round == 1) return st;
      // The group is gone (Redis lost its data, or someone deleted the stream): make it again.
      spdlog::warn("{}: the consumer group is missing; creating it again", Describe("Pull"));
      if (!Open(&st.error)) return st;
    }
    return Status::Ok();
  }

  Status Ack(const std::vector<std::string>& ack_ids) override {
    return AckLike("Ack", "ack", ack_ids);
  }
  Status Nack(const std::vector<std::string>& ack_ids) override {
    return AckLike("Nack", "nack", ack_ids);
  }
  Status Extend(const std::vector<std::string>& ack_ids, milliseconds lease) override {
    // The idle time restarts now; whether it counts as expired is decided by the reclaiming
    // Pull's lease (the same for every consumer of the group).
    return AckLike("Extend", "extend", ack_ids);
  }

  bool AtomicPublishAck(const Queue& source) const override {
    auto* src = dynamic_cast<const RedisQueue*>(&source);
    if (src == nullptr) return false;
    const RespEndpoint &a = opts_.endpoint, &b = src->opts_.endpoint;
    return a.host == b.host && a.port == b.port && a.db == b.db && a.tls == b.tls &&
           a.user == b.user;
  }

  Status PublishAndAck(std::vector<PublishAck>* items, Queue& source) override {
    if (!AtomicPublishAck(source)) return Queue::PublishAndAck(items, source);
    auto* src = static_cast<RedisQueue*>(&source);
    std::vector<size_t> todo;
    std::vector<std::string> cmd = {"EVAL",
                                    kPublishAckScript,
                                    "2",
                                    src->opts_.stream,
                                    opts_.stream,
                                    src->opts_.group,
                                    src->opts_.delete_acked ? "1" : "0",
                                    std::to_string(opts_.maxlen)};
    for (size_t i = 0; i < items->size(); ++i) {
      const PublishAck& item = (*items)[i];
      if (item.done) continue;
      std::string entry;
      int64_t count = 0;
      if (!ParseRedisAckId(item.ack_id, &entry, &count))
        return Status::Error(Describe("PublishAndAck") + ": malformed ack id '" + item.ack_id +
                             "'");
      std::vector<std::string> fields = Fields(item.data, item.attributes);
      cmd.push_back(entry);
      cmd.push_back(std::to_string(count));
      cmd.push_back(std::to_string(fields.size()));
      for (auto& f : fields) cmd.push_back(std::move(f));
      todo.push_back(i);
    }
    if (todo.empty()) return Status::Ok();
    std::vector<RespReply> replies;
    if (Status st = Run("PublishAndAck", {std::move(cmd)}, &replies, milliseconds(0)); !st.ok)
      return st;
    const RespReply& r = replies[0];
    if (!r.is_array() || r.elements.size() != todo.size())
      return Status::Error(Describe("PublishAndAck") + ": unexpected reply " + r.Describe());
    for (size_t k = 0; k < todo.size(); ++k) {
      PublishAck& item = (*items)[todo[k]];
      item.done = true;
      item.superseded = r.elements[k].integer == 0;
      item.published = !item.superseded;
    }
    return Status::Ok();
  }

  std::vector<std::pair<std::string, uint64_t>> EventCounts() override {
    uint64_t reconnects = 0;
    {
      std::lock_guard lock(pool_mu_);
      reconnects = reconnects_;
    }
    return {{"reconnects", reconnects},
            {"reclaimed", reclaimed_.load()},
            {"dead_lettered", dead_lettered_.load()}};
  }

  std::optional<int64_t> Backlog() override {
    if (!opts_.delete_acked) return std::nullopt;  // XLEN would count acknowledged entries too
    std::vector<RespReply> replies;
    std::lock_guard lock(backlog_mu_);
    if (Run("Backlog", {{"XLEN", opts_.stream}}, &replies, milliseconds(0)).ok &&
        replies[0].type == RespReply::Type::kInteger)
      last_backlog_ = replies[0].integer;
    return last_backlog_;  // the last known count while Redis is unreachable
  }

 private:
  std::string Describe(std::string_view op) const {
    return "redis queue '" + opts_.stream + "' (" + uri_ + "): " + std::string(op);
  }

  std::vector<std::string> Fields(std::string_view data,
                                  const std::map<std::string, std::string>& attrs) const {
    std::vector<std::string> f = {"data", std::string(data)};
    for (const auto& [k, v] : attrs) {
      if (k == "data") continue;
      f.push_back(k);
      f.push_back(v);
    }
    return f;
  }

  std::vector<std::string> XAdd(std::string_view data,
                                const std::map<std::string, std::string>& attrs) const {
    std::vector<std::string> cmd = {"XADD", opts_.stream};
    if (opts_.maxlen > 0) {
      cmd.push_back("MAXLEN");
      cmd.push_back("~");
      cmd.push_back(std::to_string(opts_.maxlen));
    }
    cmd.push_back("*");
    for (auto& f : Fields(data, attrs)) cmd.push_back(std::move(f));
    return cmd;
  }

  Status TryPull(int max, milliseconds lease, milliseconds wait, std::vector<Message>* out,
                 bool* recreate) {
    std::string cursor;
    {
      std::lock_guard lock(cursor_mu_);
      cursor = cursor_;
    }
    std::vector<RespReply> replies;
    std::vector<std::string> claim = {"EVAL",
                                      kClaimScript,
                                      "2",
                                      opts_.stream,
                                      opts_.dead_letter.empty() ? opts_.stream : opts_.dead_letter,
                                      opts_.group,
                                      opts_.consumer,
                                      std::to_string(lease.count()),
                                      cursor,
                                      std::to_string(max),
                                      std::to_string(opts_.max_attempts),
                                      opts_.delete_acked ? "1" : "0",
                                      opts_.stream};
    if (Status st = Run("Pull (claim)", {claim}, &replies, milliseconds(0)); !st.ok) return st;
    std::string next;
    int64_t dead = 0;
    std::string error;
    if (!ParseRedisClaimReply(replies[0], &next, out, &dead, &error)) {
      *recreate = ErrorStartsWith(replies[0], "NOGROUP") ||
                  replies[0].str.find("NOGROUP") != std::string::npos;
      out->clear();
      return Status::Error(Describe("Pull (XAUTOCLAIM)") + ": " + error);
    }
    {
      std::lock_guard lock(cursor_mu_);
      cursor_ = next;
    }
    reclaimed_.fetch_add(out->size());
    if (dead > 0) dead_lettered_.fetch_add(static_cast<uint64_t>(dead));
    if (!out->empty())
      spdlog::info("{}: reclaimed {} message(s) idle for longer than the lease ({} ms)",
                   Describe("Pull"), out->size(), lease.count());
    if (dead > 0)
      spdlog::warn("{}: moved {} message(s) past max_attempts={} to the dead-letter stream '{}'",
                   Describe("Pull"), dead, opts_.max_attempts, opts_.dead_letter);
    const int left = max - static_cast<int>(out->size());
    if (left <= 0) return Status::Ok();
    std::vector<std::string> read = {"XREADGROUP",   "GROUP", opts_.group,
                                     opts_.consumer, "COUNT", std::to_string(left)};
    // BLOCK 0 would mean forever: with no wait (or something claimed already) do not block.
    const bool block = out->empty() && wait.count() > 0;
    if (block) {
      read.push_back("BLOCK");
      read.push_back(std::to_string(wait.count()));
    }
    read.insert(read.end(), {"STREAMS", opts_.stream, ">"});
    replies.clear();
    if (Status st = Run("Pull (XREADGROUP)", {read}, &replies, block ? wait : milliseconds(0));
        !st.ok) {
      // What was claimed is ours now; hand it out rather than leave it to the lease.
      return out->empty() ? st : Status::Ok();
    }
    std::vector<Message> fresh;
    if (!ParseRedisReadReply(replies[0], &fresh, &error)) {
      if (out->empty()) {
        // UNBLOCKED: the stream was deleted while we waited on it (its group went with it).
        *recreate =
            ErrorStartsWith(replies[0], "NOGROUP") || ErrorStartsWith(replies[0], "UNBLOCKED");
        return Status::Error(Describe("Pull (XREADGROUP)") + ": " + error);
      }
      return Status::Ok();
    }
    for (auto& m : fresh) out->push_back(std::move(m));
    return Status::Ok();
  }

  Status AckLike(std::string_view op, const char* verb, const std::vector<std::string>& ack_ids) {
    std::vector<std::pair<std::string, int64_t>> parsed;
    parsed.reserve(ack_ids.size());
    for (const auto& a : ack_ids) {
      std::string entry;
      int64_t count = 0;
      if (!ParseRedisAckId(a, &entry, &count))
        return Status::Error(Describe(op) + ": malformed ack id '" + a + "'");
      parsed.emplace_back(std::move(entry), count);
    }
    for (size_t start = 0; start < parsed.size(); start += kAckIdsPerScript) {
      std::vector<std::string> cmd = {"EVAL",
                                      kAckScript,
                                      "1",
                                      opts_.stream,
                                      opts_.group,
                                      verb,
                                      opts_.consumer,
                                      opts_.delete_acked ? "1" : "0",
                                      kNackIdleMs};
      for (size_t i = start; i < std::min(parsed.size(), start + kAckIdsPerScript); ++i) {
        cmd.push_back(parsed[i].first);
        cmd.push_back(std::to_string(parsed[i].second));
      }
      std::vector<RespReply> replies;
      if (Status st = Run(op, {std::move(cmd)}, &replies, milliseconds(0)); !st.ok) return st;
      if (replies[0].is_error()) return Status::Error(Describe(op) + ": " + replies[0].str);
    }
    return Status::Ok();
  }

  // ---- Connections ---------------------------------------------------------------------------

  std::unique_ptr<RespConnection> Acquire() {
    {
      std::lock_guard lock(pool_mu_);
      if (!idle_.empty()) {
        auto c = std::move(idle_.back());
        idle_.pop_back();
        return c;
      }
    }
    return std::make_unique<RespConnection>(opts_.endpoint);
  }

  void Release(std::unique_ptr<RespConnection> c) {
    if (!c->connected()) return;
    std::lock_guard lock(pool_mu_);
    if (idle_.size() < kMaxIdlePool) idle_.push_back(std::move(c));
  }

  void DropIdle() {
    std::vector<std::unique_ptr<RespConnection>> old;
    std::lock_guard lock(pool_mu_);
    old.swap(idle_);
  }

  void NoteDown(const std::string& why) {
    std::lock_guard lock(pool_mu_);
    if (down_) return;
    down_ = true;
    spdlog::warn(
        "redis queue '{}' ({}): connection lost or refused: {}; reconnecting with back-off",
        opts_.stream, uri_, why);
  }

  void NoteUp() {
    std::lock_guard lock(pool_mu_);
    if (!down_) return;
    down_ = false;
    ++reconnects_;
    spdlog::info("redis queue '{}' ({}): reconnected (reconnects so far: {})", opts_.stream, uri_,
                 reconnects_);
  }

  // Sends the commands (pipelined) on a pooled connection, connecting as needed with back-off
  // until the call's deadline (kCallTimeout + extra, `extra` being a BLOCK wait). Replies that
  // are Redis errors are returned as replies.
  Status Run(std::string_view op, const std::vector<std::vector<std::string>>& cmds,
             std::vector<RespReply>* replies, milliseconds extra) {
    const auto deadline = Steady::now() + kCallTimeout + extra;
    milliseconds backoff = kBackoffFirst;
    bool retried = false;
    for (;;) {
      auto conn = Acquire();
      bool fresh = false;
      if (!conn->connected()) {
        std::string err;
        bool permanent = false;
        auto connect_deadline = std::min(deadline, Steady::now() + kConnectTimeout);
        if (!conn->Connect(connect_deadline, &err, &permanent)) {
          if (permanent) return Status::Error(Describe(op) + ": " + err);
          NoteDown(err);
          if (Steady::now() + backoff >= deadline) return Status::Error(Describe(op) + ": " + err);
          std::this_thread::sleep_for(backoff);
          backoff = std::min(backoff * 2, kBackoffMax);
          continue;
        }
        fresh = true;
        NoteUp();
      }
      std::string err;
      if (conn->Pipeline(cmds, replies, deadline, &err)) {
        Release(std::move(conn));
        return Status::Ok();
      }
      // The others in the pool are likely as dead as this one (Redis restarted).
      DropIdle();
      if (!fresh && !retried && Steady::now() < deadline) {
        retried = true;
        continue;
      }
      NoteDown(err);
      return Status::Error(Describe(op) + ": " + err);
    }
  }

  const std::string uri_;  // redacted
  const RedisQueueOptions opts_;
  std::mutex pool_mu_;  // guards idle_, down_, reconnects_
  std::vector<std::unique_ptr<RespConnection>> idle_;
  bool down_ = false;
  uint64_t reconnects_ = 0;
  std::atomic<uint64_t> reclaimed_{0}, dead_lettered_{0};
  std::mutex cursor_mu_;
  std::string cursor_ = "0-0";  // XAUTOCLAIM's scan position
  std::mutex backlog_mu_;
  std::optional<int64_t> last_backlog_;
};

}  // namespace

std::unique_ptr<Queue> OpenRedisQueue(const std::string& uri, std::string* error) {
  RedisQueueOptions opts;
  if (!ParseRedisQueueUri(uri, &opts, error)) return nullptr;
  auto q = std::make_unique<RedisQueue>(uri, std::move(opts));
  if (!q->Open(error)) return nullptr;
  return q;
}

}  // namespace tidegate::queue
