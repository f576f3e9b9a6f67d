// The embedded SQLite queue and the queue registry: leases, redelivery, dead-lettering,
// cross-"process" exclusivity (two Queue objects, then real forked processes) and crash safety
// (a child SIGKILLed mid-way).
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "queue/queue.h"
#include "queue/sqlite_queue.h"

namespace tidegate::queue {
namespace {

using std::chrono::milliseconds;

class SqliteQueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("tidegate_sqlite_q_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    db_ = (dir_ / "queue.db").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Uri(const std::string& name, const std::string& extra = "") const {
    return "sqlite://" + db_ + "?queue=" + name + extra;
  }
  std::unique_ptr<Queue> Open(const std::string& name, const std::string& extra = "") {
    std::string error;
    auto q = OpenQueue(Uri(name, extra), &error);
    EXPECT_NE(q, nullptr) << error;
    return q;
  }

  std::filesystem::path dir_;
  std::string db_;
};

TEST_F(SqliteQueueTest, PublishPullAckRoundtrip) {
  auto q = Open("requests");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->kind(), "sqlite");
  EXPECT_EQ(q->uri(), Uri("requests"));
  std::string id1, id2;
  ASSERT_TRUE(q->Publish("hello", {{"k", "v"}}, &id1).ok);
  ASSERT_TRUE(q->Publish(std::string("bin\0ary", 7), {}, &id2).ok);
  ASSERT_TRUE(q->Publish("", {}, nullptr).ok);  // empty payloads are allowed
  EXPECT_NE(id1, id2);

  std::vector<Message> got;
  ASSERT_TRUE(q->Pull(10, milliseconds(30000), milliseconds(0), &got).ok);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].id, id1);
  EXPECT_EQ(got[0].data, "hello");
  EXPECT_EQ(got[0].attributes.at("k"), "v");
  EXPECT_EQ(got[0].delivery_attempt, 1);
  auto age = std::chrono::system_clock::now() - got[0].publish_time;
  EXPECT_LT(std::chrono::abs(age), std::chrono::seconds(10));
  EXPECT_EQ(got[1].id, id2);
  EXPECT_EQ(got[1].data, std::string("bin\0ary", 7));
  EXPECT_EQ(got[2].data, "");

  // Another queue name in the same file is independent.
  auto other = Open("other");
  std::vector<Message> none;
  ASSERT_TRUE(other->Pull(10, milliseconds(30000), milliseconds(0), &none).ok);
  EXPECT_TRUE(none.empty());

  ASSERT_TRUE(q->Ack({got[0].ack_id, got[1].ack_id, got[2].ack_id}).ok);
  ASSERT_TRUE(q->Nack({got[0].ack_id}).ok);  // stale after Ack: ignored
  // Even after the leases would have expired, acknowledged messages are gone.
  ASSERT_TRUE(q->Pull(10, milliseconds(30000), milliseconds(0), &got).ok);
  EXPECT_TRUE(got.empty());
}

TEST_F(SqliteQueueTest, LeaseHidesUntilExpiryThenRedeliversWithNextAttempt) {
  auto q = Open("q");
  std::string id;
  ASSERT_TRUE(q->Publish("m", {}, &id).ok);
  std::vector<Message> got;
  ASSERT_TRUE(q->Pull(1, milliseconds(300), milliseconds(0), &got).ok);
  ASSERT_EQ(got.size(), 1u);
  const std::string first_ack = got[0].ack_id;
  ASSERT_TRUE(q->Pull(1, milliseconds(300), milliseconds(0), &got).ok);
  EXPECT_TRUE(got.empty());  // hidden while leased
  // Pull with a wait longer than the remaining lease picks it up once the lease runs out.
  ASSERT_TRUE(q->Pull(1, milliseconds(30000), milliseconds(3000), &got).ok);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].id, id);
  EXPECT_EQ(got[0].delivery_attempt, 2);
  EXPECT_NE(got[0].ack_id, first_ack);
  // The superseded delivery's ack id touches nothing.
  ASSERT_TRUE(q->Ack({first_ack}).ok);
  ASSERT_TRUE(q->Nack({first_ack}).ok);
  std::vector<Message> none;
  ASSERT_TRUE(q->Pull(1, milliseconds(30000), milliseconds(0), &none).ok);
  EXPECT_TRUE(none.empty());
  ASSERT_TRUE(q->Ack({got[0].ack_id}).ok);
}

