// The Director's decisions on the manual clock (control/director.h): every decision kind and
// reject kind, band order, fairness, EDF, TTL, eviction, cancellation and the feedback hooks.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "common/clock.h"
#include "control/director.h"
#include "metrics/registry.h"
#include "pool/saturation.h"
#include "sched/framework.h"
#include "sched/picker.h"

namespace tidegate::control {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

struct RecordingWaiter : Waiter {
  std::vector<Decision> resolved;
  std::vector<Reject> evicted;
  void Resolve(const Decision& d) override { resolved.push_back(d); }
  void Evicted(const Reject& r) override { evicted.push_back(r); }
};

// A request the test drives: its ticket, its waiter and the strings its view points to.
struct Req {
  Ticket ticket;
  RecordingWaiter waiter;
  std::string objective, flow, ttl, slo;
  Req() { ticket.waiter = &waiter; }
};

struct Fixture {
  explicit Fixture(int n, DirectorConfig cfg = {}, pool::SaturationConfig sat = {},
                   std::string policy = "tidegate-default",
                   std::unique_ptr<sched::Picker> picker = nullptr)
      : pool(Endpoints(n)), detector(std::make_shared<const pool::SaturationDetector>(sat)) {
    if (!picker) picker = sched::MakePicker(policy, detector);
    director = std::make_unique<Director>(std::move(cfg), pool, std::move(picker), registry);
    for (int i = 0; i < n; ++i) Load(i, 0, 0);
  }
  static std::vector<pool::EndpointConfig> Endpoints(int n) {
    std::vector<pool::EndpointConfig> v;
    for (int i = 0; i < n; ++i) v.push_back({"10.0.0.1", static_cast<uint16_t>(8000 + i)});
    return v;
  }
  void Load(int i, double waiting, double running, double kv = 0) {
    pool::EndpointMetrics m;
    m.waiting = waiting;
    m.running = running;
    m.kv_usage = kv;
    m.has_kv = true;
    m.scrape_time = clock.Now();
    pool.at(i).PublishMetrics(std::move(m));
  }
  Decision Admit(Req& r, uint64_t body_bytes = 100) {
    RequestView v;
    v.path = "/v1/chat/completions";
    v.model = "m";
    v.body_bytes = body_bytes;
    v.objective = r.objective;
    v.fairness_id = r.flow;
    v.ttl_ms = r.ttl;
    v.slo_ttft_ms = r.slo;
    v.id = ++next_id;
    return director->Admit(r.ticket, v, clock.Now());
  }
  void Finish(Req& r, int status = 200) {
    sched::Outcome o;
    o.status = status;
    director->Finish(r.ticket, o, clock.Now());
  }
  double Metric(const std::string& needle) const {
    std::string text = registry.Render();
    size_t pos = text.find(needle + " ");
    if (pos == std::string::npos) return -1;
    return std::stod(text.substr(pos + needle.size() + 1));
  }

