// Unit tests of the Pub/Sub queue backend and GCP auth: URI parsing, REST request/response
// shaping (through a fake HttpClient — nothing here touches the network), JWT assembly and
// signature (with an RSA key generated at test time), token caching.
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <unistd.h>

#include <cstdlib>
#include <deque>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "common/datetime.h"
#include "gtest/gtest.h"
#include "queue/gcp_auth.h"
#include "queue/pubsub_queue.h"
#include "queue/queue.h"

namespace tidegate::queue {
namespace {

using Json = nlohmann::json;
using namespace std::chrono_literals;

// ---- Fakes & helpers ------------------------------------------------------------------------

class FakeHttp : public gcp::HttpClient {
 public:
  using Handler = std::function<gcp::HttpResponse(const gcp::HttpRequest&)>;
  explicit FakeHttp(Handler h) : handler_(std::move(h)) {}
  gcp::HttpResponse Do(const gcp::HttpRequest& req) override {
    requests.push_back(req);
    return handler_(req);
  }
  std::vector<gcp::HttpRequest> requests;

 private:
  Handler handler_;
};

gcp::HttpResponse Resp(long status, std::string body) { return {status, std::move(body), ""}; }

std::string Header(const gcp::HttpRequest& r, std::string_view name) {
  for (const auto& [k, v] : r.headers)
    if (k == name) return v;
  return "";
}

class StaticToken : public gcp::TokenSource {
 public:
  Status Token(std::string* t) override {
    *t = "tok123";
    return Status::Ok();
  }
};

// Scoped environment variable.
class EnvVar {
 public:
  EnvVar(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) {
      setenv(name, value, 1);
    } else {
      unsetenv(name);
    }
  }
  ~EnvVar() {
    if (old_) {
      setenv(name_, old_->c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

// A fresh 2048-bit RSA key (never a real credential).
struct TestKey {
  EVP_PKEY* pkey = nullptr;
  std::string pem;
  TestKey() {
    pkey = EVP_RSA_gen(2048);
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(bio, pkey, nullptr, nullptr, 0, nullptr, nullptr);
    char* data = nullptr;
    long n = BIO_get_mem_data(bio, &data);
    pem.assign(data, n);
    BIO_free(bio);
  }
  ~TestKey() { EVP_PKEY_free(pkey); }
  bool Verify(std::string_view data, std::string_view sig) const {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    bool ok =
        EVP_DigestVerifyInit(ctx, nullptr, EVP_sha256(), nullptr, pkey) == 1 &&
        EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                         reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1;
    EVP_MD_CTX_free(ctx);
    return ok;
  }
};

const TestKey& Key() {
  static TestKey* key = new TestKey;
  return *key;
}

PubSubTarget MustParse(std::string_view uri) {
  PubSubTarget t;
  Status st = ParsePubSubUri(uri, &t);
  EXPECT_TRUE(st.ok) << st.error;
  return t;
}

// ---- URIs -----------------------------------------------------------------------------------

TEST(PubSubUri, SubscriptionAndTopicForms) {
  PubSubTarget s = MustParse("pubsub://projects/my-proj/subscriptions/requests-sub");
  EXPECT_EQ(s.project, "my-proj");
  EXPECT_EQ(s.subscription, "projects/my-proj/subscriptions/requests-sub");
  EXPECT_EQ(s.topic, "");

  PubSubTarget t = MustParse("pubsub://projects/my-proj/topics/results");
  EXPECT_EQ(t.subscription, "");
  EXPECT_EQ(t.topic, "projects/my-proj/topics/results");

  PubSubTarget st = MustParse("pubsub://projects/p1/subscriptions/sub?topic=out");
  EXPECT_EQ(st.topic, "projects/p1/topics/out");
  PubSubTarget full =
      MustParse("PUBSUB://projects/p1/subscriptions/sub?topic=projects/other/topics/out");
  EXPECT_EQ(full.topic, "projects/other/topics/out");
  MustParse("pubsub://projects/example.com:proj/topics/a.b~c+d%25e_f-g");
}

TEST(PubSubUri, RejectsBadUrisWithClearErrors) {
  for (const char* bad :
       {"sqlite:///x.db", "pubsub://", "pubsub://projects/p/subscriptions",
        "pubsub://projects/p/subscriptions/s/extra", "pubsub://proj/p/topics/abc",
        "pubsub://projects/p/queues/abc", "pubsub://projects/p/topics/ab",
        "pubsub://projects/p/topics/1abc", "pubsub://projects/P/topics/abc",
        "pubsub://projects/p/topics/abc?topic=xyz", "pubsub://projects/p/subscriptions/abc?foo=bar",
        "pubsub://projects/p/subscriptions/abc?topic=x",
        "pubsub://projects/p/subscriptions/abc?topic=projects/p/subs/xyz"}) {
    PubSubTarget t;
    Status st = ParsePubSubUri(bad, &t);
    EXPECT_FALSE(st.ok) << bad;
    EXPECT_NE(st.error.find(bad), std::string::npos) << st.error;
    EXPECT_NE(st.error.find("pubsub://projects/P/subscriptions/S"), std::string::npos) << st.error;
  }
}

TEST(PubSubUri, RegistryOpensWithEmulatorEndpoint) {
  EnvVar emu("PUBSUB_EMULATOR_HOST", "127.0.0.1:1");
  std::string err;
  auto q = OpenQueue("pubsub://projects/p/subscriptions/abc", &err);
  ASSERT_NE(q, nullptr) << err;
  EXPECT_EQ(q->kind(), "pubsub");
  EXPECT_EQ(q->uri(), "pubsub://projects/p/subscriptions/abc");
  EXPECT_EQ(static_cast<PubSubQueue*>(q.get())->endpoint(), "http://127.0.0.1:1");
  EXPECT_EQ(OpenQueue("pubsub://projects/p/nope/abc", &err), nullptr);
  EXPECT_NE(err.find("kind must be subscriptions or topics"), std::string::npos) << err;
}

TEST(PubSubUri, BadCredentialsFileFailsAtOpen) {
  EnvVar emu("PUBSUB_EMULATOR_HOST", nullptr);
  {
    EnvVar creds("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/key.json");
    std::string err;
    EXPECT_EQ(OpenQueue("pubsub://projects/p/topics/abc", &err), nullptr);
    EXPECT_NE(err.find("/nonexistent/key.json"), std::string::npos) << err;
  }
  std::string path = ::testing::TempDir() + "/tidegate_user_creds.json";
  std::ofstream(path) << R"({"type": "authorized_user", "client_id": "x"})";
  EnvVar creds("GOOGLE_APPLICATION_CREDENTIALS", path.c_str());
  std::string err;
  EXPECT_EQ(OpenQueue("pubsub://projects/p/topics/abc", &err), nullptr);
  EXPECT_NE(err.find("authorized_user"), std::string::npos) << err;
  std::remove(path.c_str());
}

// ---- Shaping --------------------------------------------------------------------------------

TEST(PubSubShaping, RequestBodies) {
  EXPECT_EQ(Json::parse(PubSubPullBody(7)),
            Json::parse(R"({"maxMessages":7,"returnImmediately":true})"));
  EXPECT_EQ(Json::parse(PubSubPullBody(5000))["maxMessages"], 1000);
  EXPECT_EQ(Json::parse(PubSubAckBody({"a", "b"})), Json::parse(R"({"ackIds":["a","b"]})"));
  EXPECT_EQ(Json::parse(PubSubModifyAckDeadlineBody({"a"}, 0)),
            Json::parse(R"({"ackIds":["a"],"ackDeadlineSeconds":0})"));
  Json pub = Json::parse(PubSubPublishBody(std::string("hi\0\xff", 4), {{"k", "v"}}));
  EXPECT_EQ(pub, Json::parse(R"({"messages":[{"data":"aGkA/w==","attributes":{"k":"v"}}]})"));
  EXPECT_FALSE(Json::parse(PubSubPublishBody("x", {}))["messages"][0].contains("attributes"));
}

TEST(PubSubShaping, ParsesPullResponse) {
  const char* body = R"({
    "receivedMessages": [{
      "ackId": "projects/tidegate-test/subscriptions/reqsub:2",
      "message": {"data": "aGVsbG8=", "attributes": {"a": "b"}, "messageId": "1",
                  "publishTime": "2026-11-23T13:28:57.600Z"},
      "deliveryAttempt": 2
    }, {
      "ackId": "ack-2",
      "message": {"messageId": "9", "publishTime": "2024-01-02T03:04:05.123456789Z"}
    }]})";
  std::vector<Message> msgs;
  Status st = ParsePubSubPullResponse(body, &msgs);
  ASSERT_TRUE(st.ok) << st.error;
  ASSERT_EQ(msgs.size(), 2u);
  EXPECT_EQ(msgs[0].ack_id, "projects/tidegate-test/subscriptions/reqsub:2");
  EXPECT_EQ(msgs[0].id, "1");
  EXPECT_EQ(msgs[0].data, "hello");
  EXPECT_EQ(msgs[0].attributes, (std::map<std::string, std::string>{{"a", "b"}}));
  EXPECT_EQ(msgs[0].delivery_attempt, 2);
  EXPECT_EQ(
      std::chrono::duration_cast<std::chrono::milliseconds>(msgs[0].publish_time.time_since_epoch())
          .count(),
      1795440537600);
  EXPECT_EQ(msgs[1].delivery_attempt, 1);  // no dead-letter policy → absent → 1
  EXPECT_EQ(msgs[1].data, "");

  msgs.clear();
  EXPECT_TRUE(ParsePubSubPullResponse("{}", &msgs).ok);
  EXPECT_TRUE(msgs.empty());
  EXPECT_FALSE(ParsePubSubPullResponse("not json", &msgs).ok);
  EXPECT_FALSE(ParsePubSubPullResponse(
                   R"({"receivedMessages":[{"ackId":"a","message":{"data":"!!"}}]})", &msgs)
                   .ok);
  EXPECT_FALSE(ParsePubSubPullResponse(R"({"receivedMessages":[{"message":{}}]})", &msgs).ok);

  std::string id;
  EXPECT_TRUE(ParsePubSubPublishResponse(R"({"messageIds":["42"]})", &id).ok);
  EXPECT_EQ(id, "42");
  EXPECT_FALSE(ParsePubSubPublishResponse(R"({"messageIds":[]})", &id).ok);
}

TEST(PubSubShaping, AckDeadlineClampAndTimes) {
  EXPECT_EQ(PubSubAckDeadlineSeconds(0ms), 10);
  EXPECT_EQ(PubSubAckDeadlineSeconds(10001ms), 11);
  EXPECT_EQ(PubSubAckDeadlineSeconds(60s), 60);
  EXPECT_EQ(PubSubAckDeadlineSeconds(3600s), 600);
  std::chrono::system_clock::time_point a, b;
  ASSERT_TRUE(ParseRfc3339("1970-01-01T00:00:01Z", &a));
  EXPECT_EQ(a.time_since_epoch(), std::chrono::seconds(1));
  ASSERT_TRUE(ParseRfc3339("1970-01-01T02:00:01.5+02:00", &b));
  EXPECT_EQ(b.time_since_epoch(), std::chrono::milliseconds(1500));
  EXPECT_FALSE(ParseRfc3339("1970-01-01 00:00:01Z", &a));
  EXPECT_FALSE(ParseRfc3339("1970-02-30T00:00:01Z", &a));
  EXPECT_FALSE(ParseRfc3339("1970-01-01T00:00:01", &a));
}

TEST(GcpEncoding, Base64RoundTrips) {
  EXPECT_EQ(gcp::Base64Encode(""), "");
  EXPECT_EQ(gcp::Base64Encode("f"), "Zg==");
  EXPECT_EQ(gcp::Base64Encode("fo"), "Zm8=");
  EXPECT_EQ(gcp::Base64Encode("foo"), "Zm9v");
  EXPECT_EQ(gcp::Base64UrlEncode("\xfb\xff"), "-_8");
  std::string all;
  for (int i = 0; i < 256; ++i) all += char(i);
  for (size_t n = 0; n <= all.size(); n += 37) {
    std::string in = all.substr(0, n), out;
    ASSERT_TRUE(gcp::Base64Decode(gcp::Base64Encode(in), &out));
    EXPECT_EQ(out, in);
    ASSERT_TRUE(gcp::Base64Decode(gcp::Base64UrlEncode(in), &out));
    EXPECT_EQ(out, in);
  }
  std::string out;
  EXPECT_FALSE(gcp::Base64Decode("a b=", &out));
  EXPECT_FALSE(gcp::Base64Decode("abcde", &out));
  EXPECT_EQ(gcp::UrlFormEncode("a:b/c d"), "a%3Ab%2Fc%20d");
  EXPECT_EQ(gcp::BodyExcerpt("{\n  \"error\": 1\n}"), "{ \"error\": 1 }");
  EXPECT_EQ(gcp::BodyExcerpt(std::string(1000, 'x'), 10), std::string(10, 'x') + "...");
}

// ---- PubSubQueue over a fake HTTP client ----------------------------------------------------

constexpr char kOneMessage[] = R"({"receivedMessages":[{"ackId":"A1","message":{
    "data":"cGF5bG9hZA==","messageId":"m1","publishTime":"2026-01-01T00:00:00Z"}}]})";

