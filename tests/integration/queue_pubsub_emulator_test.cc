// Integration test of the Pub/Sub queue backend against the REAL Google Cloud Pub/Sub emulator
// (Debian package google-cloud-cli-pubsub-emulator; `gcloud beta emulators pubsub start`).
//
// The suite starts one emulator on a free loopback port in its own process group (the gcloud
// wrapper spawns java), points PUBSUB_EMULATOR_HOST at it, and opens queues through the real
// registry (OpenQueue("pubsub://...")). Teardown kills the whole group (SIGTERM, then SIGKILL);
// a watchdog process also kills the group if this binary dies without tearing down. A missing
// gcloud or an emulator that is not ready within 60 s FAILS every test with the reason (never a
// silent skip). Runtime ≈ emulator start (~3-10 s) + ~15 s (the lease-extension test has to
// outlive a 10 s ack deadline).
//
// Not part of unit_tests: built as its own binary (pubsub_emulator_tests) and registered with
// ctest as integration.pubsub_emulator.
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "queue/gcp_auth.h"
#include "queue/pubsub_queue.h"
#include "queue/queue.h"

namespace tidegate::queue {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
constexpr char kProject[] = "tidegate-test";

std::string FindInPath(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::stringstream ss(path ? path : "");
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

int FreeLoopbackPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  int port = -1;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

std::string Tail(const std::string& path, size_t max = 2000) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  return s.size() > max ? s.substr(s.size() - max) : s;
}

class PubSubEmulatorTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    error_.clear();
    std::string gcloud = FindInPath("gcloud");
    if (gcloud.empty()) {
      error_ =
          "gcloud is not on PATH: the Pub/Sub emulator test needs the Google Cloud CLI with the "
          "google-cloud-cli-pubsub-emulator package (gcloud beta emulators pubsub start)";
      return;
    }
    port_ = FreeLoopbackPort();
    if (port_ <= 0) {
      error_ = "cannot find a free loopback port";
      return;
    }
    char tmpl[] = "/tmp/tidegate-pubsub-emu-XXXXXX";
    if (!mkdtemp(tmpl)) {
      error_ = "mkdtemp failed";
      return;
    }
    dir_ = tmpl;
    log_ = dir_ + "/emulator.log";
    const std::string host_port = "--host-port=127.0.0.1:" + std::to_string(port_);
    const std::string data_dir = "--data-dir=" + dir_;  // must exist
    const std::string project = std::string("--project=") + kProject;
    auto started = Clock::now();
    pid_t pid = fork();
    if (pid == 0) {
      setpgid(0, 0);
      int fd = open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
      }
      setenv("CLOUDSDK_CORE_DISABLE_PROMPTS", "1", 1);
      execl(gcloud.c_str(), "gcloud", "beta", "emulators", "pubsub", "start", host_port.c_str(),
            project.c_str(), data_dir.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    if (pid < 0) {
      error_ = "fork failed";
      return;
    }
    setpgid(pid, pid);  // also from the parent: no race with the kill below
    pgid_ = pid;
    StartWatchdog();

    auto http = gcp::NewCurlHttpClient();
    const std::string url = "http://127.0.0.1:" + std::to_string(port_) + "/";
    while (true) {
      int wstatus = 0;
      if (waitpid(pgid_, &wstatus, WNOHANG) == pgid_) {
        error_ = "the Pub/Sub emulator exited during startup; log tail:\n" + Tail(log_);
        reaped_ = true;
        return;
      }
      gcp::HttpRequest req;
      req.url = url;
      req.timeout = 500ms;
      gcp::HttpResponse r = http->Do(req);
      if (r.status == 200) break;
      if (Clock::now() - started > 60s) {
        error_ = "the Pub/Sub emulator was not ready on " + url + " within 60 s; log tail:\n" +
                 Tail(log_);
        return;
      }
      std::this_thread::sleep_for(100ms);
    }
    startup_ms_ =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count();
    std::printf("[ emulator ] ready on 127.0.0.1:%d in %lld ms\n", port_,
                static_cast<long long>(startup_ms_));
    emulator_host_ = "127.0.0.1:" + std::to_string(port_);
    setenv("PUBSUB_EMULATOR_HOST", emulator_host_.c_str(), 1);
  }

