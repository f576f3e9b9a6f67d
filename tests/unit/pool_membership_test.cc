// Pool membership at run time (pool/endpoint.h): Reconcile adds, drains, takes back and drops
// endpoints; slots are reused only after kReuseAfter with a new object; what the scheduler and
// the Director keep about an endpoint follows it (control/director.h MembershipChanged).
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "control/director.h"
#include "metrics/registry.h"
#include "pool/endpoint.h"
#include "pool/saturation.h"
#include "sched/picker.h"
#include "sched/prefix_index.h"

namespace tidegate::pool {
namespace {

using std::chrono::seconds;

EndpointConfig Ep(uint16_t port, const std::string& host = "10.0.0.1") { return {host, port}; }

std::vector<std::string> ActiveAddresses(const Pool& pool) {
  std::vector<std::string> out;
  for (size_t i = 0; i < pool.size(); ++i)
    if (pool.at(i).Active()) out.push_back(pool.at(i).address());
  return out;
}

TEST(PoolMembership, ReconcileAddsNewcomersAndDrainsLeaversUntilTheirRequestsFinish) {
  Pool pool({Ep(1), Ep(2)});
  const Nanos t0 = seconds(100);
  pool.at(1).AddInFlight(1);  // a request in flight on :2
  auto c = pool.Reconcile({Ep(1), Ep(3)}, t0);
  EXPECT_EQ(c.added, std::vector<size_t>{2});
  EXPECT_EQ(c.removed, std::vector<size_t>{1});
  EXPECT_TRUE(c.gone.empty());  // :2 still has a request in flight
  EXPECT_EQ(ActiveAddresses(pool), (std::vector<std::string>{"10.0.0.1:1", "10.0.0.1:3"}));
  EXPECT_EQ(pool.at(1).membership(), Endpoint::Membership::kDraining);
  EXPECT_FALSE(pool.at(1).Available(t0));  // no new requests for a draining endpoint
  EXPECT_EQ(pool.ActiveCount(), 2u);
  EXPECT_TRUE(pool.Sweep(t0).empty());
  pool.at(1).AddInFlight(-1);
  auto swept = pool.Sweep(t0 + seconds(1));
  EXPECT_EQ(swept.gone, std::vector<size_t>{1});
  EXPECT_EQ(pool.at(1).membership(), Endpoint::Membership::kGone);
  // Nothing changes when the same set comes again.
  const uint64_t v = pool.Version();
  EXPECT_TRUE(pool.Reconcile({Ep(3), Ep(1), Ep(1)}, t0 + seconds(2)).empty());
  EXPECT_EQ(pool.Version(), v);
}

TEST(PoolMembership, ADrainingEndpointNamedAgainIsTakenBackWithItsState) {
  Pool pool({Ep(1), Ep(2)});
  pool.at(1).AddInFlight(1);
  const uint64_t uid = pool.at(1).uid();
  pool.Reconcile({Ep(1)}, seconds(1));
  ASSERT_EQ(pool.at(1).membership(), Endpoint::Membership::kDraining);
  auto c = pool.Reconcile({Ep(1), Ep(2)}, seconds(2));
  EXPECT_EQ(c.added, std::vector<size_t>{1});
  EXPECT_TRUE(pool.at(1).Active());
  EXPECT_EQ(pool.at(1).uid(), uid);  // the same object: its counts and metrics stay
  EXPECT_EQ(pool.at(1).InFlight(), 1);
  EXPECT_EQ(pool.size(), 2u);
}

TEST(PoolMembership, AGoneSlotIsReusedOnlyAfterTheGraceWithANewObject) {
  Pool pool({Ep(1), Ep(2)});
  const Nanos t0 = seconds(1000);
  pool.Reconcile({Ep(1)}, t0);  // :2 has nothing in flight: gone at once
  ASSERT_EQ(pool.at(1).membership(), Endpoint::Membership::kGone);
  const uint64_t old_uid = pool.at(1).uid();
  const Endpoint* old_object = &pool.at(1);
  // Within the grace a newcomer takes a new slot.
  pool.Reconcile({Ep(1), Ep(3)}, t0 + seconds(10));
  EXPECT_EQ(pool.size(), 3u);
  EXPECT_EQ(pool.at(2).address(), "10.0.0.1:3");
  // After it, the gone slot is reused by a new object; the old one is still readable.
  pool.Reconcile({Ep(1), Ep(3), Ep(4)}, t0 + Pool::kReuseAfter + seconds(1));
  EXPECT_EQ(pool.size(), 3u);
  EXPECT_EQ(pool.at(1).address(), "10.0.0.1:4");
  EXPECT_NE(pool.at(1).uid(), old_uid);
  EXPECT_EQ(old_object->address(), "10.0.0.1:2");
  EXPECT_EQ(pool.FindActive("10.0.0.1:4"), &pool.at(1));
  EXPECT_EQ(pool.FindActive("10.0.0.1:2"), nullptr);
}

TEST(PoolMembership, TheSameAddressWithOtherMetricsSettingsIsAnotherServer) {
  Pool pool({Ep(1)});
  EndpointConfig moved = Ep(1);
  moved.metrics_port = 9000;
  auto c = pool.Reconcile({moved}, seconds(1));
  EXPECT_EQ(c.added.size(), 1u);
  EXPECT_EQ(c.removed, std::vector<size_t>{0});
  EXPECT_EQ(pool.at(c.added[0]).config().metrics_port, 9000);
}

TEST(PoolMembership, AnEmptySetDrainsEverythingAndTheListenerSeesEachChange) {
  Pool pool({Ep(1), Ep(2)});
  std::vector<Pool::Change> seen;
  pool.OnChange([&](const Pool::Change& c) { seen.push_back(c); });
  pool.at(0).AddInFlight(1);
  pool.Reconcile({}, seconds(1));
  EXPECT_EQ(pool.ActiveCount(), 0u);
  EXPECT_EQ(pool.AvailableCount(seconds(1)), 0u);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].removed, (std::vector<size_t>{0, 1}));
  EXPECT_EQ(seen[0].gone, std::vector<size_t>{1});
  pool.at(0).AddInFlight(-1);
  pool.Sweep(seconds(2));
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[1].gone, std::vector<size_t>{0});
}