TEST_F(SqliteQueueTest, NackRedeliversAtOnce) {
  auto q = Open("q");
  ASSERT_TRUE(q->Publish("m", {}, nullptr).ok);
  std::vector<Message> got;
  ASSERT_TRUE(q->Pull(1, milliseconds(60000), milliseconds(0), &got).ok);
  ASSERT_EQ(got.size(), 1u);
  ASSERT_TRUE(q->Nack({got[0].ack_id}).ok);
  ASSERT_TRUE(q->Pull(1, milliseconds(60000), milliseconds(0), &got).ok);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].delivery_attempt, 2);
}

TEST_F(SqliteQueueTest, ExtendKeepsItHidden) {
  auto q = Open("q");
  ASSERT_TRUE(q->Publish("m", {}, nullptr).ok);
  std::vector<Message> got, none;
  ASSERT_TRUE(q->Pull(1, milliseconds(200), milliseconds(0), &got).ok);
  ASSERT_EQ(got.size(), 1u);
  for (int i = 0; i < 4; ++i) {
    std::this_thread::sleep_for(milliseconds(100));
    ASSERT_TRUE(q->Extend({got[0].ack_id}, milliseconds(200)).ok);
    ASSERT_TRUE(q->Pull(1, milliseconds(200), milliseconds(0), &none).ok);
    EXPECT_TRUE(none.empty()) << "redelivered despite Extend, round " << i;
  }
  // 400 ms after the original 200 ms lease: only Extend kept it hidden. Now let it lapse.
  ASSERT_TRUE(q->Pull(1, milliseconds(30000), milliseconds(3000), &none).ok);
  ASSERT_EQ(none.size(), 1u);
  EXPECT_EQ(none[0].delivery_attempt, 2);
}

TEST_F(SqliteQueueTest, PullWaitsForAPublishFromAnotherThread) {
  auto q = Open("q");
  std::thread publisher([&] {
    std::this_thread::sleep_for(milliseconds(100));
    auto p = Open("q");
    EXPECT_TRUE(p->Publish("late", {}, nullptr).ok);
  });
  std::vector<Message> got;
  auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(q->Pull(5, milliseconds(30000), milliseconds(5000), &got).ok);
  publisher.join();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
  // And an empty queue returns after roughly `wait`.
  start = std::chrono::steady_clock::now();
  ASSERT_TRUE(q->Pull(5, milliseconds(30000), milliseconds(150), &got).ok);
  EXPECT_TRUE(got.empty());
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(140));
}

TEST_F(SqliteQueueTest, DeadLettersAfterMaxAttempts) {
  auto q = Open("work", "&max_attempts=2&dead_letter=dead");
  std::string id;
  ASSERT_TRUE(q->Publish("poison", {{"a", "b"}}, &id).ok);
  ASSERT_TRUE(q->Publish("fine", {}, nullptr).ok);
  std::vector<Message> got;
  for (int attempt = 1; attempt <= 2; ++attempt) {
    ASSERT_TRUE(q->Pull(1, milliseconds(60000), milliseconds(0), &got).ok);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].data, "poison");
    EXPECT_EQ(got[0].delivery_attempt, attempt);
    ASSERT_TRUE(q->Nack({got[0].ack_id}).ok);
  }
  // The third delivery would exceed max_attempts: it moves to "dead"; the next one comes.
  ASSERT_TRUE(q->Pull(10, milliseconds(60000), milliseconds(0), &got).ok);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].data, "fine");

  auto dead = Open("dead");
  std::vector<Message> dl;
  ASSERT_TRUE(dead->Pull(10, milliseconds(60000), milliseconds(0), &dl).ok);
  ASSERT_EQ(dl.size(), 1u);
  EXPECT_EQ(dl[0].id, id);
  EXPECT_EQ(dl[0].data, "poison");
  EXPECT_EQ(dl[0].delivery_attempt, 1);
  EXPECT_EQ(dl[0].attributes.at("a"), "b");
  EXPECT_EQ(dl[0].attributes.at("tidegate-dead-letter-source"), "work");
  EXPECT_EQ(dl[0].attributes.at("tidegate-delivery-attempts"), "2");
  // Stale ack ids of the source queue's deliveries do not touch the dead-lettered copy.
  ASSERT_TRUE(q->Ack({id + ".1", id + ".2"}).ok);
  ASSERT_TRUE(dead->Nack({dl[0].ack_id}).ok);
  ASSERT_TRUE(dead->Pull(10, milliseconds(60000), milliseconds(0), &dl).ok);
  ASSERT_EQ(dl.size(), 1u);
  ASSERT_TRUE(dead->Ack({dl[0].ack_id}).ok);
}

