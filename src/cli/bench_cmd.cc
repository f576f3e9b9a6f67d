// `tidegate bench`: runs a scenario file (see bench/scenario.h) and writes a report.
#include <iostream>
#include <string>
#include <vector>

#include "bench/runner.h"
#include "bench/scenario.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "common/units.h"
#include "sched/policies.h"
#include "sim/profiles.h"

namespace tidegate::cli {

namespace {

constexpr const char* kSummary =
    R"(Runs a benchmark scenario: for each run a fresh simulated fleet (`tidegate sim`), the
gateway (`tidegate serve`, or HAProxy leastconn) in front of it and, for via-processor runs,
the async processor (`tidegate async`) on an embedded queue. Drives spiky real-time traffic
(streamed completions, TTFT from the first SSE event) plus async work, samples the simulators'
/metrics, then writes DIR/report.json and DIR/report.html (charts) and prints a side-by-side
table of all runs. Progress goes to stderr; child logs to DIR/runs/NAME/*.log.

Units: every duration and rate in the scenario is WALL time (seconds, requests per wall
second). TTFT/TPOT are reported in SIMULATED ms (wall × fleet.time_scale). Utilisation is the
simulators' busy time (tidegate_sim_busy_seconds_total) over wall time × time_scale, split
between real-time and async by the tokens each class generated in each interval.

scenario file (YAML; unknown keys are errors; durations as seconds or "30s"/"2m"):
  name: seed
  model: meta-llama/Llama-3.1-8B-Instruct
  fleet: {count: 4, profile: llama-3.1-8b-h100, time_scale: 10, max_num_seqs: 32,
          scheduling_policy: fcfs|priority,   # priority: sims order by priority, gateway
                                              # forwards it (--forward-priority)
          sim_args: [], gateway_args: [], processor_args: []}   # extra flags per role
  # profiles: {profiles} (`tidegate sim --help`);
  # a mixed fleet: fleet.groups: [{count, profile, sim_args}]
  duration: 60s            # load phase per run
  max_requests: 5000       # bound on real-time requests per run
  seed: 1                  # same seed → same arrivals and sizes in every run
  sample_interval: 1s      # metrics sampling / timeseries resolution
  drain_timeout: 60s       # bound on waiting for stragglers after the load phase
  realtime:                # Poisson arrivals, rate base_rps, spike_rps during spikes
    base_rps: 4
    spike_rps: 30
    spike_every: 20s       # a spike of spike_duration every spike_every (from spike_offset)
    spike_duration: 5s
    spike_offset: 5s
    prompt_tokens: {kind: uniform|lognormal, mean: 256, min: 64, max: 512}   # or a number
    output_tokens: {mean: 64, min: 32, max: 96}
    shared_prefix: {groups: 8, prefix_tokens: 512}   # optional: prompts share a group prefix
    slo_ttft_ms: 500       # simulated ms; sent as x-slo-ttft-ms; SLO attainment = share within
    stream: true
    objective: standard    # x-gateway-inference-objective
    tenant: acme           # optional: x-gateway-inference-fairness-id
    classes:               # optional: traffic classes, each its own arrival process (the keys
      - {name: premium, objective: premium, base_rps: 1}   # above are their defaults),
      - {name: big, tenant: big, base_rps: 4, spike_rps: 60}   # reported apart
  async:
    requests: 400
    deadline: 60s          # from the start of the load phase
    submit_window: 15s     # direct-* modes: a naive client sends all requests evenly over it
    prompt_tokens: {mean: 512, min: 256, max: 768}
    output_tokens: {mean: 128, min: 64, max: 192}
  runs:                    # each run may override realtime:/async: keys
    - {name: realtime-only, policy: tidegate-default}
    - {name: via-processor, async_mode: via-processor}
    - {name: haproxy-leastconn, target: haproxy, realtime: {shared_prefix: {groups: 8,
       prefix_tokens: 512}}}
  run fields: name, policy ({policies}), gateway_replicas,
    async_mode (none|via-processor|direct-sheddable|direct-standard), target
    (tidegate|haproxy), gateway_args (extra `tidegate serve` flags), realtime, async.
  failures: every failed real-time request is counted by reason in report.json
    (realtime.failures, with the first 200 in realtime.failure_list: id, sent and failed times):
    an HTTP status with its dropped reason, a transport error (connect, timeout), a stream that
    ended without any event or without [DONE], or a request cut at the bench's hard deadline.
  async modes: via-processor publishes every request (llm-d-async message with the deadline)
    before the load phase and starts `tidegate async`; results are read back from the response
    queue (lost = submitted − distinct results, on_time = successes before the deadline).
    direct-sheddable / direct-standard send each request once to the gateway with objective
    sheddable / standard (no retries, like a naive client); 429 counts as shed.

examples:
  tidegate bench --scenario scenarios/seed.yaml --report reports/seed
  tidegate bench --scenario scenarios/quick.yaml --report /tmp/q --only realtime-only,via-processor)";

// kSummary with {policies} and {profiles} filled in from their registries, so the help names
// every one there is.
std::string Summary() {
  auto join = [](const std::vector<std::string>& v, const char* sep) {
    std::string out;
    for (const auto& x : v) out += (out.empty() ? "" : sep) + x;
    return out;
  };
  std::string s = kSummary;
  auto fill = [&](const std::string& key, const std::string& value) {
    if (auto at = s.find(key); at != std::string::npos) s.replace(at, key.size(), value);
  };
  fill("{policies}", join(sched::PolicyNames(), "|"));
  fill("{profiles}", join(sim::ProfileNames(), ", "));
  return s;
}

}  // namespace

int RunBench(const std::vector<std::string>& args) {
  std::string scenario_path, report_dir, target, haproxy = "haproxy";
  std::vector<std::string> only;
  double duration_override = 0;
  bool quick = false;
  FlagSet flags("tidegate bench", Summary());
  flags.Add("scenario", "FILE", "scenario YAML file (required)", "none",
            [&](const std::string& v) -> std::string {
              scenario_path = v;
              return {};
            });
  flags.Add("report", "DIR", "directory for report.json, report.html and run logs (required)",
            "none", [&](const std::string& v) -> std::string {
              report_dir = v;
              return {};
            });
  flags.Add("target", "URL",
            "an external gateway to drive instead of starting a fleet and gateway (no "
            "utilisation figures then)",
            "none", [&](const std::string& v) -> std::string {
              target = v;
              return {};
            });
  flags.Add("only", "NAME,...", "run only these runs of the scenario", "all",
            [&](const std::string& v) -> std::string {
              only = SplitList(v);
              if (only.empty()) return "expected run names";
              return {};
            });
  flags.Add("duration", "D",
            "override the load phase; async requests, deadlines and windows scale with it",
            "the scenario's", [&](const std::string& v) -> std::string {
              auto d = ParseDuration(v);
              if (!d || d->count() < 1000) return "expected a duration of at least 1s, e.g. 30s";
              duration_override = static_cast<double>(d->count()) / 1000.0;
              return {};
            });
  flags.AddSwitch("quick", "a quarter of the duration (and async work), for a smoke run",
                  [&] { quick = true; });
  flags.Add("haproxy", "PATH", "HAProxy binary for target: haproxy runs", haproxy,
            [&](const std::string& v) -> std::string {
              haproxy = v;
              return {};
            });
  if (auto rc = ParseCommandLine(flags, args)) return *rc;
  if (!flags.positional().empty()) {
    std::cerr << "tidegate bench: unexpected argument '" << flags.positional()[0]
              << "' (see tidegate bench --help)\n";
    return 2;
  }
  if (scenario_path.empty() || report_dir.empty()) {
    std::cerr << "tidegate bench: --scenario FILE and --report DIR are required (see tidegate "
                 "bench --help)\n";
    return 2;
  }
  bench::Scenario sc;
  std::string err;
  if (!bench::LoadScenario(scenario_path, &sc, &err)) {
    std::cerr << "tidegate bench: " << err << "\n";
    return 2;
  }
  if (duration_override > 0) bench::ScaleScenario(&sc, duration_override / sc.duration_s);
  if (quick) bench::ScaleScenario(&sc, 0.25);

  bench::BenchOptions opt;
  opt.report_dir = report_dir;
  opt.target_url = target;
  opt.only = only;
  opt.scenario_path = scenario_path;
  opt.haproxy_bin = haproxy;
  opt.command_line = "tidegate bench";
  for (const auto& a : args) opt.command_line += " " + a;
  return bench::RunBenchScenario(sc, opt);
}

}  // namespace tidegate::cli