TEST(PoolMembership, AFullTableRefusesNewcomersWithAReason) {
  std::vector<EndpointConfig> many;
  for (size_t i = 0; i < Pool::kMaxEndpoints; ++i)
    many.push_back(Ep(static_cast<uint16_t>(1 + i % 60000),
                      "10.0." + std::to_string(i / 250) + "." + std::to_string(i % 250)));
  Pool pool(many);
  ASSERT_EQ(pool.size(), Pool::kMaxEndpoints);
  many.push_back(Ep(1, "10.9.9.9"));
  auto c = pool.Reconcile(many, seconds(1));
  ASSERT_EQ(c.refused.size(), 1u);
  EXPECT_NE(c.refused[0].find("10.9.9.9:1"), std::string::npos);
  EXPECT_NE(c.refused[0].find("full"), std::string::npos);
}

TEST(PrefixIndexMembership, DroppingAnEndpointForgetsItsBlocksButNotOthers) {
  sched::PrefixIndex idx(16);
  const std::vector<uint64_t> blocks = {11, 22, 33};
  idx.Record(0, blocks);
  idx.Record(1, blocks);
  idx.DropEndpoint(0);
  std::vector<uint32_t> matched(2, 0), touched;
  idx.Match(blocks, matched, &touched);
  EXPECT_EQ(matched[0], 0u);
  EXPECT_EQ(matched[1], 3u);
  EXPECT_EQ(idx.BlocksHeld(0), 0u);
  idx.DropEndpoint(1);
  EXPECT_EQ(idx.DistinctBlocks(), 0u);
  idx.DropEndpoint(7);  // never seen: nothing happens
}