TEST_F(SqliteQueueTest, ExpiredLeasesCountTowardsMaxAttempts) {
  auto q = Open("work", "&max_attempts=1&dead_letter=dead");
  ASSERT_TRUE(q->Publish("x", {}, nullptr).ok);
  std::vector<Message> got;
  ASSERT_TRUE(q->Pull(1, milliseconds(50), milliseconds(0), &got).ok);
  ASSERT_EQ(got.size(), 1u);
  std::this_thread::sleep_for(milliseconds(80));
  ASSERT_TRUE(q->Pull(1, milliseconds(50), milliseconds(0), &got).ok);
  EXPECT_TRUE(got.empty());
  auto dead = Open("dead");
  ASSERT_TRUE(dead->Pull(1, milliseconds(50), milliseconds(0), &got).ok);
  EXPECT_EQ(got.size(), 1u);
}

// Two Queue objects (two connections, as two processes would have) with two threads each,
// hammering Pull/Ack: each message is delivered exactly once (the lease outlives the test).
TEST_F(SqliteQueueTest, TwoConnectionsNeverLeaseTheSameMessage) {
  constexpr int kMessages = 400;
  {
    auto p = Open("q");
    for (int i = 0; i < kMessages; ++i)
      ASSERT_TRUE(p->Publish("m" + std::to_string(i), {}, nullptr).ok);
  }
  auto a = Open("q");
  auto b = Open("q");
  std::mutex mu;
  std::map<std::string, int> seen;
  std::atomic<int> acked{0};
  std::atomic<bool> failed{false};
  auto worker = [&](Queue* q) {
    while (acked.load() < kMessages && !failed.load()) {
      std::vector<Message> got;
      Status st = q->Pull(7, milliseconds(600000), milliseconds(20), &got);
      if (!st.ok) {
        ADD_FAILURE() << st.error;
        failed = true;
        return;
      }
      std::vector<std::string> ids;
      {
        std::lock_guard lock(mu);
        for (auto& m : got) {
          ++seen[m.data];
          ids.push_back(m.ack_id);
        }
      }
      if (!ids.empty()) {
        st = q->Ack(ids);
        if (!st.ok) {
          ADD_FAILURE() << st.error;
          failed = true;
          return;
        }
        acked += static_cast<int>(ids.size());
      }
    }
  };
  std::vector<std::thread> threads;
  for (Queue* q : {a.get(), a.get(), b.get(), b.get()}) threads.emplace_back(worker, q);
  for (auto& t : threads) t.join();
  ASSERT_FALSE(failed.load());
  EXPECT_EQ(acked.load(), kMessages);
  ASSERT_EQ(seen.size(), static_cast<size_t>(kMessages));
  for (const auto& [data, n] : seen) EXPECT_EQ(n, 1) << data;
}