struct QueueFixture {
  std::shared_ptr<FakeHttp> http;
  std::unique_ptr<PubSubQueue> q;
  QueueFixture(std::string uri, FakeHttp::Handler h) {
    http = std::make_shared<FakeHttp>(std::move(h));
    PubSubOptions o;
    o.endpoint = "http://emu:8085/";
    o.http = http;
    o.tokens = std::make_shared<StaticToken>();
    o.call_timeout = 1234ms;
    o.retry_base = 1ms;
    PubSubTarget t = MustParse(uri);
    q = std::make_unique<PubSubQueue>(uri, t, o);
  }
};

TEST(PubSubQueueFake, PullLeasesWhenDeadlineDiffersAndShapesRequests) {
  QueueFixture f("pubsub://projects/p/subscriptions/sub", [](const gcp::HttpRequest& r) {
    if (r.method == "GET") return Resp(200, R"({"ackDeadlineSeconds": 10})");
    if (r.url.ends_with(":pull")) return Resp(200, kOneMessage);
    return Resp(200, "{}");
  });
  std::vector<Message> out;
  Status st = f.q->Pull(5, 30s, 0ms, &out);
  ASSERT_TRUE(st.ok) << st.error;
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].data, "payload");
  EXPECT_EQ(out[0].id, "m1");
  ASSERT_EQ(f.http->requests.size(), 3u);
  const auto& get = f.http->requests[0];
  EXPECT_EQ(get.url, "http://emu:8085/v1/projects/p/subscriptions/sub");
  const auto& pull = f.http->requests[1];
  EXPECT_EQ(pull.method, "POST");
  EXPECT_EQ(pull.url, "http://emu:8085/v1/projects/p/subscriptions/sub:pull");
  EXPECT_EQ(Json::parse(pull.body)["maxMessages"], 5);
  EXPECT_EQ(Header(pull, "Authorization"), "Bearer tok123");
  EXPECT_EQ(Header(pull, "Content-Type"), "application/json");
  EXPECT_EQ(pull.timeout, 1234ms);
  const auto& mod = f.http->requests[2];
  EXPECT_EQ(mod.url, "http://emu:8085/v1/projects/p/subscriptions/sub:modifyAckDeadline");
  EXPECT_EQ(Json::parse(mod.body), Json::parse(R"({"ackIds":["A1"],"ackDeadlineSeconds":30})"));

  // Lease equal to the subscription default: no modifyAckDeadline; the GET is cached.
  f.http->requests.clear();
  out.clear();
  ASSERT_TRUE(f.q->Pull(5, 10s, 0ms, &out).ok);
  ASSERT_EQ(f.http->requests.size(), 1u);
  EXPECT_TRUE(f.http->requests[0].url.ends_with(":pull"));
}

