// Unit tests of the Redis Streams queue's pure parts: URIs, ack ids, the RESP2 encoder and
// parser (malformed replies included), the shaping of stream replies into messages; and of the
// RESP connection against a one-connection fake server on loopback (replies, a malformed reply,
// a silent server and its deadline, refused credentials). No Redis here:
// tests/integration/async_redis.test.mjs runs the backend against a real redis-server.
#include <gtest/gtest.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "queue/redis_queue.h"
#include "queue/resp.h"

namespace tidegate::queue {
namespace {

RespReply Bulk(std::string s) {
  RespReply r;
  r.type = RespReply::Type::kBulk;
  r.str = std::move(s);
  return r;
}
RespReply Int(int64_t n) {
  RespReply r;
  r.type = RespReply::Type::kInteger;
  r.integer = n;
  return r;
}
RespReply Arr(std::vector<RespReply> e) {
  RespReply r;
  r.type = RespReply::Type::kArray;
  r.elements = std::move(e);
  return r;
}

TEST(RedisUri, FullForm) {
  RedisQueueOptions o;
  std::string err;
  ASSERT_TRUE(ParseRedisQueueUri(
      "redis://alice:s%40cret@redis.example:6380/3/req%2Fa?group=g&consumer=c1&dead_letter=dl&"
      "max_attempts=7&delete=false&maxlen=1000",
      &o, &err))
      << err;
  EXPECT_EQ(o.endpoint.host, "redis.example");
  EXPECT_EQ(o.endpoint.port, 6380);
  EXPECT_EQ(o.endpoint.user, "alice");
  EXPECT_EQ(o.endpoint.password, "s@cret");
  EXPECT_EQ(o.endpoint.db, 3);
  EXPECT_FALSE(o.endpoint.tls);
  EXPECT_EQ(o.stream, "req/a");
  EXPECT_EQ(o.group, "g");
  EXPECT_EQ(o.consumer, "c1");
  EXPECT_EQ(o.dead_letter, "dl");
  EXPECT_EQ(o.max_attempts, 7);
  EXPECT_FALSE(o.delete_acked);
  EXPECT_EQ(o.maxlen, 1000);
}

TEST(RedisUri, Defaults) {
  RedisQueueOptions o;
  std::string err;
  ASSERT_TRUE(ParseRedisQueueUri("redis://127.0.0.1/requests?group=workers", &o, &err)) << err;
  EXPECT_EQ(o.endpoint.port, 6379);
  EXPECT_EQ(o.endpoint.db, 0);
  EXPECT_TRUE(o.endpoint.password.empty());
  EXPECT_TRUE(o.delete_acked);
  EXPECT_EQ(o.max_attempts, 0);
  EXPECT_EQ(o.maxlen, 0);
  EXPECT_FALSE(o.consumer.empty());  // HOSTNAME-PID-RANDOM
  RedisQueueOptions o2;
  ASSERT_TRUE(ParseRedisQueueUri("redis://127.0.0.1/requests?group=workers", &o2, &err));
  EXPECT_NE(o.consumer, o2.consumer) << "the random suffix tells two queues apart";
}

TEST(RedisUri, TlsPasswordOnlyIpv6AndDeadLetterDefault) {
  RedisQueueOptions o;
  std::string err;
  ASSERT_TRUE(ParseRedisQueueUri("rediss://:pw@[::1]:6390/s?group=g&dead_letter=d&ca=/etc/ca.pem",
                                 &o, &err))
      << err;
  EXPECT_TRUE(o.endpoint.tls);
  EXPECT_EQ(o.endpoint.host, "::1");
  EXPECT_EQ(o.endpoint.port, 6390);
  EXPECT_EQ(o.endpoint.user, "");
  EXPECT_EQ(o.endpoint.password, "pw");
  EXPECT_EQ(o.endpoint.ca_file, "/etc/ca.pem");
  EXPECT_EQ(o.max_attempts, 5);
}

TEST(RedisUri, Errors) {
  struct Case {
    const char* uri;
    const char* want;
  } cases[] = {
      {"redis://h:6379/s", "missing ?group"},
      {"redis://h:0/s?group=g", "bad port '0'"},
      {"redis://h:70000/s?group=g", "bad port '70000'"},
      {"redis://h:abc/s?group=g", "bad port 'abc'"},
      {"redis://h:/s?group=g", "empty port"},
      {"redis://h:6379/s?group=g&colour=blue", "unknown parameter 'colour'"},
      {"redis://h:6379?group=g", "missing /STREAM"},
      {"redis://h:6379/?group=g", "missing /STREAM"},
      {"redis://h:6379/x/s?group=g", "bad database number 'x'"},
      {"redis://h:6379/1/a/b?group=g", "too many path segments"},
      {"redis://:6379/s?group=g", "missing host"},
      {"redis://h/s?group=g&max_attempts=3", "max_attempts needs dead_letter"},
      {"redis://h/s?group=g&max_attempts=0&dead_letter=d", "max_attempts must be"},
      {"redis://h/s?group=g&dead_letter=s", "dead_letter must differ"},
      {"redis://h/s?group=g&delete=maybe", "delete must be true or false"},
      {"redis://h/s?group=g&maxlen=-1", "maxlen must be a positive integer"},
      {"redis://h/s?group=g&ca=/x.pem", "ca= is only for rediss://"},
      {"redis://h/s?group=", "empty group"},
      {"redis://h/s?group", "malformed parameter"},
      {"redis://user@h/s?group=g", "USER:PASSWORD"},
      {"nats://h/s?group=g", "not a redis"},
      {"redis://h/s%zz?group=g", "percent-escape"},
  };
  for (const auto& c : cases) {
    RedisQueueOptions o;
    std::string err;
    EXPECT_FALSE(ParseRedisQueueUri(c.uri, &o, &err)) << c.uri;
    EXPECT_NE(err.find(c.want), std::string::npos) << c.uri << " → " << err;
    EXPECT_NE(err.find("expected redis[s]://"), std::string::npos) << err;
  }
}

TEST(RedisUri, ErrorsNeverShowThePassword) {
  RedisQueueOptions o;
  std::string err;
  EXPECT_FALSE(ParseRedisQueueUri("redis://bob:hunter2@h:99999/s?group=g", &o, &err));
  EXPECT_EQ(err.find("hunter2"), std::string::npos) << err;
  EXPECT_NE(err.find("redis://bob:***@h:99999/s"), std::string::npos) << err;
  EXPECT_EQ(RedactRedisUri("redis://h:1/s?group=g"), "redis://h:1/s?group=g");
  EXPECT_EQ(RedactRedisUri("rediss://:pw@h/s"), "rediss://:***@h/s");
  EXPECT_EQ(RedactRedisUri("redis://secret@h/s"), "redis://***@h/s");
}

TEST(RedisAckId, RoundTripAndRejects) {
  std::string id;
  int64_t n = 0;
  EXPECT_EQ(FormatRedisAckId("1700000000000-3", 2), "1700000000000-3:2");
  ASSERT_TRUE(ParseRedisAckId("1700000000000-3:2", &id, &n));
  EXPECT_EQ(id, "1700000000000-3");
  EXPECT_EQ(n, 2);
  for (const char* bad : {"", "1-0", "1-0:", "1-0:0", "1-0:-1", "1-0:x", "a-0:1", "1:1", "-1:1",
                          "1-:1", "1-0:+1", "1-0:1 "})
    EXPECT_FALSE(ParseRedisAckId(bad, &id, &n)) << bad;
  EXPECT_TRUE(ValidRedisEntryId("0-0"));
  EXPECT_FALSE(ValidRedisEntryId("0-0-0"));
}

TEST(Resp, EncodeCommandIsBinarySafe) {
  EXPECT_EQ(EncodeCommand({"SET", "k", std::string("a\r\n\0b", 5)}),
            std::string("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\na\r\n\0b\r\n", 31));
  EXPECT_EQ(EncodeCommand({}), "*0\r\n");
  EXPECT_EQ(EncodeCommand({""}), "*1\r\n$0\r\n\r\n");
}

TEST(Resp, ParsesEveryType) {
  RespReply r;
  size_t used = 0;
  std::string err;
  const std::string wire = "*6\r\n+OK\r\n-ERR bad\r\n:-42\r\n$3\r\na\rb\r\n$-1\r\n*-1\r\nrest";
  ASSERT_EQ(ParseRespReply(wire, &r, &used, &err), RespReader::Result::kOk) << err;
  EXPECT_EQ(used, wire.size() - 4);
  ASSERT_EQ(r.elements.size(), 6u);
  EXPECT_EQ(r.elements[0].type, RespReply::Type::kStatus);
  EXPECT_EQ(r.elements[0].str, "OK");
  EXPECT_TRUE(r.elements[1].is_error());
  EXPECT_EQ(r.elements[1].str, "ERR bad");
  EXPECT_EQ(r.elements[2].integer, -42);
  EXPECT_EQ(r.elements[3].str, "a\rb");
  EXPECT_TRUE(r.elements[4].is_nil());
  EXPECT_TRUE(r.elements[5].is_nil());
  // The encoder is the parser's inverse (nil arrays come back as nil bulk strings).
  RespReply again;
  ASSERT_EQ(ParseRespReply(EncodeReply(r), &again, &used, &err), RespReader::Result::kOk);
  EXPECT_EQ(again, r);
}

TEST(Resp, IncompleteUntilTheLastByte) {
  const std::string wire = "*2\r\n$5\r\nhello\r\n:7\r\n";
  for (size_t n = 0; n < wire.size(); ++n) {
    RespReply r;
    size_t used = 0;
    std::string err;
    EXPECT_EQ(ParseRespReply(std::string_view(wire).substr(0, n), &r, &used, &err),
              RespReader::Result::kIncomplete)
        << n << " bytes: " << err;
  }
  RespReader reader;
  std::vector<RespReply> got;
  for (char c : wire + wire) {
    reader.Feed(std::string_view(&c, 1));
    RespReply r;
    std::string err;
    while (reader.Next(&r, &err) == RespReader::Result::kOk) got.push_back(r);
  }
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].elements[0].str, "hello");
  EXPECT_EQ(got[1].elements[1].integer, 7);
  EXPECT_EQ(reader.buffered(), 0u);
}