std::string Slurp(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Real processes: three forked consumers share the file; every message is consumed once.
TEST_F(SqliteQueueTest, ForkedProcessesNeverLeaseTheSameMessage) {
  constexpr int kMessages = 300, kChildren = 3;
  {
    auto p = Open("q");
    for (int i = 0; i < kMessages; ++i)
      ASSERT_TRUE(p->Publish("m" + std::to_string(i), {}, nullptr).ok);
  }
  std::vector<pid_t> pids;
  for (int c = 0; c < kChildren; ++c) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      std::string error;
      auto q = OpenQueue(Uri("q"), &error);
      if (q == nullptr) _exit(2);
      FILE* log = std::fopen((dir_ / ("child" + std::to_string(c))).c_str(), "w");
      int idle = 0;
      while (idle < 5) {
        std::vector<Message> got;
        if (!q->Pull(3, milliseconds(600000), milliseconds(20), &got).ok) _exit(3);
        if (got.empty()) {
          ++idle;
          continue;
        }
        idle = 0;
        std::vector<std::string> ids;
        for (auto& m : got) {
          std::fprintf(log, "%s\n", m.data.c_str());
          ids.push_back(m.ack_id);
        }
        if (!q->Ack(ids).ok) _exit(4);
      }
      std::fclose(log);
      _exit(0);
    }
    pids.push_back(pid);
  }
  for (pid_t pid : pids) {
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  }
  std::map<std::string, int> seen;
  for (int c = 0; c < kChildren; ++c) {
    std::istringstream in(Slurp(dir_ / ("child" + std::to_string(c))));
    for (std::string line; std::getline(in, line);) ++seen[line];
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(kMessages));
  for (const auto& [data, n] : seen) EXPECT_EQ(n, 1) << data;
}

// A child publishes, leases and acknowledges, logging each step (unbuffered, to a pipe) only
// after the call returned; the parent SIGKILLs it mid-way. Then: every message whose Publish
// returned and whose Ack never started is still there exactly once; every message whose Ack
// returned is gone; no id appears twice; the file passes integrity_check.
TEST_F(SqliteQueueTest, SurvivesSigkillWithoutLosingOrDuplicating) {
  for (int round = 0; round < 3; ++round) {
    const std::string name = "crash" + std::to_string(round);
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      close(fds[0]);
      std::string error;
      auto q = OpenQueue(Uri(name), &error);
      if (q == nullptr) _exit(2);
      auto say = [&](char what, const std::string& data) {
        std::string line = std::string(1, what) + " " + data + "\n";
        if (write(fds[1], line.data(), line.size()) != static_cast<ssize_t>(line.size())) _exit(5);
      };
      for (int i = 0;; ++i) {
        std::string data = "m" + std::to_string(i);
        if (!q->Publish(data, {}, nullptr).ok) _exit(3);
        say('P', data);
        if (i % 3 == 0) {
          std::vector<Message> got;
          if (!q->Pull(2, milliseconds(200), milliseconds(0), &got).ok) _exit(3);
          for (auto& m : got) {
            say('a', m.data);  // about to ack
            if (!q->Ack({m.ack_id}).ok) _exit(4);
            say('A', m.data);
          }
        }
      }
    }
    close(fds[1]);
    std::this_thread::sleep_for(milliseconds(150 + 100 * round));
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(status)) << "child exited early with " << status;
    std::string log;
    char buf[4096];
    for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;) log.append(buf, n);
    close(fds[0]);

    std::set<std::string> published, ack_started, acked;
    std::istringstream in(log);
    for (std::string line; std::getline(in, line);) {
      if (line.size() < 3) continue;  // a torn last line
      std::string data = line.substr(2);
      if (line[0] == 'P') published.insert(data);
      if (line[0] == 'a') ack_started.insert(data);
      if (line[0] == 'A') acked.insert(data);
    }
    ASSERT_GT(published.size(), 5u) << "child made too little progress";
    ASSERT_FALSE(acked.empty());

    {
      sqlite3* db = nullptr;
      ASSERT_EQ(sqlite3_open(db_.c_str(), &db), SQLITE_OK);
      sqlite3_stmt* s = nullptr;
      ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &s, nullptr), SQLITE_OK);
      ASSERT_EQ(sqlite3_step(s), SQLITE_ROW);
      EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)), "ok");
      sqlite3_finalize(s);
      sqlite3_close(db);
    }

    // Leases were 200 ms: after that everything left is deliverable again.
    std::this_thread::sleep_for(milliseconds(250));
    auto q = Open(name);
    std::map<std::string, int> left;
    for (;;) {
      std::vector<Message> got;
      ASSERT_TRUE(q->Pull(100, milliseconds(600000), milliseconds(0), &got).ok);
      if (got.empty()) break;
      for (auto& m : got) ++left[m.data];
    }
    for (const auto& [data, n] : left) EXPECT_EQ(n, 1) << "duplicated: " << data;
    for (const auto& data : published) {
      if (ack_started.count(data) == 0) {
        EXPECT_EQ(left.count(data), 1u) << "lost: " << data;
      }
    }
    for (const auto& data : acked) EXPECT_EQ(left.count(data), 0u) << "ack undone: " << data;
    // Anything left that the child never reported was published just before the kill: at most
    // the one in-flight Publish.
    int unreported = 0;
    for (const auto& [data, n] : left) unreported += published.count(data) == 0;
    EXPECT_LE(unreported, 1);
  }
}