  // Kills the emulator's process group if this process dies before TearDownTestSuite.
  static void StartWatchdog() {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return;
    pid_t w = fork();
    if (w == 0) {
      close(fds[1]);
      char c;
      while (read(fds[0], &c, 1) > 0) {
      }
      kill(-pgid_, SIGKILL);
      _exit(0);
    }
    close(fds[0]);
    watchdog_pid_ = w;
    watchdog_fd_ = fds[1];
  }

  static void TearDownTestSuite() {
    if (pgid_ > 0) {
      kill(-pgid_, SIGTERM);
      auto until = Clock::now() + 5s;
      while (Clock::now() < until) {
        if (!reaped_ && waitpid(pgid_, nullptr, WNOHANG) == pgid_) reaped_ = true;
        if (kill(-pgid_, 0) != 0) break;  // the whole group is gone
        std::this_thread::sleep_for(50ms);
      }
      kill(-pgid_, SIGKILL);
      if (!reaped_) waitpid(pgid_, nullptr, 0);
      pgid_ = -1;
    }
    if (watchdog_fd_ >= 0) {
      close(watchdog_fd_);
      waitpid(watchdog_pid_, nullptr, 0);
      watchdog_fd_ = -1;
    }
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
    unsetenv("PUBSUB_EMULATOR_HOST");
  }

  void SetUp() override { ASSERT_TRUE(error_.empty()) << error_; }

  // PUT /v1/<name> on the emulator's REST API (admin: topics and subscriptions).
  static void Put(const std::string& name, const std::string& body) {
    gcp::HttpRequest req;
    req.method = "PUT";
    req.url = "http://" + emulator_host_ + "/v1/" + name;
    req.headers = {{"Content-Type", "application/json"}};
    req.body = body.empty() ? "{}" : body;
    req.timeout = 10s;
    gcp::HttpResponse r = gcp::NewCurlHttpClient()->Do(req);
    ASSERT_EQ(r.status, 200) << "PUT " << name << ": " << r.transport_error << r.body;
  }
  static std::string Topic(const std::string& id) {
    return std::string("projects/") + kProject + "/topics/" + id;
  }
  static std::string Sub(const std::string& id) {
    return std::string("projects/") + kProject + "/subscriptions/" + id;
  }
  static void CreateTopic(const std::string& id) { Put(Topic(id), ""); }
  static void CreateSubscription(const std::string& id, const std::string& topic,
                                 const std::string& dead_letter_topic = "", int max_attempts = 5) {
    std::string body = "{\"topic\": \"" + Topic(topic) + "\", \"ackDeadlineSeconds\": 10";
    if (!dead_letter_topic.empty()) {
      body += ", \"deadLetterPolicy\": {\"deadLetterTopic\": \"" + Topic(dead_letter_topic) +
              "\", \"maxDeliveryAttempts\": " + std::to_string(max_attempts) + "}";
    }
    body += "}";
    Put(Sub(id), body);
  }
  static std::unique_ptr<Queue> Open(const std::string& uri) {
    std::string err;
    auto q = OpenQueue(uri, &err);
    EXPECT_NE(q, nullptr) << err;
    return q;
  }
  static std::string SubUri(const std::string& id) { return "pubsub://" + Sub(id); }
  static std::string TopicUri(const std::string& id) { return "pubsub://" + Topic(id); }

  // Pulls until `n` messages arrived or `budget` passed.
  static std::vector<Message> PullN(Queue& q, size_t n, std::chrono::milliseconds lease,
                                    std::chrono::milliseconds budget) {
    std::vector<Message> got;
    auto until = Clock::now() + budget;
    while (got.size() < n && Clock::now() < until) {
      Status st = q.Pull(static_cast<int>(n - got.size()), lease, 1s, &got);
      EXPECT_TRUE(st.ok) << st.error;
      if (!st.ok) break;
    }
    return got;
  }
  static std::vector<std::string> AckIds(const std::vector<Message>& msgs) {
    std::vector<std::string> ids;
    for (const auto& m : msgs) ids.push_back(m.ack_id);
    return ids;
  }