TEST(PubSubQueueFake, PullPollsUntilWaitAndHandsBackOnLeaseFailure) {
  int pulls = 0;
  QueueFixture f("pubsub://projects/p/subscriptions/sub", [&](const gcp::HttpRequest& r) {
    if (r.method == "GET") return Resp(403, "denied");  // deadline unknown → always modify
    if (r.url.ends_with(":pull")) return ++pulls < 3 ? Resp(200, "{}") : Resp(200, kOneMessage);
    return Resp(200, "{}");
  });
  std::vector<Message> out;
  ASSERT_TRUE(f.q->Pull(1, 10s, 0ms, &out).ok);  // wait 0: exactly one attempt
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(pulls, 1);
  ASSERT_TRUE(f.q->Pull(1, 10s, 5s, &out).ok);
  EXPECT_EQ(pulls, 3);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(f.http->requests.back().url.ends_with(":modifyAckDeadline"));

  // Lease fails → the messages are handed back (deadline 0) and Pull fails.
  QueueFixture g("pubsub://projects/p/subscriptions/sub", [&](const gcp::HttpRequest& r) {
    if (r.method == "GET") return Resp(200, R"({"ackDeadlineSeconds": 10})");
    if (r.url.ends_with(":pull")) return Resp(200, kOneMessage);
    if (Json::parse(r.body)["ackDeadlineSeconds"] == 0) return Resp(200, "{}");
    return Resp(400, R"({"error":{"message":"bad deadline"}})");
  });
  out.clear();
  Status st = g.q->Pull(1, 60s, 0ms, &out);
  EXPECT_FALSE(st.ok);
  EXPECT_TRUE(out.empty());
  EXPECT_NE(st.error.find("HTTP 400"), std::string::npos) << st.error;
  EXPECT_EQ(Json::parse(g.http->requests.back().body)["ackDeadlineSeconds"], 0);
}

