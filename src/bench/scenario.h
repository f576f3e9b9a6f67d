// bench/scenario.h — the `tidegate bench` scenario file (YAML) as structs, and the pure pieces
// of a run that tests can check without starting anything: the real-time arrival schedule,
// request sizes and prompts, and percentiles.
//
// Contract:
//  * ParseScenario() reads the YAML text (see `tidegate bench --help` and docs/benchmarks.md for
//    the format) and validates it; an error names the offending key (e.g.
//    "runs[2].async_mode: expected none, via-processor, via-batch, direct-sheddable or
//    direct-standard").
//    Unknown keys are errors too (a typo must not silently fall back to a default).
//  * Every duration and rate is in WALL time (seconds / requests per wall second); the fleet's
//    time_scale only changes how much simulated work a wall second holds. Latencies in reports
//    are in simulated milliseconds (wall × time_scale).
//  * Each run's `realtime:` / `async:` maps are overlaid key by key on the top-level ones, so
//    runs share the same traffic unless they say otherwise.
//  * ArrivalSchedule() is a deterministic function of (spec, duration, seed): the same seed
//    gives the same arrival times and request sizes in every run of a scenario.
// Thread-safety: pure functions and plain data.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "bench/trace.h"

namespace tidegate::bench {

// A token-count distribution: uniform over [min, max], or lognormal with the given mean
// (sigma 0.5) clamped to [min, max], or a constant (min == max == mean).
struct TokenDist {
  std::string kind = "uniform";  // uniform | lognormal
  int mean = 128, min = 128, max = 128;
};

struct FleetSpec {
  int count = 4;
  std::string profile = "llama-3.1-8b-h100";
  double time_scale = 10;
  int max_num_seqs = 0;                     // 0 = the profile's
  std::string scheduling_policy = "fcfs";   // fcfs | priority (priority: gateway forwards it)
  std::vector<std::string> sim_args;        // extra `tidegate sim` flags
  std::vector<std::string> gateway_args;    // extra `tidegate serve` flags
  std::vector<std::string> processor_args;  // extra `tidegate async` flags
  // A heterogeneous fleet: groups of servers with their own profile and flags (after
  // sim_args), e.g. [{count: 2}, {count: 2, sim_args: [--decode-coeffs, "18,1.05"]}]; count is
  // then their sum. Empty = `count` servers alike.
  struct Group {
    int count = 1;
    std::string profile;  // "" = the fleet's
    std::vector<std::string> sim_args;
  };
  std::vector<Group> groups;
  // The simulators publish KV-cache events and the gateway subscribes (serve --kv-events), for
  // precise-prefix-cache-scorer.
  bool kv_events = false;
};

struct RealtimeSpec {
  double base_rps = 2;       // Poisson rate between spikes (wall requests / s)
  double spike_rps = 0;      // Poisson rate during spikes (0 = no spikes)
  double spike_every_s = 0;  // period of the spikes (wall s)
  double spike_duration_s = 0;
  double spike_offset_s = 0;  // start of the first spike
  TokenDist prompt_tokens{"uniform", 256, 128, 384};
  TokenDist output_tokens{"uniform", 64, 32, 96};
  int prefix_groups = 0;     // shared_prefix.groups (0 = no shared prefix)
  int prefix_tokens = 0;     // shared_prefix.prefix_tokens
  double slo_ttft_ms = 500;  // simulated ms; sent as x-slo-ttft-ms
  double slo_tpot_ms = 0;    // simulated ms; sent as x-slo-tpot-ms (0 = no TPOT objective)
  bool stream = true;
  std::string objective = "standard";
  std::string tenant;  // sent as x-gateway-inference-fairness-id ("" = none)
  // Traffic classes: when non-empty, each class is an arrival process of its own (the keys of
  // the enclosing `realtime:` are its defaults), reported apart by name.
  std::string name;
  std::vector<RealtimeSpec> classes;
  // trace: {path, speed}: arrivals and sizes replayed from a file (bench/trace.h) instead of
  // drawn; `speed` 2 plays it twice as fast. The rate and size keys above are then unused.
  std::string trace_path;
  double trace_speed = 1;
  std::shared_ptr<const std::vector<TraceRow>> trace;
};

struct AsyncSpec {
  int requests = 0;
  double deadline_s = 60;      // from the start of the load phase (wall s)
  double soft_deadline_s = 0;  // the soft deadline, likewise (0 = none); at most deadline_s
  double submit_window_s = 0;  // direct-* modes send evenly over this (0 = the duration)
  TokenDist prompt_tokens{"uniform", 512, 256, 768};
  TokenDist output_tokens{"uniform", 128, 64, 192};
};

struct RunSpec {
  std::string name;
  std::string policy = "tidegate-default";  // round-robin | least-request | gie-default | ...
  // none | via-processor | via-batch (the backlog as one OpenAI Batch API batch, window =
  // async.deadline) | direct-sheddable | direct-standard
  std::string async_mode = "none";
  std::string target = "tidegate";          // tidegate | haproxy
  std::vector<std::string> gateway_args;    // extra `tidegate serve` flags for this run
  std::vector<std::string> processor_args;  // extra `tidegate async` flags for this run
  // Gateways in front of the same fleet, the real-time requests spread over them in turn (as a
  // load balancer in front of gateway replicas would); each has its own scheduler state.
  int gateway_replicas = 1;
  RealtimeSpec realtime;
  AsyncSpec async;
};

struct Scenario {
  std::string name = "scenario";
  std::string model = "meta-llama/Llama-3.1-8B-Instruct";
  FleetSpec fleet;
  double duration_s = 60;     // load phase (wall s)
  int max_requests = 100000;  // bound on real-time requests per run
  uint64_t seed = 1;
  double sample_interval_s = 1;
  double drain_timeout_s = 60;  // bound on waiting for stragglers after the load phase
  std::vector<RunSpec> runs;
};

// Parses and validates; false with *error naming the key on failure.
bool ParseScenario(const std::string& yaml_text, Scenario* out, std::string* error);
bool LoadScenario(const std::string& path, Scenario* out, std::string* error);

// Applies --duration / --quick style scaling: duration and async.requests, deadline and
// submit window shrink by the same factor (so the story keeps its shape).
void ScaleScenario(Scenario* s, double factor);

// The real-time arrival rate at wall time t (s from the start of the load phase).
double RateAt(const RealtimeSpec& spec, double t);
bool InSpike(const RealtimeSpec& spec, double t);

struct PlannedRequest {
  double at_s = 0;  // wall seconds from the start of the load phase
  int prompt_tokens = 0;
  int output_tokens = 0;
  int group = -1;  // shared-prefix group, -1 = none
  int cls = -1;    // index into RealtimeSpec::classes, -1 = no classes
};

// Non-homogeneous Poisson arrivals (thinning) in [0, duration_s), at most max_requests. With
// classes, every class draws its own arrivals (seeded per class) and the merged schedule is in
// time order, each request tagged with its class.
std::vector<PlannedRequest> ArrivalSchedule(const RealtimeSpec& spec, double duration_s,
                                            uint64_t seed, int max_requests);
// `n` async requests with sizes drawn from the spec (at_s = 0).
std::vector<PlannedRequest> AsyncPlan(const AsyncSpec& spec, uint64_t seed);

// Deterministic prompt text of about `tokens` tokens (≈ 4 characters each): the shared prefix of
// `group` (when group >= 0 and prefix_tokens > 0) followed by text unique to `unique_key`.
std::string PromptText(int tokens, int group, int prefix_tokens, uint64_t unique_key);

// The p-th percentile (0..100) by linear interpolation between closest ranks; NaN when empty.
double Percentile(std::vector<double> values, double p);

}  // namespace tidegate::bench
