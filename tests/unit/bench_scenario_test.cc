#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "bench/runner.h"
#include "bench/scenario.h"

namespace tidegate::bench {
namespace {

constexpr const char* kScenario = R"(
name: t
fleet: {count: 2, time_scale: 5, max_num_seqs: 8, scheduling_policy: priority}
duration: 40s
seed: 7
realtime:
  base_rps: 2
  spike_rps: 40
  spike_every: 10s
  spike_duration: 2s
  spike_offset: 4
  prompt_tokens: {mean: 100, min: 50, max: 150}
  output_tokens: 32
  slo_ttft_ms: 300
async:
  requests: 50
  deadline: 30s
  submit_window: 5s
runs:
  - {name: base}
  - name: sched
    policy: round-robin
    realtime: {shared_prefix: {groups: 4, prefix_tokens: 64}, base_rps: 3}
  - {name: via, async_mode: via-processor}
  - {name: ha, target: haproxy}
)";

Scenario MustParse(const std::string& text) {
  Scenario s;
  std::string err;
  EXPECT_TRUE(ParseScenario(text, &s, &err)) << err;
  return s;
}

std::string ParseError(const std::string& text) {
  Scenario s;
  std::string err;
  EXPECT_FALSE(ParseScenario(text, &s, &err));
  return err;
}

TEST(BenchScenario, ParsesFieldsAndOverlaysRunOverrides) {
  Scenario s = MustParse(kScenario);
  EXPECT_EQ(s.name, "t");
  EXPECT_EQ(s.fleet.count, 2);
  EXPECT_DOUBLE_EQ(s.fleet.time_scale, 5);
  EXPECT_EQ(s.fleet.max_num_seqs, 8);
  EXPECT_EQ(s.fleet.scheduling_policy, "priority");
  EXPECT_DOUBLE_EQ(s.duration_s, 40);
  EXPECT_EQ(s.seed, 7u);
  ASSERT_EQ(s.runs.size(), 4u);
  const RunSpec& base = s.runs[0];
  EXPECT_EQ(base.policy, "tidegate-default");
  EXPECT_EQ(base.async_mode, "none");
  EXPECT_DOUBLE_EQ(base.realtime.spike_every_s, 10);
  EXPECT_DOUBLE_EQ(base.realtime.spike_offset_s, 4);
  EXPECT_EQ(base.realtime.prompt_tokens.min, 50);
  EXPECT_EQ(base.realtime.output_tokens.min, 32);
  EXPECT_EQ(base.realtime.output_tokens.max, 32);
  EXPECT_EQ(base.realtime.prefix_groups, 0);
  const RunSpec& sched = s.runs[1];
  EXPECT_EQ(sched.policy, "round-robin");
  EXPECT_EQ(sched.realtime.prefix_groups, 4);
  EXPECT_EQ(sched.realtime.prefix_tokens, 64);
  EXPECT_DOUBLE_EQ(sched.realtime.base_rps, 3);
  EXPECT_DOUBLE_EQ(sched.realtime.spike_rps, 40);  // inherited
  EXPECT_EQ(s.runs[2].async_mode, "via-processor");
  EXPECT_EQ(s.runs[2].async.requests, 50);
  EXPECT_DOUBLE_EQ(s.runs[2].async.deadline_s, 30);
  EXPECT_EQ(s.runs[3].target, "haproxy");
}

TEST(BenchScenario, ErrorsNameTheKey) {
  std::string base = "runs: [{name: a}]\n";
  EXPECT_NE(ParseError("fleet: {count: 0}\n" + base).find("fleet.count"), std::string::npos);
  EXPECT_NE(ParseError("fleet: {cuont: 2}\n" + base).find("fleet.cuont: unknown key"),
            std::string::npos);
  EXPECT_NE(ParseError("duration: soon\n" + base).find("duration"), std::string::npos);
  EXPECT_NE(ParseError("realtime: {spike_rps: 5}\n" + base).find("realtime.spike_every"),
            std::string::npos);
  EXPECT_NE(ParseError("realtime: {output_tokens: {min: 9, max: 3}}\n" + base)
                .find("realtime.output_tokens.min"),
            std::string::npos);
  EXPECT_NE(ParseError("runs: [{name: a, async_mode: sometimes}]\n").find("runs[0].async_mode"),
            std::string::npos);
  EXPECT_NE(
      ParseError("runs: [{name: a, async_mode: via-processor}]\n").find("runs[0].async.requests"),
      std::string::npos);
  EXPECT_NE(ParseError("runs: [{name: a}, {name: a}]\n").find("runs[1].name: duplicate"),
            std::string::npos);
  EXPECT_NE(ParseError("runs: [{name: a, policy: fastest}]\n").find("runs[0].policy"),
            std::string::npos);
  EXPECT_NE(ParseError("name: x\n").find("runs"), std::string::npos);
  EXPECT_NE(
      ParseError("runs: [{name: a, realtime: {base_rps: -1}}]\n").find("runs[0].realtime.base_rps"),
      std::string::npos);
  EXPECT_NE(ParseError("runs: [{name: a}\n").find("invalid YAML"), std::string::npos);
}

TEST(BenchScenario, TrafficClassesInheritTheirDefaultsAndDrawTheirOwnArrivals) {
  Scenario s = MustParse(R"(
duration: 60s
realtime:
  slo_ttft_ms: 800
  output_tokens: 16
  classes:
    - {name: premium, objective: premium, tenant: alpha, base_rps: 2, slo_ttft_ms: 200}
    - {name: bulk, tenant: big, base_rps: 10}
runs:
  - {name: both}
  - {name: alone, gateway_args: [--flow-control, "off"],
     realtime: {classes: [{name: premium, objective: premium, base_rps: 2}]}}
)");
  ASSERT_EQ(s.runs.size(), 2u);
  const RealtimeSpec& rt = s.runs[0].realtime;
  ASSERT_EQ(rt.classes.size(), 2u);
  EXPECT_EQ(rt.classes[0].name, "premium");
  EXPECT_EQ(rt.classes[0].objective, "premium");
  EXPECT_EQ(rt.classes[0].tenant, "alpha");
  EXPECT_DOUBLE_EQ(rt.classes[0].slo_ttft_ms, 200);
  EXPECT_EQ(rt.classes[1].objective, "standard");
  EXPECT_DOUBLE_EQ(rt.classes[1].slo_ttft_ms, 800);  // the enclosing default
  EXPECT_EQ(rt.classes[1].output_tokens.max, 16);
  EXPECT_EQ(s.runs[1].gateway_args, (std::vector<std::string>{"--flow-control", "off"}));
  ASSERT_EQ(s.runs[1].realtime.classes.size(), 1u);
  // Each class draws its own arrivals; the merged schedule is in time order and tagged.
  auto plan = ArrivalSchedule(rt, 60, 1, 100000);
  int premium = 0, bulk = 0;
  for (size_t i = 0; i < plan.size(); ++i) {
    if (i > 0) EXPECT_LE(plan[i - 1].at_s, plan[i].at_s);
    (plan[i].cls == 0 ? premium : bulk) += 1;
    EXPECT_TRUE(plan[i].cls == 0 || plan[i].cls == 1);
  }
  EXPECT_NEAR(premium, 120, 45);
  EXPECT_NEAR(bulk, 600, 100);
  EXPECT_EQ(plan.size(), ArrivalSchedule(rt, 60, 1, 100000).size());  // deterministic
  // Errors name the class.
  EXPECT_NE(ParseError("realtime: {classes: [{base_rps: 1}]}\nruns: [{name: a}]\n")
                .find("realtime.classes[0].name"),
            std::string::npos);
  EXPECT_NE(ParseError("realtime: {classes: [{name: a, spike_rps: 3}]}\nruns: [{name: a}]\n")
                .find("realtime.classes[0].spike_every"),
            std::string::npos);
  EXPECT_NE(ParseError("realtime: {classes: [{name: a, base_rps: 1}, {name: a, base_rps: 1}]}\n"
                       "runs: [{name: a}]\n")
                .find("duplicate class"),
            std::string::npos);
}

TEST(BenchScenario, ArrivalScheduleIsDeterministicAndSpiky) {
  Scenario s = MustParse(kScenario);
  const RealtimeSpec& rt = s.runs[0].realtime;
  auto a = ArrivalSchedule(rt, 400, 7, 1000000);
  auto b = ArrivalSchedule(rt, 400, 7, 1000000);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_DOUBLE_EQ(a[i].at_s, b[i].at_s);
    EXPECT_EQ(a[i].prompt_tokens, b[i].prompt_tokens);
  }
  auto c = ArrivalSchedule(rt, 400, 8, 1000000);
  EXPECT_TRUE(c.size() != a.size() || c[0].at_s != a[0].at_s);

