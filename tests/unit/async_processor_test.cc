// The async processor's building blocks: atomic publish+ack on the embedded queue (and its
// "superseded" rule), batch publishing, the result journal, URL parsing for the gateway address
// and the processor's configuration checks. Its dispatch decisions are unit-tested on a manual
// clock in async_dispatch_test.cc; the processor end to end is covered by
// tests/integration/async*.test.mjs against real gateways, simulators and queues.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <mutex>
#include <set>
#include <thread>

#include "async/journal.h"
#include "async/processor.h"
#include "http/client.h"
#include "queue/queue.h"
#include "sim/server.h"

namespace tidegate {
namespace {

using std::chrono::milliseconds;

class AsyncProcessorPartsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("tidegate_async_parts_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::unique_ptr<queue::Queue> Open(const std::string& file, const std::string& name) {
    std::string error;
    auto q = queue::OpenQueue("sqlite://" + (dir_ / file).string() + "?queue=" + name, &error);
    EXPECT_NE(q, nullptr) << error;
    return q;
  }
  std::filesystem::path dir_;
};

TEST_F(AsyncProcessorPartsTest, PublishAndAckIsAtomicWithinOneFile) {
  auto requests = Open("q.db", "requests");
  auto results = Open("q.db", "results");
  auto elsewhere = Open("other.db", "results");
  EXPECT_TRUE(results->AtomicPublishAck(*requests));
  EXPECT_FALSE(elsewhere->AtomicPublishAck(*requests));

  ASSERT_TRUE(requests->Publish("r1", {}, nullptr).ok);
  ASSERT_TRUE(requests->Publish("r2", {}, nullptr).ok);
  std::vector<queue::Message> got;
  ASSERT_TRUE(requests->Pull(10, milliseconds(60000), milliseconds(0), &got).ok);
  ASSERT_EQ(got.size(), 2u);

  std::vector<queue::PublishAck> items(2);
  items[0].data = "result-1";
  items[0].ack_id = got[0].ack_id;
  items[0].attributes = {{"id", "a"}};
  items[1].data = "result-2";
  items[1].ack_id = got[1].ack_id;
  ASSERT_TRUE(results->PublishAndAck(&items, *requests).ok);
  for (const auto& i : items) {
    EXPECT_TRUE(i.done);
    EXPECT_TRUE(i.published);
    EXPECT_FALSE(i.superseded);
  }
  // Both requests are gone (acknowledged), both results are there.
  std::vector<queue::Message> left;
  ASSERT_TRUE(requests->Pull(10, milliseconds(1000), milliseconds(0), &left).ok);
  EXPECT_TRUE(left.empty());
  std::vector<queue::Message> out;
  ASSERT_TRUE(results->Pull(10, milliseconds(1000), milliseconds(0), &out).ok);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].data, "result-1");
  EXPECT_EQ(out[0].attributes.at("id"), "a");
  EXPECT_EQ(out[1].data, "result-2");
}

TEST_F(AsyncProcessorPartsTest, ResultOfASupersededDeliveryIsNotPublished) {
  auto requests = Open("q.db", "requests");
  auto results = Open("q.db", "results");
  ASSERT_TRUE(requests->Publish("r1", {}, nullptr).ok);
  std::vector<queue::Message> first, second;
  ASSERT_TRUE(requests->Pull(1, milliseconds(50), milliseconds(0), &first).ok);
  ASSERT_EQ(first.size(), 1u);
  std::this_thread::sleep_for(milliseconds(80));  // the lease runs out ...
  ASSERT_TRUE(requests->Pull(1, milliseconds(60000), milliseconds(0), &second).ok);
  ASSERT_EQ(second.size(), 1u);  // ... and someone else holds the message now
  EXPECT_EQ(second[0].delivery_attempt, 2);

  std::vector<queue::PublishAck> stale(1);
  stale[0].data = "late result";
  stale[0].ack_id = first[0].ack_id;
  ASSERT_TRUE(results->PublishAndAck(&stale, *requests).ok);
  EXPECT_TRUE(stale[0].done);
  EXPECT_TRUE(stale[0].superseded);
  EXPECT_FALSE(stale[0].published);
  std::vector<queue::Message> out;
  ASSERT_TRUE(results->Pull(10, milliseconds(1000), milliseconds(0), &out).ok);
  EXPECT_TRUE(out.empty()) << "a superseded delivery must not publish a result";

  // The current holder's result goes through.
  std::vector<queue::PublishAck> current(1);
  current[0].data = "result";
  current[0].ack_id = second[0].ack_id;
  ASSERT_TRUE(results->PublishAndAck(&current, *requests).ok);
  EXPECT_FALSE(current[0].superseded);
  ASSERT_TRUE(results->Pull(10, milliseconds(1000), milliseconds(0), &out).ok);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].data, "result");
}