TEST(Resp, LargeReplyInManyReads) {
  // 1,000 entries of 8 KiB arriving in 64 KiB reads (what a pull of large messages looks like):
  // the reader scans what is buffered on each read and builds the reply once.
  RespReply big = Arr({});
  for (int i = 0; i < 1000; ++i) big.elements.push_back(Bulk(std::string(8192, 'a' + i % 26)));
  const std::string wire = EncodeReply(big);
  RespReader reader;
  RespReply got;
  std::string err;
  int reads = 0;
  for (size_t at = 0; at < wire.size(); at += 65536, ++reads) {
    reader.Feed(std::string_view(wire).substr(at, 65536));
    RespReader::Result r = reader.Next(&got, &err);
    ASSERT_NE(r, RespReader::Result::kError) << err;
    if (r == RespReader::Result::kOk) {
      EXPECT_GE(at + 65536, wire.size()) << "complete before the last read";
      break;
    }
  }
  EXPECT_GT(reads, 100);
  EXPECT_EQ(got, big);
}

TEST(Resp, MalformedRepliesAreErrors) {
  std::string nested;
  for (int i = 0; i < 40; ++i) nested += "*1\r\n";
  nested += ":1\r\n";
  struct Case {
    std::string wire;
    const char* want;
  } cases[] = {
      {"?what\r\n", "unknown reply type"},
      {":12x\r\n", "bad number"},
      {":\r\n", "bad number"},
      {"$-2\r\n", "negative length"},
      {"*-5\r\n", "negative length"},
      {"$3\r\nabcd\r\n", "not followed by CRLF"},
      {"+OK\n", "LF without CR"},
      {"+OK\rX", "CR not followed by LF"},
      {":" + std::string(100, '1') + "\r\n", "longer than"},
      {"$999999999999\r\n", "over the limit"},
      {"*999999999999\r\n", "over the limit"},
      {":99999999999999999999\r\n", "bad number"},
      {"$+3\r\nabc\r\n", "bad number"},
      {nested, "nested deeper"},
      {"*2\r\n:1\r\n!x\r\n", "unknown reply type"},
  };
  for (const auto& c : cases) {
    RespReply r;
    size_t used = 0;
    std::string err;
    EXPECT_EQ(ParseRespReply(c.wire, &r, &used, &err), RespReader::Result::kError) << c.wire;
    EXPECT_NE(err.find(c.want), std::string::npos) << c.wire << " → " << err;
  }
  // A reader that saw a malformed reply stays failed.
  RespReader reader;
  reader.Feed("?bad\r\n+OK\r\n");
  RespReply r;
  std::string err;
  EXPECT_EQ(reader.Next(&r, &err), RespReader::Result::kError);
  EXPECT_EQ(reader.Next(&r, &err), RespReader::Result::kError);
}