  // Spikes: 2 s of every 10 s at 40 rps, the rest at 2 rps → 40 spikes of ~80 and 320 s of ~2.
  int in_spike = 0, outside = 0;
  for (const auto& r : a) {
    EXPECT_GE(r.at_s, 0);
    EXPECT_LT(r.at_s, 400);
    EXPECT_GE(r.prompt_tokens, 50);
    EXPECT_LE(r.prompt_tokens, 150);
    EXPECT_EQ(r.output_tokens, 32);
    (InSpike(rt, r.at_s) ? in_spike : outside)++;
  }
  EXPECT_NEAR(in_spike / 80.0, 40.0, 6.0);  // rate during spikes
  EXPECT_NEAR(outside / 320.0, 2.0, 0.4);   // rate between spikes
  EXPECT_TRUE(InSpike(rt, 4.5));
  EXPECT_FALSE(InSpike(rt, 3.9));
  EXPECT_FALSE(InSpike(rt, 6.1));
  EXPECT_TRUE(InSpike(rt, 14.1));
  EXPECT_DOUBLE_EQ(RateAt(rt, 5), 40);
  EXPECT_DOUBLE_EQ(RateAt(rt, 7), 2);
  // Bounded by max_requests.
  EXPECT_EQ(ArrivalSchedule(rt, 400, 7, 10).size(), 10u);
}