  static inline std::string error_;
  static inline std::string dir_, log_, emulator_host_;
  static inline int port_ = -1;
  static inline pid_t pgid_ = -1;
  static inline bool reaped_ = false;
  static inline pid_t watchdog_pid_ = -1;
  static inline int watchdog_fd_ = -1;
  static inline int64_t startup_ms_ = 0;
};

TEST_F(PubSubEmulatorTest, PublishThenPullAndAckEachExactlyOnce) {
  CreateTopic("once-topic");
  CreateSubscription("once-sub", "once-topic");
  auto pub = Open(TopicUri("once-topic"));
  auto sub = Open(SubUri("once-sub") + "?topic=once-topic");  // consume + publish form
  ASSERT_TRUE(pub && sub);
  constexpr int kN = 60;
  std::set<std::string> ids;
  for (int i = 0; i < kN; ++i) {
    std::string id;
    Queue& q = i % 2 ? *pub : *sub;
    std::string payload = "msg-" + std::to_string(i) + std::string("\0\xff", 2);
    Status st = q.Publish(payload, {{"i", std::to_string(i)}}, &id);
    ASSERT_TRUE(st.ok) << st.error;
    EXPECT_TRUE(ids.insert(id).second) << "duplicate message id " << id;
  }
  auto before = std::chrono::system_clock::now();
  std::map<std::string, int> seen;  // payload -> count
  std::set<std::string> pulled_ids;
  auto until = Clock::now() + 20s;
  while (static_cast<int>(seen.size()) < kN && Clock::now() < until) {
    std::vector<Message> got;
    // Lease 30 s ≠ the subscription's 10 s: exercises the modifyAckDeadline after pull.
    Status st = sub->Pull(25, 30s, 2s, &got);
    ASSERT_TRUE(st.ok) << st.error;
    for (const Message& m : got) {
      ++seen[m.data];
      pulled_ids.insert(m.id);
      EXPECT_EQ(m.delivery_attempt, 1);
      EXPECT_EQ(m.data, "msg-" + m.attributes.at("i") + std::string("\0\xff", 2));
      EXPECT_LT(std::chrono::abs(m.publish_time - before), 60s);
    }
    st = sub->Ack(AckIds(got));
    ASSERT_TRUE(st.ok) << st.error;
  }
  EXPECT_EQ(static_cast<int>(seen.size()), kN);
  for (const auto& [payload, count] : seen) EXPECT_EQ(count, 1) << payload;
  EXPECT_EQ(pulled_ids, ids);
  std::vector<Message> rest;
  ASSERT_TRUE(sub->Pull(10, 10s, 1s, &rest).ok);
  EXPECT_TRUE(rest.empty()) << rest.size() << " messages delivered again after ack";

  // Topic URIs are publish-only; plain subscription URIs cannot publish.
  EXPECT_FALSE(pub->Pull(1, 10s, 0ms, &rest).ok);
  EXPECT_FALSE(Open(SubUri("once-sub"))->Publish("x", {}, nullptr).ok);
}

TEST_F(PubSubEmulatorTest, NackRedeliversWithDeliveryAttemptTwo) {
  CreateTopic("nack-topic");
  CreateTopic("nack-dlq");
  CreateSubscription("nack-sub", "nack-topic", "nack-dlq", 5);
  auto q = Open(SubUri("nack-sub") + "?topic=nack-topic");
  std::string id;
  ASSERT_TRUE(q->Publish("nack me", {}, &id).ok);
  auto first = PullN(*q, 1, 10s, 10s);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].id, id);
  EXPECT_EQ(first[0].delivery_attempt, 1);
  Status st = q->Nack(AckIds(first));
  ASSERT_TRUE(st.ok) << st.error;
  auto again = PullN(*q, 1, 10s, 5s);  // far less than the 10 s ack deadline: nack worked
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].id, id);
  EXPECT_EQ(again[0].data, "nack me");
  EXPECT_EQ(again[0].delivery_attempt, 2);
  ASSERT_TRUE(q->Ack(AckIds(again)).ok);
}