  ManualClock clock{seconds(1000)};
  pool::Pool pool;
  metrics::Registry registry;
  std::shared_ptr<const pool::SaturationDetector> detector;
  std::unique_ptr<Director> director;
  uint64_t next_id = 0;
};

pool::SaturationConfig Bound(int n) {
  pool::SaturationConfig s;
  s.max_in_flight_per_endpoint = n;
  return s;
}

TEST(Director, RoutesAtOnceWhenAnEndpointHasRoomAndReservesIt) {
  Fixture f(2);
  Req r;
  Decision d = f.Admit(r);
  ASSERT_EQ(d.kind, DecisionKind::kRoute);
  ASSERT_EQ(d.pick.count, 2u);
  EXPECT_EQ(f.pool.at(d.pick.order[0]).InFlight(), 1);
  EXPECT_EQ(f.pool.at(d.pick.order[0]).RoutedSinceScrape(), 1);
  f.Finish(r);
  EXPECT_EQ(f.pool.at(d.pick.order[0]).InFlight(), 0);
  EXPECT_EQ(f.pool.at(d.pick.order[0]).CompletedSinceScrape(), 1);
}

TEST(Director, WaitsWhileNoEndpointHasRoomAndBindsTheEndpointThatFreesFirst) {
  DirectorConfig cfg;
  Fixture f(2, cfg, Bound(1));
  Req a, b, c;
  ASSERT_EQ(f.Admit(a).kind, DecisionKind::kRoute);
  ASSERT_EQ(f.Admit(b).kind, DecisionKind::kRoute);
  EXPECT_EQ(f.Admit(c).kind, DecisionKind::kWait);
  EXPECT_EQ(f.director->Queues().requests, 1u);
  EXPECT_EQ(f.Metric("tidegate_flow_control_queue_size{priority=\"0\"}"), 1);
  const uint32_t freed = b.ticket.reserved;
  f.clock.Advance(milliseconds(30));
  f.Finish(b);
  ASSERT_EQ(c.waiter.resolved.size(), 1u);
  const Decision& d = c.waiter.resolved[0];
  ASSERT_EQ(d.kind, DecisionKind::kRoute);
  EXPECT_EQ(d.pick.order[0], freed);  // late binding: the endpoint that had room first
  EXPECT_EQ(f.director->Queues().requests, 0u);
  EXPECT_EQ(f.Metric("tidegate_flow_control_queue_size{priority=\"0\"}"), 0);
  EXPECT_EQ(f.Metric("tidegate_flow_control_dispatched_total{priority=\"0\"}"), 1);
}

TEST(Director, FreshMetricsShowingRoomDispatchWaitingRequests) {
  Fixture f(1);
  f.Load(0, 6, 2);  // saturated: 6 waiting / 5
  Req r;
  EXPECT_EQ(f.Admit(r).kind, DecisionKind::kWait);
  f.director->Poke(f.clock.Now());
  EXPECT_TRUE(r.waiter.resolved.empty());
  f.clock.Advance(milliseconds(50));
  f.Load(0, 1, 2);
  f.director->Poke(f.clock.Now());
  ASSERT_EQ(r.waiter.resolved.size(), 1u);
  EXPECT_EQ(r.waiter.resolved[0].kind, DecisionKind::kRoute);
}

TEST(Director, BandsDispatchStrictlyHighestPriorityFirst) {
  DirectorConfig cfg;
  cfg.objectives = {{"standard", 0}, {"premium", 10}, {"sheddable", -1}};
  Fixture f(1, cfg, Bound(1));
  Req running;
  ASSERT_EQ(f.Admit(running).kind, DecisionKind::kRoute);
  std::vector<std::unique_ptr<Req>> standard;
  for (int i = 0; i < 3; ++i) {
    standard.push_back(std::make_unique<Req>());
    ASSERT_EQ(f.Admit(*standard.back()).kind, DecisionKind::kWait);
  }
  Req premium;
  premium.objective = "premium";
  ASSERT_EQ(f.Admit(premium).kind, DecisionKind::kWait);
  f.Finish(running);
  ASSERT_EQ(premium.waiter.resolved.size(), 1u);  // arrived last, served first
  for (auto& s : standard) EXPECT_TRUE(s->waiter.resolved.empty());
  f.Finish(premium);
  EXPECT_EQ(standard[0]->waiter.resolved.size(), 1u);  // then FCFS within the band
  EXPECT_TRUE(standard[1]->waiter.resolved.empty());
}

TEST(Director, TenantsOfABandTakeTurns) {
  Fixture f(1, {}, Bound(1));
  Req running;
  ASSERT_EQ(f.Admit(running).kind, DecisionKind::kRoute);
  std::vector<std::unique_ptr<Req>> all;
  auto add = [&](const char* flow) {
    all.push_back(std::make_unique<Req>());
    all.back()->flow = flow;
    EXPECT_EQ(f.Admit(*all.back()).kind, DecisionKind::kWait);
  };
  for (int i = 0; i < 4; ++i) add("big");
  add("small");
  std::vector<std::string> order;
  Req* current = &running;
  for (int k = 0; k < 5; ++k) {
    f.Finish(*current);
    Req* next = nullptr;
    for (auto& r : all)
      if (r->waiter.resolved.size() == 1 && r->ticket.reserved != sched::Outcome::kNone &&
          !r->ticket.finished)
        next = r.get();
    ASSERT_NE(next, nullptr);
    order.push_back(next->flow);
    current = next;
  }
  EXPECT_EQ(order, (std::vector<std::string>{"big", "small", "big", "big", "big"}));
}

TEST(Director, EdfServesTheEarliestSloDeadlineFirst) {
  DirectorConfig cfg;
  cfg.flow.ordering = Ordering::kEdf;
  Fixture f(1, cfg, Bound(1));
  Req running, relaxed, urgent, none;
  ASSERT_EQ(f.Admit(running).kind, DecisionKind::kRoute);
  relaxed.slo = "5000";
  urgent.slo = "200";
  ASSERT_EQ(f.Admit(none).kind, DecisionKind::kWait);
  ASSERT_EQ(f.Admit(relaxed).kind, DecisionKind::kWait);
  f.clock.Advance(milliseconds(10));
  ASSERT_EQ(f.Admit(urgent).kind, DecisionKind::kWait);
  f.Finish(running);
  EXPECT_EQ(urgent.waiter.resolved.size(), 1u);
  f.Finish(urgent);
  EXPECT_EQ(relaxed.waiter.resolved.size(), 1u);
  f.Finish(relaxed);
  EXPECT_EQ(none.waiter.resolved.size(), 1u);
}

TEST(Director, TtlExpiryIsA503WithItsReason) {
  Fixture f(1, {}, Bound(1));
  Req running, r;
  ASSERT_EQ(f.Admit(running).kind, DecisionKind::kRoute);
  r.ttl = "100";
  ASSERT_EQ(f.Admit(r).kind, DecisionKind::kWait);
  f.clock.Advance(milliseconds(99));
  f.director->Tick(f.clock.Now());
  EXPECT_TRUE(r.waiter.resolved.empty());
  f.clock.Advance(milliseconds(2));
  f.director->Tick(f.clock.Now());
  ASSERT_EQ(r.waiter.resolved.size(), 1u);
  const Reject& rej = r.waiter.resolved[0].reject;
  EXPECT_EQ(r.waiter.resolved[0].kind, DecisionKind::kReject);
  EXPECT_EQ(rej.kind, RejectKind::kTtlExpired);
  EXPECT_EQ(rej.status, 503);
  EXPECT_EQ(rej.drop, wire::DropReason::kTtlExpired);
  EXPECT_GE(rej.retry_after_s, 1);
  EXPECT_NE(rej.message.find("waited 101 ms"), std::string::npos) << rej.message;
  EXPECT_NE(rej.message.find("TTL 100 ms"), std::string::npos) << rej.message;
  EXPECT_EQ(f.Metric("tidegate_flow_control_ttl_expired_total{priority=\"0\"}"), 1);
  EXPECT_EQ(f.Metric("tidegate_requests_rejected_total{reason=\"ttl-expired\"}"), 1);
  // The band's TTL caps a longer header.
  DirectorConfig capped;
  capped.flow.ttl = milliseconds(50);
  Fixture g(1, capped, Bound(1));
  Req run2, long_ttl;
  ASSERT_EQ(g.Admit(run2).kind, DecisionKind::kRoute);
  long_ttl.ttl = "60000";
  ASSERT_EQ(g.Admit(long_ttl).kind, DecisionKind::kWait);
  g.clock.Advance(milliseconds(60));
  g.director->Tick(g.clock.Now());
  ASSERT_EQ(long_ttl.waiter.resolved.size(), 1u);
  EXPECT_EQ(long_ttl.waiter.resolved[0].reject.kind, RejectKind::kTtlExpired);
}

TEST(Director, AClientThatHangsUpLeavesTheQueueAtOnce) {
  Fixture f(1, {}, Bound(1));
  Req running, r, other;
  ASSERT_EQ(f.Admit(running).kind, DecisionKind::kRoute);
  ASSERT_EQ(f.Admit(r).kind, DecisionKind::kWait);
  ASSERT_EQ(f.Admit(other).kind, DecisionKind::kWait);
  EXPECT_TRUE(f.director->Cancel(r.ticket, f.clock.Now()));
  EXPECT_FALSE(f.director->Cancel(r.ticket, f.clock.Now()));  // once
  EXPECT_EQ(f.director->Queues().requests, 1u);
  f.Finish(running);
  EXPECT_TRUE(r.waiter.resolved.empty());  // never called again
  ASSERT_EQ(other.waiter.resolved.size(), 1u);
  EXPECT_EQ(f.pool.at(0).InFlight(), 1);  // only `other`
  // A request that was already placed cannot be cancelled: its decision is on its way.
  EXPECT_FALSE(f.director->Cancel(other.ticket, f.clock.Now()));
  EXPECT_NE(f.registry.Render().find(
                "tidegate_flow_control_queue_wait_seconds_count{priority=\"0\",outcome="
                "\"cancelled\"} 1"),
            std::string::npos);
}

TEST(Director, SheddableRequestsAreRefusedAtOnceNeverQueued) {
  Fixture f(2);
  f.Load(0, 6, 2);
  f.Load(1, 6, 2);
  Req s;
  s.objective = "sheddable";
  Decision d = f.Admit(s);
  ASSERT_EQ(d.kind, DecisionKind::kReject);
  EXPECT_EQ(d.reject.kind, RejectKind::kSaturated);
  EXPECT_EQ(d.reject.status, 429);
  EXPECT_EQ(d.reject.drop, wire::DropReason::kSaturated);
  EXPECT_GE(d.reject.retry_after_s, 1);
  // The message quotes the saturation the decision used.
  EXPECT_NE(d.reject.message.find("saturation 1.20"), std::string::npos) << d.reject.message;
  EXPECT_EQ(f.director->Queues().requests, 0u);
  // Not saturated on average, but no endpoint below its in-flight bound: still 429.
  Fixture g(1, {}, Bound(1));
  Req busy, shed;
  ASSERT_EQ(g.Admit(busy).kind, DecisionKind::kRoute);
  shed.objective = "sheddable";
  Decision d2 = g.Admit(shed);
  ASSERT_EQ(d2.kind, DecisionKind::kReject);
  EXPECT_EQ(d2.reject.status, 429);
  EXPECT_NE(d2.reject.message.find("no endpoint has room for sheddable"), std::string::npos);
  EXPECT_EQ(g.Metric("tidegate_requests_shed_total{reason=\"saturated\"}"), 1);
}

TEST(Director, EveryRejectKindHasItsStatusAndMessage) {
  Fixture f(2);
  Req invalid_ttl;
  invalid_ttl.ttl = "soon";
  Decision d = f.Admit(invalid_ttl);
  EXPECT_EQ(d.reject.kind, RejectKind::kInvalid);
  EXPECT_EQ(d.reject.status, 400);
  EXPECT_NE(d.reject.message.find("x-llm-d-inference-ttl"), std::string::npos);

  Req bad_slo;
  bad_slo.slo = "-3";
  EXPECT_EQ(f.Admit(bad_slo).reject.kind, RejectKind::kInvalid);

  Req unknown;
  unknown.objective = "gold";
  d = f.Admit(unknown);
  EXPECT_EQ(d.reject.kind, RejectKind::kUnknownObjective);
  EXPECT_EQ(d.reject.status, 400);
  EXPECT_EQ(d.reject.code, "unknown_objective");
  EXPECT_NE(d.reject.message.find("'gold'"), std::string::npos);
  EXPECT_NE(d.reject.message.find("sheddable, standard"), std::string::npos);

  // A body the shell could not parse.
  Req body;
  RequestView v;
  v.body_error = "the request body is not valid JSON";
  v.body_error_code = "invalid_json";
  d = f.director->Admit(body.ticket, v, f.clock.Now());
  EXPECT_EQ(d.reject.kind, RejectKind::kInvalid);
  EXPECT_EQ(d.reject.code, "invalid_json");

  // A model served nowhere: 404.
  for (int i = 0; i < 2; ++i) {
    f.pool.at(i).SetServedModels({"llama"});
    pool::EndpointMetrics m;
    m.models = {"llama"};
    m.models_listed = true;
    m.scrape_time = f.clock.Now();
    f.pool.at(i).PublishMetrics(std::move(m));
  }
  Req model;
  d = f.Admit(model);  // asks for "m"
  EXPECT_EQ(d.reject.kind, RejectKind::kModelNotFound);
  EXPECT_EQ(d.reject.status, 404);
  EXPECT_NE(d.reject.message.find("served: llama"), std::string::npos) << d.reject.message;

  // Every endpoint down: 503 no-endpoints.
  Fixture g(2);
  for (int i = 0; i < 2; ++i)
    for (int k = 0; k < pool::Endpoint::kProbeFailuresToMarkDown; ++k)
      g.pool.at(i).RecordProbe(false, "down");
  Req none;
  d = g.Admit(none);
  EXPECT_EQ(d.reject.kind, RejectKind::kNoEndpoints);
  EXPECT_EQ(d.reject.status, 503);
  EXPECT_EQ(d.reject.drop, wire::DropReason::kNoEndpoints);
  EXPECT_GE(d.reject.retry_after_s, 1);
  EXPECT_EQ(g.Metric("tidegate_requests_rejected_total{reason=\"no-endpoints\"}"), 1);
}

TEST(Director, BoundsRefuseTheNewcomerOrEvictALowerBand) {
  DirectorConfig cfg;
  cfg.objectives = {{"standard", 0}, {"premium", 10}};
  cfg.flow.limits.max_requests = 2;
  cfg.flow.limits.band_max_requests = 2;
  Fixture f(1, cfg, Bound(1));
  Req running, s1, s2, s3, p;
  ASSERT_EQ(f.Admit(running).kind, DecisionKind::kRoute);
  ASSERT_EQ(f.Admit(s1).kind, DecisionKind::kWait);
  ASSERT_EQ(f.Admit(s2).kind, DecisionKind::kWait);
  Decision full = f.Admit(s3);
  ASSERT_EQ(full.kind, DecisionKind::kReject);
  EXPECT_EQ(full.reject.status, 429);
  EXPECT_EQ(full.reject.kind, RejectKind::kSaturated);
  EXPECT_NE(full.reject.message.find("is full"), std::string::npos) << full.reject.message;
  p.objective = "premium";
  ASSERT_EQ(f.Admit(p).kind, DecisionKind::kWait);
  ASSERT_EQ(s2.waiter.resolved.size(), 1u);  // the newest of the lower band made room
  EXPECT_EQ(s2.waiter.resolved[0].reject.kind, RejectKind::kEvicted);
  EXPECT_EQ(s2.waiter.resolved[0].reject.status, 429);
  EXPECT_EQ(s2.waiter.resolved[0].reject.drop, wire::DropReason::kEvicted);
  EXPECT_TRUE(s1.waiter.resolved.empty());
  EXPECT_EQ(f.Metric("tidegate_flow_control_evictions_total{priority=\"0\",kind=\"queued\"}"), 1);
}

TEST(Director, RunningSheddableWorkIsEvictedWhenRealTimeWaitedTooLong) {
  DirectorConfig cfg;
  cfg.flow.evict_sheddable_after = milliseconds(100);
  Fixture f(1, cfg, Bound(1));
  Req shed, rt;
  shed.objective = "sheddable";
  ASSERT_EQ(f.Admit(shed).kind, DecisionKind::kRoute);
  ASSERT_EQ(f.Admit(rt).kind, DecisionKind::kWait);
  f.clock.Advance(milliseconds(80));
  f.director->Tick(f.clock.Now());
  EXPECT_TRUE(shed.waiter.evicted.empty());
  f.clock.Advance(milliseconds(40));
  f.director->Tick(f.clock.Now());
  ASSERT_EQ(shed.waiter.evicted.size(), 1u);
  EXPECT_EQ(shed.waiter.evicted[0].kind, RejectKind::kEvicted);
  EXPECT_EQ(shed.waiter.evicted[0].status, 429);
  f.director->Tick(f.clock.Now());
  EXPECT_EQ(shed.waiter.evicted.size(), 1u);  // once
  f.Finish(shed, 429);                        // the shell answered the eviction
  ASSERT_EQ(rt.waiter.resolved.size(), 1u);
  EXPECT_EQ(rt.waiter.resolved[0].kind, DecisionKind::kRoute);
  // Off by default.
  Fixture g(1, {}, Bound(1));
  Req shed2, rt2;
  shed2.objective = "sheddable";
  ASSERT_EQ(g.Admit(shed2).kind, DecisionKind::kRoute);
  ASSERT_EQ(g.Admit(rt2).kind, DecisionKind::kWait);
  g.clock.Advance(seconds(5));
  g.director->Tick(g.clock.Now());
  EXPECT_TRUE(shed2.waiter.evicted.empty());
}

TEST(Director, WithPreemptiveEnginesAHigherPriorityNeedNotWaitForRoom) {
  DirectorConfig cfg;
  cfg.objectives = {{"standard", 0}, {"premium", 10}};
  cfg.flow.preemptive_engines = true;
  Fixture f(1, cfg, Bound(1));
  Req standard, premium, premium2, later;
  ASSERT_EQ(f.Admit(standard).kind, DecisionKind::kRoute);
  // The endpoint is at its bound, but runs a lower-priority request the engine will preempt.
  premium.objective = "premium";
  ASSERT_EQ(f.Admit(premium).kind, DecisionKind::kRoute);
  // Nothing lower runs there for these: they wait.
  premium2.objective = "premium";
  EXPECT_EQ(f.Admit(premium2).kind, DecisionKind::kWait);
  EXPECT_EQ(f.Admit(later).kind, DecisionKind::kWait);
  f.Finish(standard);
  f.Finish(premium);
  ASSERT_EQ(premium2.waiter.resolved.size(), 1u);
  EXPECT_TRUE(later.waiter.resolved.empty());
  // Once the batch limit is known (2 running while requests wait), premium requests go on
  // while fewer than batch limit + queue threshold (2 + 1) of them are in flight there,
  // whatever the lower-priority load.
  DirectorConfig pc = cfg;
  Fixture h(1, pc, {.queue_threshold = 1, .max_in_flight_per_endpoint = 1});
  h.Load(0, 4, 2);  // saturated by lower-priority work; teaches batch limit 2
  std::vector<std::unique_ptr<Req>> prem;
  for (int i = 0; i < 4; ++i) {
    prem.push_back(std::make_unique<Req>());
    prem.back()->objective = "premium";
  }
  EXPECT_EQ(h.Admit(*prem[0]).kind, DecisionKind::kRoute);
  EXPECT_EQ(h.Admit(*prem[1]).kind, DecisionKind::kRoute);
  EXPECT_EQ(h.Admit(*prem[2]).kind, DecisionKind::kRoute);
  EXPECT_EQ(h.Admit(*prem[3]).kind, DecisionKind::kWait);  // 3 premium in flight = 2 + 1
  Req std_req;
  EXPECT_EQ(h.Admit(std_req).kind, DecisionKind::kWait);  // no room for priority 0

  // Without preemption the premium request waits like anyone else.
  DirectorConfig plain;
  plain.objectives = cfg.objectives;
  Fixture g(1, plain, Bound(1));
  Req s2, p2;
  ASSERT_EQ(g.Admit(s2).kind, DecisionKind::kRoute);
  p2.objective = "premium";
  EXPECT_EQ(g.Admit(p2).kind, DecisionKind::kWait);
}

TEST(Director, WithFlowControlOffRealTimeGoesStraightToTheBestEndpoint) {
  DirectorConfig cfg;
  cfg.flow.enabled = false;
  Fixture f(2, cfg);
  f.Load(0, 9, 2);
  f.Load(1, 7, 2);
  Req r;
  Decision d = f.Admit(r);
  ASSERT_EQ(d.kind, DecisionKind::kRoute);
  EXPECT_EQ(d.pick.order[0], 1u);  // the shorter queue
}

TEST(Director, CapacityCountsTheQueueAndGivesNoSheddableRoomWhileRequestsWait) {
  Fixture f(2, {}, Bound(1));
  f.director->Tick(f.clock.Now());
  wire::Capacity idle = f.director->Capacity();
  EXPECT_EQ(idle.endpoints, 2);
  EXPECT_EQ(idle.fresh_endpoints, 2);
  EXPECT_EQ(idle.sheddable_capacity, 2);  // one per endpoint under the in-flight bound
  Req a, b, c;
  f.Admit(a);
  f.Admit(b);
  ASSERT_EQ(f.Admit(c).kind, DecisionKind::kWait);
  f.director->Tick(f.clock.Now());
  wire::Capacity busy = f.director->Capacity();
  EXPECT_EQ(busy.queued, 1);
  EXPECT_EQ(busy.sheddable_capacity, 0);
}

// A scorer that records the feedback it gets, to check what the Director passes on.
struct Recorded {
  std::vector<uint32_t> sent, not_served;
  std::vector<sched::Outcome> outcomes;
};
Recorded* recorded = nullptr;

class RecordingScorer final : public sched::Scorer {
 public:
  void Score(sched::SchedContext&, std::span<const sched::Candidate> cands,
             std::span<double> out) override {
    for (size_t j = 0; j < cands.size(); ++j) out[j] = cands[j].index == 0 ? 1.0 : 0.5;
  }
  void OnSent(sched::SchedContext&, uint32_t e) override { recorded->sent.push_back(e); }
  void OnNotServed(sched::SchedContext&, uint32_t e) override { recorded->not_served.push_back(e); }
  void OnOutcome(sched::SchedContext&, const sched::Outcome& o) override {
    recorded->outcomes.push_back(o);
  }
};

TEST(Director, FeedbackReachesTheSchedulerForTheEndpointThatReallyServed) {
  Recorded rec;
  recorded = &rec;
  sched::PluginRegistry::Default().Register(
      "test-recording-scorer", [](const sched::Params&, std::unique_ptr<sched::Plugin>* out) {
        *out = std::make_unique<RecordingScorer>();
        return std::string();
      });
  sched::Profile profile;
  ASSERT_EQ(sched::BuildProfile("rec", {{"test-recording-scorer", 1}}, &profile), "");
  auto detector = std::make_shared<const pool::SaturationDetector>();
  profile.detector = detector;
  Fixture f(2, {}, {}, "", sched::MakeProfilePicker(std::move(profile), "rec"));
  Req r;
  Decision d = f.Admit(r);
  ASSERT_EQ(d.kind, DecisionKind::kRoute);
  ASSERT_EQ(d.pick.order[0], 0u);
  EXPECT_EQ(rec.sent, (std::vector<uint32_t>{0}));
  // Endpoint 0 refuses the connection; the fallback serves it.
  f.director->Fallback(r.ticket, 0, 1, f.clock.Now());
  EXPECT_EQ(f.pool.at(0).InFlight(), 0);
  EXPECT_EQ(f.pool.at(1).InFlight(), 1);
  EXPECT_EQ(f.pool.at(0).RoutedSinceScrape(), 0);
  EXPECT_EQ(rec.not_served, (std::vector<uint32_t>{0}));
  EXPECT_EQ(rec.sent, (std::vector<uint32_t>{0, 1}));
  f.clock.Advance(milliseconds(250));
  sched::Outcome o;
  o.status = 200;
  o.ttft = milliseconds(40);
  o.output_tokens = 16;
  o.duration = milliseconds(250);
  f.director->Finish(r.ticket, o, f.clock.Now());
  ASSERT_EQ(rec.outcomes.size(), 1u);
  EXPECT_EQ(rec.outcomes[0].endpoint, 1u);  // filled in from the reservation
  EXPECT_EQ(rec.outcomes[0].status, 200);
  EXPECT_EQ(rec.outcomes[0].ttft, milliseconds(40));
  EXPECT_EQ(rec.outcomes[0].output_tokens, 16);
  EXPECT_EQ(f.pool.at(1).InFlight(), 0);
  EXPECT_EQ(f.pool.at(1).CompletedSinceScrape(), 1);
  f.director->Finish(r.ticket, o, f.clock.Now());  // idempotent
  EXPECT_EQ(rec.outcomes.size(), 1u);
  recorded = nullptr;
}

TEST(Director, SessionAffinityFollowsTheFallback) {
  auto detector = std::make_shared<const pool::SaturationDetector>();
  sched::Profile profile;
  ASSERT_EQ(sched::BuildProfile("s", {{"session-affinity-scorer", 1}}, &profile), "");
  profile.detector = detector;
  Fixture f(3, {}, {}, "", sched::MakeProfilePicker(std::move(profile), "s"));
  Req r;
  RequestView v;
  v.model = "m";
  v.session_id = "conversation-7";
  v.id = 1;
  Decision d = f.director->Admit(r.ticket, v, f.clock.Now());
  ASSERT_EQ(d.kind, DecisionKind::kRoute);
  const uint32_t first = d.pick.order[0], fallback = d.pick.order[1];
  f.director->Fallback(r.ticket, first, fallback, f.clock.Now());
  f.Finish(r);
  for (int k = 0; k < 10; ++k) {
    Req again;
    v.id = 2 + k;
    Decision d2 = f.director->Admit(again.ticket, v, f.clock.Now());
    ASSERT_EQ(d2.kind, DecisionKind::kRoute);
    EXPECT_EQ(d2.pick.order[0], fallback);
    f.Finish(again);
  }
}

}  // namespace
}  // namespace tidegate::control