TEST(RedisReplies, EntriesBecomeMessages) {
  // XREADGROUP: [[stream, [[id, [f, v, ...]], ...]]]
  RespReply reply =
      Arr({Arr({Bulk("req"),
                Arr({Arr({Bulk("1700000000123-0"),
                          Arr({Bulk("data"), Bulk("{\"id\":\"a\"}"), Bulk("tenant"), Bulk("t1")})}),
                     Arr({Bulk("1700000000124-5"), Arr({Bulk("other"), Bulk("x")})})})})});
  std::vector<Message> msgs;
  std::string err;
  ASSERT_TRUE(ParseRedisReadReply(reply, &msgs, &err)) << err;
  ASSERT_EQ(msgs.size(), 2u);
  EXPECT_EQ(msgs[0].id, "1700000000123-0");
  EXPECT_EQ(msgs[0].ack_id, "1700000000123-0:1");
  EXPECT_EQ(msgs[0].data, "{\"id\":\"a\"}");
  EXPECT_EQ(msgs[0].attributes.at("tenant"), "t1");
  EXPECT_EQ(msgs[0].delivery_attempt, 1);
  EXPECT_EQ(
      std::chrono::duration_cast<std::chrono::milliseconds>(msgs[0].publish_time.time_since_epoch())
          .count(),
      1700000000123);
  // No `data` field: delivered with empty data (the processor answers INVALID_REQUEST).
  EXPECT_EQ(msgs[1].data, "");
  EXPECT_EQ(msgs[1].attributes.at("other"), "x");
  // A BLOCK that timed out.
  msgs.clear();
  ASSERT_TRUE(ParseRedisReadReply(RespReply{}, &msgs, &err));
  EXPECT_TRUE(msgs.empty());
  // Shapes that are not stream replies.
  for (const RespReply& bad :
       {Bulk("x"), Arr({Bulk("req")}),
        Arr({Arr({Bulk("req"), Arr({Arr({Bulk("nope"), Arr({})})})})}),
        Arr({Arr({Bulk("req"), Arr({Arr({Bulk("1-0"), Arr({Bulk("data")})})})})}),
        Arr({Arr({Bulk("req"), Arr({Arr({Bulk("1-0"), Arr({Int(1), Bulk("v")})})})})})}) {
    msgs.clear();
    EXPECT_FALSE(ParseRedisReadReply(bad, &msgs, &err)) << bad.Describe();
  }
}

