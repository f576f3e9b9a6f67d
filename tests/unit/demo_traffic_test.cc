// The demo's sample async backlog (cli/demo_traffic.h) on a real embedded queue file: the first
// round submits the initial backlog as well-formed request messages, later rounds top it up
// below the low-water mark, and the sample's own results are taken while the user's stay.
#include "cli/demo_traffic.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>

#include "async/message.h"
#include "queue/queue.h"

namespace tidegate::cli {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

struct Files {
  Files() {
    dir = fs::temp_directory_path() / ("tg-demo-traffic-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    db = (dir / "q.db").string();
  }
  ~Files() { fs::remove_all(dir); }
  std::string Uri(const std::string& q) const { return "sqlite://" + db + "?queue=" + q; }
  fs::path dir;
  std::string db;
};

TEST(DemoTraffic, PresetsHaveSpikesAndABacklog) {
  DemoTrafficPreset p = SampleTraffic();
  EXPECT_GT(p.realtime.spike_rps, p.realtime.base_rps);
  EXPECT_GT(p.realtime.spike_every_s, p.realtime.spike_duration_s);
  EXPECT_EQ(p.window_s, p.realtime.spike_every_s);
  EXPECT_GT(p.initial, 0);
  EXPECT_GT(p.top_up, 0);
  bench::Scenario seed;
  bench::RunSpec run;
  run.realtime.spike_every_s = 15;
  run.async.requests = 2400;
  seed.runs.push_back(run);
  DemoTrafficPreset s = SeedTraffic(seed);
  EXPECT_EQ(s.window_s, 15);
  EXPECT_EQ(s.initial, 2400);
  EXPECT_EQ(s.low_water, 1200);
}

TEST(DemoTraffic, BacklogIsSubmittedToppedUpAndItsResultsTaken) {
  Files f;
  DemoTrafficPreset p = SampleTraffic();
  p.initial = 5;
  p.top_up = 4;
  p.low_water = 3;
  AsyncBacklog b(f.Uri("requests"), f.Uri("results"), "m", p, 1);
  std::string err;
  ASSERT_TRUE(b.Open(&err)) << err;
  auto requests = queue::OpenQueue(f.Uri("requests"), &err);
  auto results = queue::OpenQueue(f.Uri("results"), &err);
  ASSERT_TRUE(requests && results) << err;

  EXPECT_EQ(b.Tick(), "");
  EXPECT_EQ(b.submitted(), 5u);
  EXPECT_EQ(requests->Backlog().value_or(-1), 5);
  EXPECT_EQ(b.Tick(), "");  // 5 left, not below 3: nothing more
  EXPECT_EQ(b.submitted(), 5u);

  // The processor's part: take 3, answer them.
  std::vector<queue::Message> got;
  ASSERT_TRUE(requests->Pull(3, milliseconds(30000), milliseconds(0), &got).ok);
  ASSERT_EQ(got.size(), 3u);
  const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  std::vector<std::string> acks;
  for (const auto& m : got) {
    async::ParsedRequest r = async::ParseRequestMessage(m.data, "");
    ASSERT_TRUE(r.ok()) << r.error_message;
    EXPECT_EQ(r.request.id.rfind("sample-async-", 0), 0u) << r.request.id;
    EXPECT_EQ(r.request.path, "/v1/completions");
    EXPECT_NEAR(static_cast<double>(r.request.deadline - now), 86400, 60);
    async::Result res;
    res.id = r.request.id;
    res.status_code = 200;
    res.payload = "{}";
    ASSERT_TRUE(results->Publish(async::RenderResultMessage(res), {}, nullptr).ok);
    acks.push_back(m.ack_id);
  }
  ASSERT_TRUE(requests->Ack(acks).ok);
  // A result of the user's own work, on the same results queue.
  async::Result mine;
  mine.id = "doc-1";
  mine.status_code = 200;
  mine.payload = "{}";
  ASSERT_TRUE(results->Publish(async::RenderResultMessage(mine), {}, nullptr).ok);

  EXPECT_EQ(b.Tick(), "");
  EXPECT_EQ(b.submitted(), 9u);  // 2 left < 3: topped up by 4
  EXPECT_EQ(requests->Backlog().value_or(-1), 6);
  EXPECT_EQ(b.results_taken(), 3u);
  // The user's result is still there, and can be read at once.
  std::vector<queue::Message> left;
  ASSERT_TRUE(results->Pull(10, milliseconds(30000), milliseconds(0), &left).ok);
  ASSERT_EQ(left.size(), 1u);
  async::Result r;
  ASSERT_TRUE(async::ParseResultMessage(left[0].data, &r, &err)) << err;
  EXPECT_EQ(r.id, "doc-1");
}

TEST(DemoTraffic, SampleResultsBehindManyOfTheUsersAreStillTaken) {
  Files f;
  DemoTrafficPreset p = SampleTraffic();
  p.initial = 1;
  AsyncBacklog b(f.Uri("requests"), f.Uri("results"), "m", p, 1);
  std::string err;
  ASSERT_TRUE(b.Open(&err)) << err;
  auto results = queue::OpenQueue(f.Uri("results"), &err);
  ASSERT_TRUE(results) << err;
  std::vector<std::string> batch;
  for (int i = 0; i < 700; ++i) {  // more than one scan round of the user's own results
    async::Result r;
    r.id = "doc-" + std::to_string(i);
    r.status_code = 200;
    batch.push_back(async::RenderResultMessage(r));
  }
  for (int i = 0; i < 2; ++i) {
    async::Result r;
    r.id = "sample-async-" + std::to_string(i + 1);
    r.status_code = 200;
    batch.push_back(async::RenderResultMessage(r));
  }
  size_t published = 0;
  ASSERT_TRUE(results->PublishBatch(batch, &published).ok);
  EXPECT_EQ(b.Tick(), "");
  EXPECT_EQ(b.results_taken(), 2u);
  EXPECT_EQ(results->Backlog().value_or(-1), 700);
  std::vector<queue::Message> left;
  ASSERT_TRUE(results->Pull(1000, milliseconds(30000), milliseconds(0), &left).ok);
  EXPECT_EQ(left.size(), 700u);  // handed back: readable at once
}

TEST(DemoTraffic, AnUnopenableQueueIsAnError) {
  DemoTrafficPreset p = SampleTraffic();
  AsyncBacklog b("nosuch://x", "nosuch://y", "m", p, 1);
  std::string err;
  EXPECT_FALSE(b.Open(&err));
  EXPECT_FALSE(err.empty());
}

}  // namespace
}  // namespace tidegate::cli