TEST(PubSubQueueFake, AckNackExtendPublish) {
  QueueFixture f("pubsub://projects/p/subscriptions/sub?topic=out", [](const gcp::HttpRequest& r) {
    if (r.url.ends_with(":publish")) return Resp(200, R"({"messageIds":["77"]})");
    return Resp(200, "{}");
  });
  ASSERT_TRUE(f.q->Ack({"a", "b"}).ok);
  ASSERT_TRUE(f.q->Nack({"c"}).ok);
  ASSERT_TRUE(f.q->Extend({"d"}, 45s).ok);
  std::string id;
  ASSERT_TRUE(f.q->Publish("data", {{"x", "y"}}, &id).ok);
  EXPECT_EQ(id, "77");
  auto& rq = f.http->requests;
  ASSERT_EQ(rq.size(), 4u);
  EXPECT_TRUE(rq[0].url.ends_with("/v1/projects/p/subscriptions/sub:acknowledge"));
  EXPECT_EQ(Json::parse(rq[0].body), Json::parse(R"({"ackIds":["a","b"]})"));
  EXPECT_EQ(Json::parse(rq[1].body), Json::parse(R"({"ackIds":["c"],"ackDeadlineSeconds":0})"));
  EXPECT_EQ(Json::parse(rq[2].body), Json::parse(R"({"ackIds":["d"],"ackDeadlineSeconds":45})"));
  EXPECT_EQ(rq[3].url, "http://emu:8085/v1/projects/p/topics/out:publish");
  EXPECT_EQ(Json::parse(rq[3].body),
            Json::parse(R"({"messages":[{"data":"ZGF0YQ==","attributes":{"x":"y"}}]})"));

  // Large ack batches are chunked.
  rq.clear();
  ASSERT_TRUE(f.q->Ack(std::vector<std::string>(2500, "z")).ok);
  EXPECT_EQ(rq.size(), 3u);
}