TEST(RedisReplies, ClaimReplyCarriesDeliveryCounts) {
  RespReply reply =
      Arr({Bulk("1700000000200-0"),
           Arr({Arr({Bulk("1700000000100-0"), Int(3), Arr({Bulk("data"), Bulk("m")})})}), Int(2)});
  std::string cursor, err;
  std::vector<Message> msgs;
  int64_t dead = 0;
  ASSERT_TRUE(ParseRedisClaimReply(reply, &cursor, &msgs, &dead, &err)) << err;
  EXPECT_EQ(cursor, "1700000000200-0");
  EXPECT_EQ(dead, 2);
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(msgs[0].delivery_attempt, 3);
  EXPECT_EQ(msgs[0].ack_id, "1700000000100-0:3");
  RespReply err_reply;
  err_reply.type = RespReply::Type::kError;
  err_reply.str = "NOGROUP No such key";
  EXPECT_FALSE(ParseRedisClaimReply(err_reply, &cursor, &msgs, &dead, &err));
  EXPECT_EQ(err, "NOGROUP No such key");
  EXPECT_FALSE(ParseRedisClaimReply(Arr({Bulk("0-0"), Arr({})}), &cursor, &msgs, &dead, &err));
  // A delivery count below 1 cannot be a claimed delivery (found by fuzz/resp_fuzz.cc).
  EXPECT_FALSE(
      ParseRedisClaimReply(Arr({Bulk("0-0"), Arr({Arr({Bulk("1-0"), Int(0), Arr({})})}), Int(0)}),
                           &cursor, &msgs, &dead, &err));
  EXPECT_NE(err.find("delivery count 0"), std::string::npos) << err;
  EXPECT_FALSE(
      ParseRedisClaimReply(Arr({Bulk("zz"), Arr({}), Int(0)}), &cursor, &msgs, &dead, &err));
}

TEST(RedisQueue, RegisteredForBothSchemes) {
  auto schemes = QueueSchemes();
  EXPECT_NE(std::find(schemes.begin(), schemes.end(), "redis"), schemes.end());
  EXPECT_NE(std::find(schemes.begin(), schemes.end(), "rediss"), schemes.end());
  // A bad URI fails before any network I/O, with the backend's own message.
  for (const char* uri : {"redis://127.0.0.1:1/s", "REDISS://:pw@127.0.0.1:1/s"}) {
    std::string err;
    EXPECT_EQ(OpenQueue(uri, &err), nullptr);
    EXPECT_NE(err.find("missing ?group=NAME"), std::string::npos) << err;
    EXPECT_EQ(err.find(":pw@"), std::string::npos) << err;
  }
}