// The Director, through the pool's listener: requests go to the newcomer only, and with nobody
// left the refusal says so.
TEST(PoolMembership, TheDirectorRoutesToNewcomersOnlyAndSaysWhenNoneIsLeft) {
  ManualClock clock{seconds(1000)};
  Pool pool({Ep(1)});
  metrics::Registry registry;
  auto detector = std::make_shared<const SaturationDetector>(SaturationConfig{});
  control::DirectorConfig cfg;
  control::Director director(cfg, pool, sched::MakePicker("tidegate-default", detector), registry);
  pool.OnChange([&](const Pool::Change& c) { director.MembershipChanged(c, clock.Now()); });
  auto load = [&](size_t i) {
    EndpointMetrics m;
    m.scrape_time = clock.Now();
    pool.at(i).PublishMetrics(std::move(m));
  };
  load(0);
  const std::string prompt(4000, 'p');
  auto admit = [&](control::Ticket& t) {
    control::RequestView v;
    v.path = "/v1/completions";
    v.model = "m";
    v.prompt = prompt;
    v.body_bytes = 100;
    static uint64_t id = 0;
    v.id = ++id;
    return director.Admit(t, v, clock.Now());
  };
  control::Ticket a;
  auto d = admit(a);
  ASSERT_EQ(d.kind, control::DecisionKind::kRoute);
  EXPECT_EQ(d.pick.order[0], 0u);
  director.Finish(a, {}, clock.Now());
  // :1 leaves, :2 joins: requests go to :2 only.
  pool.Reconcile({Ep(2)}, clock.Now());
  load(1);
  for (int i = 0; i < 3; ++i) {
    control::Ticket t;
    auto r = admit(t);
    ASSERT_EQ(r.kind, control::DecisionKind::kRoute);
    EXPECT_EQ(r.pick.count, 1u);
    EXPECT_EQ(pool.at(r.pick.order[0]).address(), "10.0.0.1:2");
    director.Finish(t, {}, clock.Now());
  }
  // Nothing left at all: a clear 503.
  pool.Reconcile({}, clock.Now());
  control::Ticket none;
  auto r = admit(none);
  ASSERT_EQ(r.kind, control::DecisionKind::kReject);
  EXPECT_EQ(r.reject.status, 503);
  EXPECT_NE(r.reject.message.find("0 in the pool"), std::string::npos);
}

}  // namespace
}  // namespace tidegate::pool

namespace tidegate::pool {
namespace {

// Membership changes while decisions run on other threads: every endpoint a decision returns is
// a slot of the table holding a live, whole object. (Races show under TSan and ASan, which run
// the unit tests in `make test`.)
TEST(PoolMembership, ReconcileWhilePickingFromOtherThreads) {
  Pool pool({Ep(1), Ep(2), Ep(3)});
  auto detector = std::make_shared<const SaturationDetector>(SaturationConfig{});
  auto picker = sched::MakePicker("tidegate-default", detector);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> picks{0};
  std::vector<std::thread> pickers;
  for (int t = 0; t < 2; ++t) {
    pickers.emplace_back([&] {
      sched::RequestInfo r;
      r.model = "m";
      const std::string prompt(512, 'q');
      r.prompt = prompt;
      while (!stop.load()) {
        const Nanos now = seconds(1000);
        sched::PickResult p = picker->Pick(r, pool, now);
        for (size_t k = 0; k < p.count; ++k) {
          ASSERT_LT(p.order[k], pool.size());
          const Endpoint& ep = pool.at(p.order[k]);
          EXPECT_EQ(ep.address().rfind("10.0.0.1:", 0), 0u);  // a live, whole object
        }
        picks.fetch_add(1);
      }
    });
  }
  Nanos now = seconds(1000);
  // 290 changes, 2 s of the pool's clock apart: slots become reusable every few rounds
  // (kReuseAfter) and the clock stays short of kRetainReplaced, so no replaced object is freed
  // while a decision may read it (the contract: a decision takes microseconds). The deciding
  // threads run throughout; each round waits until they made a pick since the last one.
  for (int round = 0; round < 290; ++round) {
    std::vector<EndpointConfig> want;
    for (int k = 0; k < 4; ++k) want.push_back(Ep(static_cast<uint16_t>(1 + (round + k) % 9)));
    const Pool::Change c = pool.Reconcile(want, now);
    for (size_t i : c.gone) picker->OnEndpointGone(static_cast<uint32_t>(i));
    now += seconds(2);
    const uint64_t seen = picks.load();
    for (int spin = 0; spin < 100'000 && picks.load() == seen; ++spin) std::this_thread::yield();
  }
  stop.store(true);
  for (auto& t : pickers) t.join();
  EXPECT_GT(picks.load(), 0u);
  EXPECT_EQ(pool.ActiveCount(), 4u);
  // One newcomer a round; a gone slot is reused 30 rounds (60 s) later: 4 active + ~30 waiting,
  // far below the 290 slots of a table without reuse.
  EXPECT_LE(pool.size(), 40u);
}

}  // namespace
}  // namespace tidegate::pool