TEST(PubSubQueueFake, ErrorsNameOperationResourceAndStatus) {
  int calls = 0;
  QueueFixture f("pubsub://projects/p/subscriptions/sub", [&](const gcp::HttpRequest& r) {
    ++calls;
    if (r.url.ends_with(":acknowledge")) return Resp(503, "unavailable");
    if (r.url.ends_with(":modifyAckDeadline"))
      return gcp::HttpResponse{0, "", "Connection refused"};
    return Resp(404, R"({"error":{"code":404,"message":"Subscription does not exist"}})");
  });
  std::vector<Message> out;
  Status st = f.q->Pull(1, 10s, 0ms, &out);
  EXPECT_EQ(st.error,
            "pubsub pull projects/p/subscriptions/sub: HTTP 404: {\"error\":{\"code\":404,"
            "\"message\":\"Subscription does not exist\"}}");
  calls = 0;
  st = f.q->Ack({"a"});
  EXPECT_EQ(calls, 3);  // retried
  EXPECT_EQ(st.error, "pubsub ack projects/p/subscriptions/sub: HTTP 503: unavailable");
  st = f.q->Nack({"a"});
  EXPECT_EQ(st.error,
            "pubsub nack projects/p/subscriptions/sub: Connection refused (endpoint "
            "http://emu:8085)");
  st = f.q->Publish("x", {}, nullptr);
  EXPECT_FALSE(st.ok);
  EXPECT_NE(st.error.find("add ?topic=T"), std::string::npos) << st.error;

  QueueFixture t("pubsub://projects/p/topics/top",
                 [](const gcp::HttpRequest&) { return Resp(200, "{}"); });
  for (Status s :
       {t.q->Pull(1, 10s, 0ms, &out), t.q->Ack({"a"}), t.q->Nack({"a"}), t.q->Extend({"a"}, 10s)}) {
    EXPECT_FALSE(s.ok);
    EXPECT_NE(s.error.find("is a topic (publish only)"), std::string::npos) << s.error;
  }
  EXPECT_TRUE(t.http->requests.empty());
}

