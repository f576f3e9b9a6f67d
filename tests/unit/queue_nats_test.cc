// The NATS JetStream queue's URI parsing and pure helpers (no server: the backend against a
// real nats-server is tests/integration/async_nats.test.mjs), plus opening a URI whose server
// is not there (a refused loopback port): a clear, bounded error.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>

#include "queue/nats_queue.h"
#include "queue/queue.h"

namespace tidegate::queue {
namespace {

using std::chrono::milliseconds;

NatsQueueOptions Parse(const std::string& uri) {
  NatsQueueOptions o;
  Status st = ParseNatsUri(uri, &o);
  EXPECT_TRUE(st.ok) << uri << ": " << st.error;
  return o;
}

std::string ParseError(const std::string& uri) {
  NatsQueueOptions o;
  Status st = ParseNatsUri(uri, &o);
  EXPECT_FALSE(st.ok) << uri << " parsed";
  return st.error;
}

TEST(NatsUri, MinimalGetsDefaults) {
  NatsQueueOptions o = Parse("nats://127.0.0.1/REQ");
  EXPECT_FALSE(o.tls);
  ASSERT_EQ(o.servers.size(), 1u);
  EXPECT_EQ(o.servers[0], "127.0.0.1:4222");
  EXPECT_EQ(o.stream, "REQ");
  EXPECT_EQ(o.subject, "REQ");  // the stream name
  EXPECT_EQ(o.consumer, "");    // publish only
  EXPECT_FALSE(o.ack_wait.has_value());
  EXPECT_EQ(o.max_attempts, 0);
  EXPECT_EQ(o.dead_letter, "");
  EXPECT_EQ(o.timeout, milliseconds(5000));
  EXPECT_TRUE(o.user.empty() && o.password.empty() && o.token.empty() && o.creds.empty());
}

TEST(NatsUri, EveryParameter) {
  NatsQueueOptions o = Parse(
      "nats://h1:4223,h2,[::1]:5000/jobs?consumer=workers&subject=jobs.in&ack_wait=45s"
      "&max_attempts=3&dead_letter=jobs.dead&creds=%2Fetc%2Fu.creds&timeout=750ms");
  EXPECT_EQ(o.servers, (std::vector<std::string>{"h1:4223", "h2:4222", "[::1]:5000"}));
  EXPECT_EQ(o.stream, "jobs");
  EXPECT_EQ(o.consumer, "workers");
  EXPECT_EQ(o.subject, "jobs.in");
  ASSERT_TRUE(o.ack_wait.has_value());
  EXPECT_EQ(*o.ack_wait, milliseconds(45000));
  EXPECT_EQ(o.max_attempts, 3);
  EXPECT_EQ(o.dead_letter, "jobs.dead");
  EXPECT_EQ(o.creds, "/etc/u.creds");
  EXPECT_EQ(o.timeout, milliseconds(750));
}

TEST(NatsUri, Credentials) {
  NatsQueueOptions a = Parse("nats://alice:s%40cr%3At@127.0.0.1:4222/REQ");
  EXPECT_EQ(a.user, "alice");
  EXPECT_EQ(a.password, "s@cr:t");
  EXPECT_EQ(a.token, "");
  NatsQueueOptions t = Parse("nats://tok3n@127.0.0.1:4222/REQ");
  EXPECT_EQ(t.token, "tok3n");
  EXPECT_EQ(t.user, "");
  NatsQueueOptions empty_pass = Parse("nats://bob:@127.0.0.1/REQ");
  EXPECT_EQ(empty_pass.user, "bob");
  EXPECT_EQ(empty_pass.password, "");
}

TEST(NatsUri, TlsSchemeAndFiles) {
  NatsQueueOptions o = Parse("TLS://nats.example.com/REQ?ca=/ca.pem&cert=/c.pem&key=/k.pem");
  EXPECT_TRUE(o.tls);
  EXPECT_EQ(o.servers[0], "nats.example.com:4222");
  EXPECT_EQ(o.ca, "/ca.pem");
  EXPECT_EQ(o.cert, "/c.pem");
  EXPECT_EQ(o.key, "/k.pem");
  EXPECT_NE(ParseError("nats://h/REQ?ca=/ca.pem").find("tls://"), std::string::npos);
  EXPECT_NE(ParseError("tls://h/REQ?cert=/c.pem").find("go together"), std::string::npos);
}

TEST(NatsUri, DeadLetterRules) {
  EXPECT_EQ(Parse("nats://h/REQ?consumer=c&dead_letter=dead").max_attempts, 5);
  EXPECT_NE(ParseError("nats://h/REQ?consumer=c&max_attempts=3").find("dead_letter"),
            std::string::npos);
  EXPECT_NE(ParseError("nats://h/REQ?consumer=c&dead_letter=REQ").find("differ"),
            std::string::npos);
  EXPECT_NE(ParseError("nats://h/REQ?dead_letter=dead").find("consumer="), std::string::npos);
  ParseError("nats://h/REQ?consumer=c&dead_letter=d&max_attempts=0");
  ParseError("nats://h/REQ?consumer=c&dead_letter=d&max_attempts=x");
  ParseError("nats://h/REQ?consumer=c&dead_letter=dead.*");
}

TEST(NatsUri, Rejections) {
  struct Case {
    const char* uri;
    const char* says;
  } cases[] = {
      {"redis://h/REQ", "scheme"},
      {"nats://h", "STREAM"},
      {"nats://h/", "STREAM"},
      {"nats:///REQ", "host"},
      {"nats://h/a.b", "stream name"},
      {"nats://h/a/b", "stream name"},
      {"nats://h:0/REQ", "port"},
      {"nats://h:99999/REQ", "port"},
      {"nats://h:/REQ", "port"},
      {"nats://h,/REQ", "empty host"},
      {"nats://[::1/REQ", "unclosed"},
      {"nats://h/REQ?queue=x", "unknown parameter 'queue'"},
      {"nats://h/REQ?consumer=a.b", "consumer name"},
      {"nats://h/REQ?subject=a.*", "literal"},
      {"nats://h/REQ?subject=a..b", "literal"},
      {"nats://h/REQ?subject=a%20b", "literal"},
      {"nats://h/REQ?consumer=c&ack_wait=10ms", "ack_wait"},
      {"nats://h/REQ?consumer=c&ack_wait=forever", "ack_wait"},
      {"nats://h/REQ?ack_wait=30s", "consumer="},
      {"nats://h/REQ?timeout=1ms", "timeout"},
      {"nats://h/REQ?consumer=a&consumer=b", "twice"},
      {"nats://h/REQ?consumer", "malformed"},
      {"nats://h/REQ?creds=", "file name"},
      {"nats://u:p@h/REQ?creds=/x.creds", "only one"},
      {"nats://:p@h/REQ", "user name"},
      {"nats://h/REQ?subject=x%2", "malformed"},
  };
  for (const auto& c : cases) {
    std::string e = ParseError(c.uri);
    EXPECT_NE(e.find(c.says), std::string::npos) << c.uri << " → " << e;
    EXPECT_NE(e.find("nats: bad queue URI"), std::string::npos) << e;
  }
}

TEST(NatsUri, ErrorsNeverShowThePassword) {
  std::string e = ParseError("nats://alice:hunter2@h/REQ?bogus=1");
  EXPECT_EQ(e.find("hunter2"), std::string::npos) << e;
  EXPECT_NE(e.find("alice:***@h"), std::string::npos) << e;
  e = ParseError("nats://s3cr3tt0ken@h/REQ?bogus=1");
  EXPECT_EQ(e.find("s3cr3tt0ken"), std::string::npos) << e;
}

TEST(NatsUri, Redact) {
  EXPECT_EQ(RedactNatsUri("nats://u:p@h:1/S?consumer=c"), "nats://u:***@h:1/S?consumer=c");
  EXPECT_EQ(RedactNatsUri("tls://tok@h/S"), "tls://***@h/S");
  EXPECT_EQ(RedactNatsUri("nats://h/S?x=a@b"), "nats://h/S?x=a@b");  // '@' after the host
  EXPECT_EQ(RedactNatsUri("nats://h/S"), "nats://h/S");
}

TEST(NatsSubjects, Syntax) {
  EXPECT_TRUE(ValidNatsSubject("a", false));
  EXPECT_TRUE(ValidNatsSubject("a.b-c.d_e", false));
  EXPECT_FALSE(ValidNatsSubject("", false));
  EXPECT_FALSE(ValidNatsSubject("a.", false));
  EXPECT_FALSE(ValidNatsSubject(".a", false));
  EXPECT_FALSE(ValidNatsSubject("a b", false));
  EXPECT_FALSE(ValidNatsSubject("a.*", false));
  EXPECT_TRUE(ValidNatsSubject("a.*", true));
  EXPECT_TRUE(ValidNatsSubject("a.>", true));
  EXPECT_FALSE(ValidNatsSubject("a.>.b", true));
  EXPECT_FALSE(ValidNatsSubject("a*", true));
}

TEST(NatsSubjects, Names) {
  EXPECT_TRUE(ValidNatsName("REQ"));
  EXPECT_TRUE(ValidNatsName("my-stream_1"));
  for (const char* bad : {"", "a.b", "a*", "a>", "a b", "a/b", "a\\b"})
    EXPECT_FALSE(ValidNatsName(bad)) << bad;
  EXPECT_FALSE(ValidNatsName(std::string(256, 'x')));
}

TEST(NatsSubjects, WildcardMatching) {
  EXPECT_TRUE(NatsSubjectMatches("a.b", "a.b"));
  EXPECT_FALSE(NatsSubjectMatches("a.b", "a.c"));
  EXPECT_FALSE(NatsSubjectMatches("a.b", "a.b.c"));
  EXPECT_TRUE(NatsSubjectMatches("a.*", "a.b"));
  EXPECT_FALSE(NatsSubjectMatches("a.*", "a.b.c"));
  EXPECT_FALSE(NatsSubjectMatches("a.*", "a"));
  EXPECT_TRUE(NatsSubjectMatches("a.>", "a.b.c"));
  EXPECT_FALSE(NatsSubjectMatches("a.>", "a"));
  EXPECT_TRUE(NatsSubjectMatches(">", "x"));
  EXPECT_TRUE(NatsSubjectMatches("*.b.>", "x.b.y.z"));
}

TEST(NatsIds, AckIdRoundTrip) {
  EXPECT_EQ(NatsAckId(42, 3), "42.3");
  uint64_t seq = 0, n = 0;
  ASSERT_TRUE(ParseNatsAckId("42.3", &seq, &n));
  EXPECT_EQ(seq, 42u);
  EXPECT_EQ(n, 3u);
  for (const char* bad : {"", "42", "42.", ".3", "0.1", "1.0", "a.b", "1.2.3", "-1.2"})
    EXPECT_FALSE(ParseNatsAckId(bad, &seq, &n)) << bad;
}

TEST(NatsIds, MessageIdNamesStreamSequenceAndIncarnation) {
  std::string a = NatsMessageId("REQ", 7, 1700000000123456789LL);
  EXPECT_EQ(a.rfind("REQ:7:", 0), 0u) << a;
  // A re-created stream (another creation time) never reuses an id.
  EXPECT_NE(a, NatsMessageId("REQ", 7, 1700000000123456790LL));
  EXPECT_NE(a, NatsMessageId("REQ", 8, 1700000000123456789LL));
  EXPECT_EQ(NatsMessageId("S", 1, 0), "S:1:0");
}

TEST(NatsHeaders, WhatNatsCanCarry) {
  EXPECT_TRUE(ValidNatsHeader("id", "abc"));
  EXPECT_TRUE(ValidNatsHeader("error_code", "DEADLINE_EXCEEDED"));
  EXPECT_TRUE(ValidNatsHeader("x", ""));
  EXPECT_FALSE(ValidNatsHeader("", "v"));
  EXPECT_FALSE(ValidNatsHeader("a:b", "v"));
  EXPECT_FALSE(ValidNatsHeader("a b", "v"));
  EXPECT_FALSE(ValidNatsHeader("k\xc3\xa9", "v"));
  EXPECT_FALSE(ValidNatsHeader("k", "line\r\nInjected: 1"));
}

TEST(NatsRegistry, SchemesRegistered) {
  auto schemes = QueueSchemes();
  EXPECT_NE(std::find(schemes.begin(), schemes.end(), "nats"), schemes.end());
  EXPECT_NE(std::find(schemes.begin(), schemes.end(), "tls"), schemes.end());
}

int ClosedPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  int port = ntohs(addr.sin_port);
  close(fd);
  return port;
}

TEST(NatsOpen, NoServerIsAClearBoundedError) {
  const std::string uri = "nats://alice:hunter2@127.0.0.1:" + std::to_string(ClosedPort()) +
                          "/REQ?consumer=c&timeout=500ms";
  auto t0 = std::chrono::steady_clock::now();
  std::string error;
  auto q = OpenQueue(uri, &error);
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(q, nullptr);
  EXPECT_NE(error.find("cannot connect"), std::string::npos) << error;
  EXPECT_NE(error.find("alice:***@127.0.0.1"), std::string::npos) << error;
  EXPECT_EQ(error.find("hunter2"), std::string::npos) << error;
  EXPECT_LT(took, std::chrono::seconds(5));
}

TEST(NatsOpen, BadUriThroughTheRegistry) {
  std::string error;
  EXPECT_EQ(OpenQueue("nats://h/REQ?nope=1", &error), nullptr);
  EXPECT_NE(error.find("unknown parameter 'nope'"), std::string::npos) << error;
}

}  // namespace
}  // namespace tidegate::queue