TEST(BenchScenario, SharedPrefixPrompts) {
  std::string a = PromptText(100, 2, 64, 1), b = PromptText(100, 2, 64, 2);
  std::string c = PromptText(100, 3, 64, 1);
  EXPECT_EQ(a.size(), 400u);
  EXPECT_EQ(a.substr(0, 256), b.substr(0, 256));
  EXPECT_NE(a.substr(256), b.substr(256));
  EXPECT_NE(a.substr(0, 256), c.substr(0, 256));
  EXPECT_EQ(PromptText(100, -1, 0, 5), PromptText(100, -1, 0, 5));
}

TEST(BenchScenario, Percentile) {
  EXPECT_TRUE(std::isnan(Percentile({}, 50)));
  EXPECT_DOUBLE_EQ(Percentile({7}, 99), 7);
  EXPECT_DOUBLE_EQ(Percentile({3, 1, 2}, 50), 2);
  EXPECT_DOUBLE_EQ(Percentile({1, 2, 3, 4}, 50), 2.5);
  std::vector<double> v;
  for (int i = 1; i <= 100; ++i) v.push_back(i);
  EXPECT_NEAR(Percentile(v, 99), 99.01, 1e-9);
  EXPECT_DOUBLE_EQ(Percentile(v, 0), 1);
  EXPECT_DOUBLE_EQ(Percentile(v, 100), 100);
}

TEST(BenchScenario, ScaleKeepsTheShape) {
  Scenario s = MustParse(kScenario);
  ScaleScenario(&s, 0.5);
  EXPECT_DOUBLE_EQ(s.duration_s, 20);
  EXPECT_EQ(s.runs[2].async.requests, 25);
  EXPECT_DOUBLE_EQ(s.runs[2].async.deadline_s, 15);
}