TEST_F(AsyncProcessorPartsTest, PublishAndAckAcrossFilesPublishesThenAcks) {
  auto requests = Open("q.db", "requests");
  auto results = Open("other.db", "results");
  ASSERT_TRUE(requests->Publish("r1", {}, nullptr).ok);
  std::vector<queue::Message> got;
  ASSERT_TRUE(requests->Pull(1, milliseconds(60000), milliseconds(0), &got).ok);
  std::vector<queue::PublishAck> items(1);
  items[0].data = "result";
  items[0].ack_id = got[0].ack_id;
  ASSERT_TRUE(results->PublishAndAck(&items, *requests).ok);
  EXPECT_TRUE(items[0].done);
  EXPECT_TRUE(items[0].published);
  std::vector<queue::Message> left, out;
  ASSERT_TRUE(requests->Pull(1, milliseconds(1000), milliseconds(0), &left).ok);
  EXPECT_TRUE(left.empty());
  ASSERT_TRUE(results->Pull(1, milliseconds(1000), milliseconds(0), &out).ok);
  ASSERT_EQ(out.size(), 1u);
}

TEST_F(AsyncProcessorPartsTest, PublishBatchKeepsOrder) {
  auto q = Open("q.db", "requests");
  std::vector<std::string> data;
  for (int i = 0; i < 600; ++i) data.push_back("m" + std::to_string(i));
  size_t n = 0;
  ASSERT_TRUE(q->PublishBatch(data, &n).ok);
  EXPECT_EQ(n, 600u);
  std::vector<queue::Message> got;
  ASSERT_TRUE(q->Pull(1000, milliseconds(1000), milliseconds(0), &got).ok);
  ASSERT_EQ(got.size(), 600u);
  for (int i = 0; i < 600; ++i) EXPECT_EQ(got[i].data, "m" + std::to_string(i));
}

TEST_F(AsyncProcessorPartsTest, JournalRecordsLooksUpAndForgets) {
  std::string error;
  std::string path = (dir_ / "journal.db").string();
  {
    auto j = async::Journal::Open(path, &error);
    ASSERT_NE(j, nullptr) << error;
    EXPECT_EQ(j->Record({{"m1", "{\"id\":\"a\"}"}, {"m2", std::string("b\0c", 3)}}), "");
    EXPECT_EQ(j->Lookup("m1").value_or(""), "{\"id\":\"a\"}");
    EXPECT_EQ(j->Lookup("m2").value_or(""), std::string("b\0c", 3));
    EXPECT_FALSE(j->Lookup("m3").has_value());
  }
  // Durable across a reopen (a restarted processor).
  auto j = async::Journal::Open(path, &error);
  ASSERT_NE(j, nullptr) << error;
  EXPECT_TRUE(j->Lookup("m1").has_value());
  EXPECT_EQ(j->Forget({"m1"}), "");
  EXPECT_FALSE(j->Lookup("m1").has_value());
  EXPECT_TRUE(j->Lookup("m2").has_value());
}

TEST_F(AsyncProcessorPartsTest, JournalOpenFailsClearly) {
  std::string error;
  auto j = async::Journal::Open((dir_ / "no-such-dir" / "j.db").string(), &error);
  EXPECT_EQ(j, nullptr);
  EXPECT_NE(error.find("journal"), std::string::npos) << error;
}

// A queue that delivers the same message twice (two ack ids) while the first delivery is still
// held — what Pub/Sub's at-least-once delivery may do — and records what the processor does.
struct DupState {
  std::mutex mu;
  int pulls = 0;
  std::string request;
  std::vector<std::string> published, acked, nacked;
};
class DupQueue final : public queue::Queue {
 public:
  DupQueue(std::string uri, std::shared_ptr<DupState> s) : uri_(std::move(uri)), s_(std::move(s)) {}
  std::string_view kind() const override { return "dupq"; }
  const std::string& uri() const override { return uri_; }
  queue::Status Publish(std::string_view data, const std::map<std::string, std::string>&,
                        std::string*) override {
    std::lock_guard lock(s_->mu);
    s_->published.emplace_back(data);
    return queue::Status::Ok();
  }
  queue::Status Pull(int, milliseconds, milliseconds, std::vector<queue::Message>* out) override {
    out->clear();
    int n;
    {
      std::lock_guard lock(s_->mu);
      n = ++s_->pulls;
    }
    if (n <= 2) {
      queue::Message m;
      m.id = "m1";
      m.ack_id = "ack-" + std::to_string(n);
      m.delivery_attempt = n;
      m.data = s_->request;
      out->push_back(std::move(m));
    } else {
      std::this_thread::sleep_for(milliseconds(20));
    }
    return queue::Status::Ok();
  }
  queue::Status Ack(const std::vector<std::string>& ids) override {
    std::lock_guard lock(s_->mu);
    s_->acked.insert(s_->acked.end(), ids.begin(), ids.end());
    return queue::Status::Ok();
  }
  queue::Status Nack(const std::vector<std::string>& ids) override {
    std::lock_guard lock(s_->mu);
    s_->nacked.insert(s_->nacked.end(), ids.begin(), ids.end());
    return queue::Status::Ok();
  }
  queue::Status Extend(const std::vector<std::string>&, milliseconds) override {
    return queue::Status::Ok();
  }

 private:
  std::string uri_;
  std::shared_ptr<DupState> s_;
};