TEST(SqliteQueueUri, ParsesAbsoluteAndRelativePaths) {
  SqliteQueueOptions o;
  std::string error;
  ASSERT_TRUE(ParseSqliteQueueUri("sqlite:///var/lib/q.db?queue=req", &o, &error)) << error;
  EXPECT_EQ(o.path, "/var/lib/q.db");
  EXPECT_EQ(o.queue, "req");
  EXPECT_EQ(o.max_attempts, 0);
  EXPECT_EQ(o.dead_letter, "");
  ASSERT_TRUE(ParseSqliteQueueUri("sqlite://data/q.db?queue=a%20b", &o, &error)) << error;
  EXPECT_EQ(o.path, "data/q.db");
  EXPECT_EQ(o.queue, "a b");
  ASSERT_TRUE(ParseSqliteQueueUri("SQLITE:///my%20dir/q.db?queue=w&max_attempts=3&dead_letter=d",
                                  &o, &error))
      << error;
  EXPECT_EQ(o.path, "/my dir/q.db");
  EXPECT_EQ(o.max_attempts, 3);
  EXPECT_EQ(o.dead_letter, "d");
  ASSERT_TRUE(ParseSqliteQueueUri("sqlite:///q.db?queue=w&dead_letter=d", &o, &error));
  EXPECT_EQ(o.max_attempts, 5);
}

TEST(SqliteQueueUri, BadUrisGiveClearErrors) {
  struct Case {
    const char* uri;
    const char* needle;
  } cases[] = {
      {"sqlite://", "missing file path"},
      {"sqlite://?queue=x", "missing file path"},
      {"sqlite:///tmp/q.db", "missing ?queue=NAME"},
      {"sqlite:///tmp/q.db?queue=", "missing ?queue=NAME"},
      {"sqlite:///tmp/?queue=x", "directory"},
      {"sqlite:///tmp/q.db?queue=x&bogus=1", "unknown parameter 'bogus'"},
      {"sqlite:///tmp/q.db?queue=x&max_attempts=0&dead_letter=d", "max_attempts must be"},
      {"sqlite:///tmp/q.db?queue=x&max_attempts=abc&dead_letter=d", "max_attempts must be"},
      {"sqlite:///tmp/q.db?queue=x&max_attempts=3", "needs dead_letter"},
      {"sqlite:///tmp/q.db?queue=x&dead_letter=x", "must differ"},
      {"sqlite:///tmp/q%zz.db?queue=x", "percent-escape"},
      {"sqlite:///tmp/q.db?queue", "malformed parameter"},
      {"pubsub://x", "not a sqlite:// URI"},
  };
  for (const auto& c : cases) {
    SqliteQueueOptions o;
    std::string error;
    EXPECT_FALSE(ParseSqliteQueueUri(c.uri, &o, &error)) << c.uri;
    EXPECT_NE(error.find(c.needle), std::string::npos) << c.uri << " → " << error;
    EXPECT_NE(error.find(c.uri), std::string::npos) << "error should name the URI: " << error;
  }
}