TEST(BenchScenario, SumMetric) {
  std::string text =
      "# TYPE x counter\nx{a=\"1\"} 2.5\nx{a=\"2\"} 1.5\nxy 100\nvllm:lora_requests_info{b=\"c\"} "
      "5 1700000000\n";
  double v = 0;
  EXPECT_TRUE(SumMetric(text, "x", &v));
  EXPECT_DOUBLE_EQ(v, 4.0);
  EXPECT_TRUE(SumMetric(text, "vllm:lora_requests_info", &v));
  EXPECT_DOUBLE_EQ(v, 5.0);
  EXPECT_FALSE(SumMetric(text, "zz", &v));
}

TEST(BenchScenario, FleetGroupsAddUpAndKeepTheirOwnFlags) {
  Scenario s = MustParse(
      "fleet: {profile: llama-3.1-8b-h100, sim_args: [--a], groups: [{count: 2}, {count: 3, "
      "profile: llama-3.1-8b-a100, sim_args: [--b, x]}]}\nruns: [{name: r}]\n");
  EXPECT_EQ(s.fleet.count, 5);
  ASSERT_EQ(s.fleet.groups.size(), 2u);
  EXPECT_EQ(s.fleet.groups[0].profile, "");
  EXPECT_EQ(s.fleet.groups[1].profile, "llama-3.1-8b-a100");
  // An unknown profile fails at parse time, naming the field and the profiles there are.
  const std::string bad =
      ParseError("fleet: {groups: [{count: 1, profile: llama-9b}]}\nruns: [{name: r}]\n");
  EXPECT_NE(bad.find("fleet.groups[0].profile"), std::string::npos) << bad;
  EXPECT_NE(bad.find("llama-3.1-70b-fp8-h100-tp4"), std::string::npos) << bad;
  EXPECT_NE(ParseError("fleet: {profile: h100}\nruns: [{name: r}]\n").find("fleet.profile"),
            std::string::npos);
  // A run's policy is one of the built-in policies.
  EXPECT_NE(ParseError("runs: [{name: r, policy: fastest}]\n").find("tidegate-precise"),
            std::string::npos);
  EXPECT_EQ(s.fleet.groups[1].sim_args, (std::vector<std::string>{"--b", "x"}));
  EXPECT_NE(ParseError("fleet: {count: 2, groups: [{count: 1}]}\nruns: [{name: r}]\n")
                .find("fleet.count"),
            std::string::npos);
  EXPECT_NE(ParseError("fleet: {groups: [{count: 0}]}\nruns: [{name: r}]\n")
                .find("fleet.groups[0].count"),
            std::string::npos);
  EXPECT_NE(ParseError("fleet: {groups: []}\nruns: [{name: r}]\n").find("fleet.groups"),
            std::string::npos);
}

TEST(BenchScenario, ShippedScenariosParse) {
  // Every scenario in the repository's scenarios/ (found from this file's path, tests/unit/...).
  const auto dir =
      std::filesystem::path(__FILE__).parent_path().parent_path().parent_path() / "scenarios";
  std::vector<std::string> names;
  for (const auto& f : std::filesystem::directory_iterator(dir)) {
    if (f.path().extension() != ".yaml") continue;
    const std::string name = f.path().filename().string();
    names.push_back(name);
    Scenario s;
    std::string err;
    EXPECT_TRUE(LoadScenario(f.path().string(), &s, &err)) << name << ": " << err;
    if (name == "batch.yaml") {
      ASSERT_EQ(s.runs.size(), 3u);
      EXPECT_EQ(s.runs[2].async_mode, "via-batch");
      EXPECT_EQ(s.runs[2].async.requests, 2400);
    }
  }
  for (const char* must : {"seed.yaml", "quick.yaml", "prefix.yaml", "mixed.yaml", "hetero.yaml"})
    EXPECT_NE(std::find(names.begin(), names.end(), must), names.end()) << must;
  EXPECT_NE(ParseError("runs: [{name: a, async_mode: batch}]\n").find("via-batch"),
            std::string::npos);
}

}  // namespace
}  // namespace tidegate::bench