TEST_F(PubSubEmulatorTest, ExtendKeepsMessageLeasedPastItsDeadline) {
  CreateTopic("lease-topic");
  CreateSubscription("lease-sub", "lease-topic");
  auto q = Open(SubUri("lease-sub") + "?topic=lease-topic");
  ASSERT_TRUE(q->Publish("extended", {}, nullptr).ok);
  ASSERT_TRUE(q->Publish("expires", {}, nullptr).ok);
  auto t0 = Clock::now();
  auto held = PullN(*q, 2, 10s, 10s);  // lease = the subscription default (10 s)
  ASSERT_EQ(held.size(), 2u);
  const Message& ext = held[0].data == "extended" ? held[0] : held[1];
  std::this_thread::sleep_for(5s);
  Status st = q->Extend({ext.ack_id}, 30s);  // new deadline ≈ t0 + 35 s
  ASSERT_TRUE(st.ok) << st.error;
  std::this_thread::sleep_until(t0 + 11s);  // both original deadlines (t0 + 10 s) passed
  // Only the message that was not extended comes back.
  std::vector<Message> back = PullN(*q, 1, 10s, 6s);
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0].data, "expires");
  EXPECT_GE(back[0].delivery_attempt, 1);
  std::vector<Message> none;
  ASSERT_TRUE(q->Pull(5, 10s, 1s, &none).ok);
  EXPECT_TRUE(none.empty()) << "the extended message was redelivered while still leased";
  EXPECT_LT(Clock::now() - t0, 30s);
  ASSERT_TRUE(q->Ack({ext.ack_id, back[0].ack_id}).ok);
}

TEST_F(PubSubEmulatorTest, PoisonMessageLandsOnDeadLetterTopic) {
  CreateTopic("poison-topic");
  CreateTopic("poison-dlq");
  CreateSubscription("poison-dlq-sub", "poison-dlq");
  CreateSubscription("poison-sub", "poison-topic", "poison-dlq", 5);
  auto q = Open(SubUri("poison-sub"));
  auto pub = Open(TopicUri("poison-topic"));
  ASSERT_TRUE(pub->Publish("poison", {{"kind", "bad"}}, nullptr).ok);
  for (int attempt = 1; attempt <= 5; ++attempt) {
    auto got = PullN(*q, 1, 10s, 5s);
    ASSERT_EQ(got.size(), 1u) << "attempt " << attempt;
    EXPECT_EQ(got[0].delivery_attempt, attempt);
    Status st = q->Nack(AckIds(got));
    ASSERT_TRUE(st.ok) << st.error;
  }
  // The emulator forwards to the dead-letter topic when the source subscription is next pulled
  // (a live consumer keeps pulling); after that the message is never delivered there again.
  std::vector<Message> none;
  ASSERT_TRUE(q->Pull(1, 10s, 1s, &none).ok);
  EXPECT_TRUE(none.empty()) << "the poison message is still delivered after 5 attempts";
  auto dlq = Open(SubUri("poison-dlq-sub"));
  auto dead = PullN(*dlq, 1, 10s, 10s);
  ASSERT_EQ(dead.size(), 1u) << "nothing on the dead-letter subscription";
  EXPECT_EQ(dead[0].data, "poison");
  EXPECT_EQ(dead[0].attributes["kind"], "bad");
  EXPECT_EQ(dead[0].attributes["CloudPubSubDeadLetterSourceDeliveryCount"], "5");
  ASSERT_TRUE(dlq->Ack(AckIds(dead)).ok);
  ASSERT_TRUE(q->Pull(1, 10s, 1s, &none).ok);
  EXPECT_TRUE(none.empty()) << "the poison message is delivered again after dead-lettering";
}

TEST_F(PubSubEmulatorTest, MissingResourcesAreClearErrors) {
  auto q = Open(SubUri("no-such-sub"));
  std::vector<Message> out;
  Status st = q->Pull(1, 10s, 0ms, &out);
  EXPECT_FALSE(st.ok);
  EXPECT_NE(st.error.find("pubsub pull projects/tidegate-test/subscriptions/no-such-sub: HTTP 404"),
            std::string::npos)
      << st.error;
  st = Open(TopicUri("no-such-topic"))->Publish("x", {}, nullptr);
  EXPECT_NE(st.error.find("pubsub publish projects/tidegate-test/topics/no-such-topic: HTTP 404"),
            std::string::npos)
      << st.error;
}

}  // namespace
}  // namespace tidegate::queue