TEST_F(AsyncProcessorPartsTest, AMessageDeliveredTwiceWhileHeldRunsOnceAndBothDeliveriesAreAcked) {
  // A real (simulated) model server stands in for the gateway: the processor only needs an
  // OpenAI endpoint (without /v1/capacity it paces by its window alone).
  sim::SimConfig sc;
  sc.ports = {0};
  sc.engine.max_num_seqs = 8;
  sim::SimCluster simc(sc);
  ASSERT_EQ(simc.Start(), "");
  auto state = std::make_shared<DupState>();
  state->request =
      R"({"id":"req-1","payload":{"model":"meta-llama/Llama-3.1-8B-Instruct","max_tokens":40,)"
      R"("messages":[{"role":"user","content":"hello"}]}})";
  queue::RegisterQueueBackend("dupq", [state](const std::string& uri, std::string*) {
    return std::make_unique<DupQueue>(uri, state);
  });
  async::ProcessorConfig cfg;
  cfg.gateway = "http://127.0.0.1:" + std::to_string(simc.ports()[0]);
  cfg.requests = "dupq://requests";
  cfg.responses = "dupq://results";
  cfg.metrics_port = -1;
  cfg.progress_interval = milliseconds(0);
  cfg.journal = (dir_ / "journal.db").string();
  async::Processor processor(cfg);
  ASSERT_EQ(processor.Start(), "");
  std::thread runner([&] { processor.Run(false); });
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  for (;;) {
    {
      std::lock_guard lock(state->mu);
      if (state->acked.size() >= 2) break;
    }
    ASSERT_LT(std::chrono::steady_clock::now(), until) << "no result within 20 s";
    std::this_thread::sleep_for(milliseconds(10));
  }
  processor.Stop();
  runner.join();
  simc.Stop();
  std::lock_guard lock(state->mu);
  ASSERT_EQ(state->published.size(), 1u) << "one message, one result";
  EXPECT_NE(state->published[0].find("\"id\":\"req-1\""), std::string::npos);
  EXPECT_NE(state->published[0].find("\"status_code\":200"), std::string::npos)
      << state->published[0];
  std::set<std::string> acked(state->acked.begin(), state->acked.end());
  EXPECT_EQ(acked, (std::set<std::string>{"ack-1", "ack-2"}));
  EXPECT_TRUE(state->nacked.empty());
}

TEST(HttpUrlTest, ParsesHostPortAndBasePath) {
  http::Url u;
  std::string error;
  ASSERT_TRUE(http::ParseHttpUrl("http://127.0.0.1:8080", &u, &error)) << error;
  EXPECT_EQ(u.host, "127.0.0.1");
  EXPECT_EQ(u.port, 8080);
  EXPECT_EQ(u.base_path, "");
  ASSERT_TRUE(http::ParseHttpUrl("http://gw.local/prefix/", &u, &error)) << error;
  EXPECT_EQ(u.host, "gw.local");
  EXPECT_EQ(u.port, 80);
  EXPECT_EQ(u.base_path, "/prefix");
  EXPECT_EQ(u.ToString(), "http://gw.local:80/prefix");
  ASSERT_TRUE(http::ParseHttpUrl("https://x", &u, &error)) << error;
  EXPECT_TRUE(u.tls);
  EXPECT_EQ(u.port, 443);
  EXPECT_EQ(u.ToString(), "https://x:443");
  EXPECT_FALSE(http::ParseHttpUrl("ftp://x", &u, &error));
  EXPECT_NE(error.find("http://"), std::string::npos);
  EXPECT_FALSE(http::ParseHttpUrl("http://x:0", &u, &error));
  EXPECT_FALSE(http::ParseHttpUrl("http://x:99999", &u, &error));
  EXPECT_FALSE(http::ParseHttpUrl("http://:80", &u, &error));
}

TEST(ProcessorConfigTest, ValidateNamesTheProblem) {
  async::ProcessorConfig c;
  EXPECT_NE(c.Validate().find("--requests"), std::string::npos);
  c.requests = "sqlite:///tmp/x.db?queue=a";
  EXPECT_NE(c.Validate().find("--responses"), std::string::npos);
  c.responses = "sqlite:///tmp/x.db?queue=b";
  EXPECT_EQ(c.Validate(), "");
  c.gateway = "ftp://x";
  EXPECT_NE(c.Validate().find("--gateway"), std::string::npos);
  c.gateway = "http://127.0.0.1:8080";
  c.min_window = 500;
  EXPECT_NE(c.Validate().find("--min-window"), std::string::npos);
  c.min_window = 1;
  c.lease = milliseconds(10);
  EXPECT_NE(c.Validate().find("--lease"), std::string::npos);
  c.lease = milliseconds(60'000);
  c.escalation_objective = c.objective;  // escalating to the same objective is no escalation
  EXPECT_NE(c.Validate().find("--escalation-objective"), std::string::npos);
  c.escalation_objective = "";  // off
  EXPECT_EQ(c.Validate(), "");
  c.escalation_rate = -1;
  EXPECT_NE(c.Validate().find("--escalation-rate"), std::string::npos);
}

}  // namespace
}  // namespace tidegate
