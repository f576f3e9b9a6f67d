// The publisher and the subscriber over real ZeroMQ sockets on 127.0.0.1: replay on connect,
// gaps, restarts and bad payloads.
#include <gtest/gtest.h>

#include <chrono>
#include <mutex>
#include <thread>
#include <zmq.hpp>

#include "kvevents/publisher.h"
#include "kvevents/subscriber.h"
#include "kvevents/zmq_context.h"

namespace tidegate::kvevents {
namespace {

struct Recorder : SubscriberSink {
  std::mutex mu;
  std::vector<std::string> log;  // "batch:<first hash>", "clear:<reason>", "live:0|1"
  void OnBatch(uint32_t, uint64_t, const EventBatch& b) override {
    std::lock_guard l(mu);
    const auto* s = b.events.empty() ? nullptr : std::get_if<BlockStored>(&b.events[0]);
    log.push_back("batch:" + (s ? std::to_string(s->block_hashes[0]) : std::string("?")));
  }
  void OnClear(uint32_t, uint64_t, std::string_view reason) override {
    std::lock_guard l(mu);
    log.push_back("clear:" + std::string(reason));
  }
  void OnLive(uint32_t, uint64_t, bool live) override {
    std::lock_guard l(mu);
    log.push_back(live ? "live:1" : "live:0");
  }
  size_t Count(const std::string& prefix) {
    std::lock_guard l(mu);
    size_t n = 0;
    for (const auto& e : log) n += e.rfind(prefix, 0) == 0;
    return n;
  }
  std::vector<std::string> Batches() {
    std::lock_guard l(mu);
    std::vector<std::string> out;
    for (const auto& e : log)
      if (e.rfind("batch:", 0) == 0) out.push_back(e);
    return out;
  }
};

// Waits (bounded) until pred holds.
template <typename P>
bool WaitFor(P pred, std::chrono::milliseconds limit = std::chrono::milliseconds(5000)) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return pred();
}

EventBatch Stored(uint64_t hash) {
  EventBatch b;
  BlockStored s;
  s.block_hashes = {hash};
  s.token_ids.assign(16, 1);
  s.block_size = 16;
  b.events.emplace_back(s);
  return b;
}

std::string Port(const std::string& endpoint) { return endpoint.substr(endpoint.rfind(':') + 1); }

TEST(KvEventsPubSub, ReplaysWhatWasPublishedBeforeConnectingThenGoesLive) {
  PublisherConfig cfg;
  cfg.enabled = true;
  cfg.endpoint = "tcp://127.0.0.1:*";
  cfg.replay_endpoint = "tcp://127.0.0.1:*";
  std::string err;
  auto pub = Publisher::Open(cfg, &err);
  ASSERT_TRUE(pub) << err;
  pub->Publish(Stored(100));  // before anyone subscribed: only a replay can deliver these
  pub->Publish(Stored(101));
  Recorder rec;
  Subscriber sub(&rec);
  sub.SetTargets({{0, 1, "sim", pub->endpoint(), pub->replay_endpoint(), ""}});
  ASSERT_TRUE(WaitFor([&] { return rec.Count("live:1") == 1; }));
  EXPECT_EQ(rec.Batches(), (std::vector<std::string>{"batch:100", "batch:101"}));
  // Live batches follow, in order, without duplicates.
  for (uint64_t h = 102; h < 110; ++h) pub->Publish(Stored(h));
  ASSERT_TRUE(WaitFor([&] { return rec.Batches().size() == 10; }));
  auto b = rec.Batches();
  for (size_t i = 0; i < b.size(); ++i) EXPECT_EQ(b[i], "batch:" + std::to_string(100 + i));
  ASSERT_TRUE(WaitFor([&] {
    auto st = sub.Status();
    return st.size() == 1 && st[0].last_seq == 9 && st[0].state == FeedState::kLive;
  }));
  auto st = sub.Status();
  EXPECT_EQ(st[0].batches, 10u);
  EXPECT_EQ(st[0].gaps, 0u);
  EXPECT_EQ(st[0].replays, 1u);
  EXPECT_EQ(st[0].connects, 1u);
}

// A replay of more batches than ZeroMQ's default high-water mark (1,000) loses none.
TEST(KvEventsPubSub, ReplaysALongBufferWhole) {
  PublisherConfig cfg;
  cfg.enabled = true;
  cfg.endpoint = "tcp://127.0.0.1:*";
  cfg.replay_endpoint = "tcp://127.0.0.1:*";
  std::string err;
  auto pub = Publisher::Open(cfg, &err);
  ASSERT_TRUE(pub) << err;
  for (uint64_t h = 0; h < 3000; ++h) pub->Publish(Stored(h));
  Recorder rec;
  Subscriber sub(&rec);
  sub.SetTargets({{0, 1, "sim", pub->endpoint(), pub->replay_endpoint(), ""}});
  ASSERT_TRUE(WaitFor([&] { return rec.Count("live:1") == 1; }, std::chrono::milliseconds(10000)));
  EXPECT_EQ(rec.Batches().size(), 3000u);
  auto st = sub.Status();
  ASSERT_TRUE(WaitFor([&] {
    st = sub.Status();
    return st.size() == 1 && st[0].last_seq == 2999;
  }));
  EXPECT_EQ(st[0].replay_failures, 0u);
}

TEST(KvEventsPubSub, PublisherRestartClearsAndResyncs) {
  PublisherConfig cfg;
  cfg.enabled = true;
  cfg.endpoint = "tcp://127.0.0.1:*";
  std::string err;
  auto pub = Publisher::Open(cfg, &err);
  ASSERT_TRUE(pub) << err;
  const std::string at = pub->endpoint();
  Recorder rec;
  Subscriber sub(&rec);
  sub.SetTargets({{0, 1, "sim", at, "", ""}});
  ASSERT_TRUE(WaitFor([&] { return rec.Count("live:1") == 1; }));
  // PUB/SUB joins late: publish until the subscription has reached the publisher.
  ASSERT_TRUE(WaitFor([&] {
    pub->Publish(Stored(1));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    return !rec.Batches().empty();
  }));
  const size_t clears = rec.Count("clear:");
  pub.reset();                                                     // the engine dies...
  ASSERT_TRUE(WaitFor([&] { return rec.Count("live:0") >= 2; }));  // disconnected
  cfg.endpoint = at;
  pub = Publisher::Open(cfg, &err);  // ...and comes back on the same address, seq from 0
  ASSERT_TRUE(pub) << err;
  ASSERT_TRUE(WaitFor([&] { return rec.Count("live:1") == 2; }));
  EXPECT_GT(rec.Count("clear:"), clears);  // what it held before is gone
  ASSERT_TRUE(WaitFor([&] {
    pub->Publish(Stored(2));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    return rec.Batches().back() == "batch:2";
  }));
}

// A raw PUB socket plays an engine that loses batches and sends garbage.
TEST(KvEventsPubSub, GapWithoutReplayClearsAndBadPayloadIsSkipped) {
  zmq::socket_t raw(Context(), zmq::socket_type::pub);
  raw.set(zmq::sockopt::linger, 0);
  raw.bind("tcp://127.0.0.1:*");
  const std::string at = raw.get(zmq::sockopt::last_endpoint);
  Recorder rec;
  Subscriber sub(&rec);
  sub.SetTargets({{3, 7, "raw", at, "", "kv@"}});
  auto send = [&](const std::string& topic, int64_t seq, const std::string& payload) {
    raw.send(zmq::buffer(topic), zmq::send_flags::sndmore);
    raw.send(zmq::buffer(EncodeSeq(seq)), zmq::send_flags::sndmore);
    raw.send(zmq::buffer(payload), zmq::send_flags::none);
  };
  ASSERT_TRUE(WaitFor([&] {
    send("kv@a", 0, Encode(Stored(10), Encoding::kMap));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    return !rec.Batches().empty();
  }));
  send("other", 1, Encode(Stored(99), Encoding::kMap));  // another topic: filtered out
  send("kv@a", 1, "not msgpack at all");                 // counted, skipped, not a gap
  send("kv@a", 2, Encode(Stored(12), Encoding::kArray));
  send("kv@a", 6, Encode(Stored(16), Encoding::kMap));  // 3..5 lost, no replay socket
  ASSERT_TRUE(WaitFor([&] { return rec.Batches().back() == "batch:16"; }));
  EXPECT_EQ(rec.Count("clear:a gap"), 1u);
  EXPECT_EQ(rec.Count("batch:99"), 0u);
  ASSERT_TRUE(WaitFor([&] {
    auto st = sub.Status();
    return st.size() == 1 && st[0].last_seq == 6;
  }));
  auto st = sub.Status();
  EXPECT_EQ(st[0].slot, 3u);
  EXPECT_EQ(st[0].uid, 7u);
  EXPECT_EQ(st[0].gaps, 1u);
  EXPECT_EQ(st[0].decode_errors, 1u);
  EXPECT_NE(st[0].last_error.find("seq 1"), std::string::npos) << st[0].last_error;
  // Dropping the target unsubscribes (and says the feed is no longer live).
  sub.SetTargets({});
  ASSERT_TRUE(WaitFor([&] { return sub.Status().empty(); }));
}

}  // namespace
}  // namespace tidegate::kvevents