// ---- Auth -----------------------------------------------------------------------------------

gcp::ServiceAccountKey TestAccount() {
  gcp::ServiceAccountKey k;
  Json j = {{"type", "service_account"},
            {"client_email", "tester@tidegate-test.iam.gserviceaccount.com"},
            {"private_key", Key().pem},
            {"private_key_id", "kid-1"},
            {"token_uri", "https://oauth2.example.test/token"}};
  Status st = gcp::ParseServiceAccountKey(j.dump(), &k);
  EXPECT_TRUE(st.ok) << st.error;
  return k;
}

TEST(GcpAuth, JwtIsRs256SignedWithExpectedClaims) {
  auto now = std::chrono::system_clock::time_point(std::chrono::seconds(1700000000));
  std::string jwt;
  Status st = gcp::BuildJwtAssertion(TestAccount(), gcp::kPubSubScope, now, &jwt);
  ASSERT_TRUE(st.ok) << st.error;
  size_t d1 = jwt.find('.'), d2 = jwt.rfind('.');
  ASSERT_NE(d1, d2);
  std::string header, claims, sig;
  ASSERT_TRUE(gcp::Base64Decode(jwt.substr(0, d1), &header));
  ASSERT_TRUE(gcp::Base64Decode(jwt.substr(d1 + 1, d2 - d1 - 1), &claims));
  ASSERT_TRUE(gcp::Base64Decode(jwt.substr(d2 + 1), &sig));
  EXPECT_EQ(jwt.find_first_of("+/="), std::string::npos);  // base64url, unpadded
  EXPECT_EQ(Json::parse(header), Json::parse(R"({"alg":"RS256","typ":"JWT","kid":"kid-1"})"));
  EXPECT_EQ(Json::parse(claims),
            Json::parse(R"({"iss":"tester@tidegate-test.iam.gserviceaccount.com",
                            "scope":"https://www.googleapis.com/auth/pubsub",
                            "aud":"https://oauth2.example.test/token",
                            "iat":1700000000,"exp":1700003600})"));
  EXPECT_EQ(sig.size(), 256u);
  EXPECT_TRUE(Key().Verify(jwt.substr(0, d2), sig));
  std::string tampered = jwt.substr(0, d2);
  tampered[d1 + 3] ^= 1;
  EXPECT_FALSE(Key().Verify(tampered, sig));
}