TEST(SqliteQueueUri, UnopenableFileIsAnError) {
  std::string error;
  auto q = OpenQueue("sqlite:///nonexistent-dir-tidegate/sub/q.db?queue=x", &error);
  EXPECT_EQ(q, nullptr);
  EXPECT_NE(error.find("open"), std::string::npos) << error;
  EXPECT_NE(error.find("/nonexistent-dir-tidegate/sub/q.db"), std::string::npos) << error;
}

TEST_F(SqliteQueueTest, MalformedAckIdsAndBadArgumentsAreErrors) {
  auto q = Open("q");
  Status st = q->Ack({"garbage"});
  EXPECT_FALSE(st.ok);
  EXPECT_NE(st.error.find("malformed ack id 'garbage'"), std::string::npos) << st.error;
  EXPECT_FALSE(q->Nack({"1."}).ok);
  EXPECT_FALSE(q->Extend({".1"}, milliseconds(10)).ok);
  EXPECT_TRUE(q->Ack({}).ok);
  std::vector<Message> got;
  EXPECT_FALSE(q->Pull(1, milliseconds(0), milliseconds(0), &got).ok);
  EXPECT_TRUE(q->Pull(0, milliseconds(10), milliseconds(0), &got).ok);
}

TEST(QueueRegistry, UnknownSchemeListsKnownOnes) {
  std::string error;
  EXPECT_EQ(OpenQueue("nope://x", &error), nullptr);
  EXPECT_NE(error.find("unknown scheme 'nope://'"), std::string::npos) << error;
  EXPECT_NE(error.find("sqlite://"), std::string::npos) << error;
  EXPECT_EQ(OpenQueue("no-scheme-here", &error), nullptr);
  EXPECT_NE(error.find("has no scheme"), std::string::npos) << error;
  EXPECT_NE(error.find("sqlite://"), std::string::npos) << error;
  auto schemes = QueueSchemes();
  EXPECT_NE(std::find(schemes.begin(), schemes.end(), "sqlite"), schemes.end());
  EXPECT_TRUE(std::is_sorted(schemes.begin(), schemes.end()));
}

TEST(QueueRegistry, RegisteredBackendIsUsedCaseInsensitively) {
  std::string seen;
  RegisterQueueBackend("FakeQ", [&seen](const std::string& uri, std::string* error) {
    seen = uri;
    *error = "fake backend refuses";
    return std::unique_ptr<Queue>();
  });
  std::string error;
  EXPECT_EQ(OpenQueue("fakeq://thing", &error), nullptr);
  EXPECT_EQ(seen, "fakeq://thing");
  EXPECT_EQ(error, "fake backend refuses");
  auto schemes = QueueSchemes();
  EXPECT_NE(std::find(schemes.begin(), schemes.end(), "fakeq"), schemes.end());
  // The scheme stays registered for the process; make it harmless for later tests.
  RegisterQueueBackend("fakeq", [](const std::string&, std::string* error) {
    *error = "fake";
    return std::unique_ptr<Queue>();
  });
}

}  // namespace
}  // namespace tidegate::queue

namespace tidegate::queue {
namespace {

TEST(RedactUri, HidesPasswordsAndTokensOnly) {
  EXPECT_EQ(RedactUri("redis://u:secret@127.0.0.1:6379/0/req?group=g"),
            "redis://u:***@127.0.0.1:6379/0/req?group=g");
  EXPECT_EQ(RedactUri("tls://s3cr3t@host:4222/S?consumer=c"), "tls://***@host:4222/S?consumer=c");
  EXPECT_EQ(RedactUri("nats://host:4222/S?consumer=c"), "nats://host:4222/S?consumer=c");
  EXPECT_EQ(RedactUri("sqlite:///var/q.db?queue=a"), "sqlite:///var/q.db?queue=a");
  EXPECT_EQ(RedactUri("pubsub://projects/p/topics/t@x"), "pubsub://projects/p/topics/t@x");
  EXPECT_EQ(RedactUri("not a uri"), "not a uri");
}

}  // namespace
}  // namespace tidegate::queue