// A one-connection fake server on loopback: reads what the client sends, answers `reply`
// once it has seen `expect_bytes` bytes (an empty reply: never answers), keeps the connection
// open until the test ends.
class FakeServer {
 public:
  FakeServer(std::string reply, size_t expect_bytes)
      : acceptor_(io_, {boost::asio::ip::make_address("127.0.0.1"), 0}) {
    port_ = acceptor_.local_endpoint().port();
    thread_ = std::thread([this, reply = std::move(reply), expect_bytes] {
      boost::system::error_code ec;
      boost::asio::ip::tcp::socket sock(io_);
      acceptor_.accept(sock, ec);
      if (ec) return;
      std::string got;
      char buf[4096];
      while (got.size() < expect_bytes) {
        size_t n = sock.read_some(boost::asio::buffer(buf), ec);
        if (ec) return;
        got.append(buf, n);
      }
      received_ = got;
      if (!reply.empty()) boost::asio::write(sock, boost::asio::buffer(reply), ec);
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return done_; });
    });
  }
  ~FakeServer() {
    {
      std::lock_guard lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    boost::system::error_code ec;
    acceptor_.close(ec);
    thread_.join();
  }
  uint16_t port() const { return port_; }

 private:
  boost::asio::io_context io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  uint16_t port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::string received_;
};

RespEndpoint Local(uint16_t port) {
  RespEndpoint e;
  e.host = "127.0.0.1";
  e.port = port;
  return e;
}

auto Soon(int ms) { return std::chrono::steady_clock::now() + std::chrono::milliseconds(ms); }

TEST(RespConnection, CallsAndReadsAReply) {
  const std::string ping = EncodeCommand({"PING"});
  FakeServer server("+PONG\r\n", ping.size());
  RespConnection c(Local(server.port()));
  std::string err;
  ASSERT_TRUE(c.Connect(Soon(2000), &err)) << err;
  RespReply r;
  ASSERT_TRUE(c.Call({"PING"}, &r, Soon(2000), &err)) << err;
  EXPECT_EQ(r.str, "PONG");
}

TEST(RespConnection, MalformedReplyClosesTheConnection) {
  FakeServer server("?junk\r\n", 1);
  RespConnection c(Local(server.port()));
  std::string err;
  ASSERT_TRUE(c.Connect(Soon(2000), &err)) << err;
  RespReply r;
  EXPECT_FALSE(c.Call({"PING"}, &r, Soon(2000), &err));
  EXPECT_NE(err.find("malformed reply: unknown reply type"), std::string::npos) << err;
  EXPECT_FALSE(c.connected());
}

TEST(RespConnection, SilentServerTimesOutAtTheDeadline) {
  FakeServer server("", 1);
  RespConnection c(Local(server.port()));
  std::string err;
  ASSERT_TRUE(c.Connect(Soon(2000), &err)) << err;
  RespReply r;
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(c.Call({"PING"}, &r, Soon(200), &err));
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(took, std::chrono::milliseconds(150));
  EXPECT_LT(took, std::chrono::milliseconds(2000));
  EXPECT_NE(err.find("read: "), std::string::npos) << err;
  EXPECT_FALSE(c.connected());
}

TEST(RespConnection, RefusedCredentialsArePermanentAndNotEchoed) {
  RespEndpoint e;
  const std::string auth = EncodeCommand({"AUTH", "bob", "hunter2"});
  FakeServer server("-WRONGPASS invalid username-password pair or user is disabled.\r\n",
                    auth.size());
  e = Local(server.port());
  e.user = "bob";
  e.password = "hunter2";
  RespConnection c(e);
  std::string err;
  bool permanent = false;
  EXPECT_FALSE(c.Connect(Soon(2000), &err, &permanent));
  EXPECT_TRUE(permanent);
  EXPECT_NE(err.find("authentication as user 'bob' refused"), std::string::npos) << err;
  EXPECT_NE(err.find("WRONGPASS"), std::string::npos) << err;
  EXPECT_EQ(err.find("hunter2"), std::string::npos) << err;
}

TEST(RespConnection, NothingListeningIsNotPermanent) {
  uint16_t port;
  {
    FakeServer server("", 0);  // accepts once; a second connect is refused after it closes
    port = server.port();
    RespConnection probe(Local(port));
    std::string err;
    ASSERT_TRUE(probe.Connect(Soon(2000), &err)) << err;
  }
  RespConnection c(Local(port));
  std::string err;
  bool permanent = true;
  EXPECT_FALSE(c.Connect(Soon(2000), &err, &permanent));
  EXPECT_FALSE(permanent);
  EXPECT_NE(err.find("connecting to 127.0.0.1:"), std::string::npos) << err;
}

}  // namespace
}  // namespace tidegate::queue