TEST(GcpAuth, BadKeysAreClearErrors) {
  gcp::ServiceAccountKey k;
  EXPECT_NE(gcp::ParseServiceAccountKey(R"({"type":"external_account"})", &k)
                .error.find("external_account"),
            std::string::npos);
  EXPECT_FALSE(
      gcp::ParseServiceAccountKey(R"({"type":"service_account","private_key":"x"})", &k).ok);
  k = TestAccount();
  k.private_key = "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n";
  std::string jwt;
  Status st = gcp::BuildJwtAssertion(k, gcp::kPubSubScope, std::chrono::system_clock::now(), &jwt);
  EXPECT_FALSE(st.ok);
  EXPECT_NE(st.error.find("private_key"), std::string::npos) << st.error;
}

TEST(GcpAuth, ServiceAccountExchangeAndCaching) {
  auto now = std::chrono::system_clock::time_point(std::chrono::seconds(1700000000));
  auto http = std::make_shared<FakeHttp>([](const gcp::HttpRequest& r) {
    return Resp(200, R"({"access_token":"ya29.test","expires_in":3599,"token_type":"Bearer"})");
  });
  auto clock = [&now] { return now; };
  auto src = gcp::CachingTokenSource(
      gcp::ServiceAccountFetcher(http, TestAccount(), std::string(gcp::kPubSubScope), clock),
      clock);
  std::string tok;
  ASSERT_TRUE(src->Token(&tok).ok);
  EXPECT_EQ(tok, "ya29.test");
  ASSERT_EQ(http->requests.size(), 1u);
  const auto& r = http->requests[0];
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.url, "https://oauth2.example.test/token");
  EXPECT_EQ(Header(r, "Content-Type"), "application/x-www-form-urlencoded");
  const std::string prefix =
      "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=";
  ASSERT_TRUE(r.body.starts_with(prefix)) << r.body;
  EXPECT_EQ(std::count(r.body.begin(), r.body.end(), '.'), 2);  // the JWT, dots unescaped

  now += std::chrono::minutes(50);  // still > 5 min before expiry: cached
  ASSERT_TRUE(src->Token(&tok).ok);
  EXPECT_EQ(http->requests.size(), 1u);
  now += std::chrono::minutes(6);  // inside the refresh margin: refetched
  ASSERT_TRUE(src->Token(&tok).ok);
  EXPECT_EQ(http->requests.size(), 2u);
}

TEST(GcpAuth, MetadataServerAndFailuresAreNotCached) {
  EnvVar host("GCE_METADATA_HOST", nullptr);
  int calls = 0;
  auto http = std::make_shared<FakeHttp>([&](const gcp::HttpRequest&) {
    return ++calls == 1 ? Resp(500, "boom")
                        : Resp(200, R"({"access_token":"meta-tok","expires_in":"100"})");
  });
  auto src = gcp::CachingTokenSource(gcp::MetadataServerFetcher(http));
  std::string tok;
  Status st = src->Token(&tok);
  EXPECT_FALSE(st.ok);
  EXPECT_NE(st.error.find("metadata server"), std::string::npos) << st.error;
  EXPECT_NE(st.error.find("HTTP 500: boom"), std::string::npos) << st.error;
  ASSERT_TRUE(src->Token(&tok).ok);
  EXPECT_EQ(tok, "meta-tok");
  const auto& r = http->requests.back();
  EXPECT_EQ(r.url,
            "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/"
            "default/token");
  EXPECT_EQ(Header(r, "Metadata-Flavor"), "Google");
  // expires_in 100 s is inside the 5 min margin, so every call refetches (never serves stale).
  ASSERT_TRUE(src->Token(&tok).ok);
  EXPECT_EQ(calls, 3);

  gcp::AccessToken t;
  EXPECT_FALSE(
      gcp::ParseTokenResponse(R"({"error":"invalid_grant"})", std::chrono::system_clock::now(), &t)
          .ok);
}

}  // namespace
}  // namespace tidegate::queue
