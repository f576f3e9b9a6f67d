// bench/runner.h — runs a `tidegate bench` scenario: for each run a fresh simulated fleet
// (`tidegate sim`), the gateway (`tidegate serve`) or HAProxy in front of it, and for
// via-processor runs the async processor (`tidegate async`) on an embedded queue; drives the
// real-time load and the async submissions, samples the simulators' /metrics, and writes
// DIR/report.json and DIR/report.html, printing the side-by-side table to stdout.
//
// Contract:
//  * Every child process is started with Child::Spawn (own process group, parent-death signal)
//    and stopped before the next run starts; child logs go to DIR/runs/NAME/*.log.
//  * Load generation runs on one io_context thread (coroutines, Asio/Beast client); metric
//    sampling and reading async results (blocking SQLite) run on their own threads.
//  * Latencies are reported in simulated milliseconds (wall × fleet.time_scale); durations,
//    rates and the time axis of the timeseries are in wall seconds.
//  * RunBenchScenario() returns the process exit code: 0 when every run completed (whatever
//    its figures), 1 when a run could not be set up (a child failed to start), 2 for bad
//    options.
// Thread-safety: call from one thread; it owns everything it starts.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench/scenario.h"

namespace tidegate::bench {

struct BenchOptions {
  std::string report_dir;
  std::string target_url;         // external gateway: no fleet/gateway is started
  std::vector<std::string> only;  // run names to keep (empty = all)
  std::string command_line;       // recorded in the report
  std::string scenario_path;
  std::string haproxy_bin = "haproxy";
};

int RunBenchScenario(const Scenario& scenario, const BenchOptions& options);

// Sums the samples of one metric family (any labels) in a Prometheus text exposition; returns
// false when the family is absent.
bool SumMetric(const std::string& text, const std::string& name, double* out);

}  // namespace tidegate::bench
