// fleet/fleet.h — tidegate's own processes on one machine, as children of this one: simulated
// model servers (`tidegate sim`), the gateway (`tidegate serve`) in front of them, the async
// processor (`tidegate async`), or any other program (the bench's HAProxy). `tidegate demo` and
// `tidegate bench` both start and stop their fleets here.
//
// Contract:
//  * Start() spawns a child (Child::Spawn: own process group, parent-death signal) logging to
//    LOG_DIR/<log name>, then waits until every (port, path) probe answers 200, bounded by a
//    timeout. A failure (cannot exec, exited during start-up, not ready in time) sets *error to
//    a sentence naming the component and its log. While waiting, a rise of the signal count
//    (the callback given at construction) interrupts the start.
//  * The spec helpers build the argv of each role; StartSims() runs one process for all the
//    servers or, with process_per_server, one per server (so a single server can be killed).
//  * StopAll() stops the children in reverse start order: SIGTERM, then SIGKILL after `grace`,
//    or at once when the signal count rises meanwhile (a second Ctrl-C). on_stop, when given,
//    is told before each running child is signalled.
//  * Exited() is the first component whose process ended on its own (nullptr: all running).
// Thread-safety: one thread owns a Fleet; blocking calls (for a command's main thread only,
// never an event loop).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/subprocess.h"

namespace tidegate::fleet {

using std::chrono::milliseconds;

struct SimSpec {
  std::vector<int> ports;
  std::string profile = "llama-3.1-8b-h100";
  std::string model;  // "" = the simulator's default
  double time_scale = 1;
  uint64_t seed = 0;     // 0 = the simulator's default
  int max_num_seqs = 0;  // 0 = the profile's
  bool priority_scheduling = false;
  bool process_per_server = false;
  // KV-cache events: each server publishes on its port + 1 and replays on its port + 2 (needs
  // process_per_server, as a process offsets its k-th server's ports by k).
  bool kv_events = false;
  std::string log_level = "warn";
  std::vector<std::string> extra;
};

struct GatewaySpec {
  int port = 0;
  std::vector<int> sim_ports;
  std::string policy = "tidegate-default";
  bool forward_priority = false;
  std::string admin_address = "public";  // "public" or HOST:PORT
  std::string processor_metrics;         // --processor-metrics ("" = none)
  std::string log_level = "warn";
  std::string log_name = "gateway.log";  // under LOG_DIR; another one for a second replica
  std::vector<std::string> extra;
};

struct ProcessorSpec {
  std::string gateway_url, requests_uri, results_uri;
  int metrics_port = 0;
  std::string log_level = "warn";
  std::vector<std::string> extra;
};

std::vector<std::string> SimArgv(const SimSpec& spec, const std::vector<int>& ports);
std::vector<std::string> GatewayArgv(const GatewaySpec& spec);
std::vector<std::string> ProcessorArgv(const ProcessorSpec& spec);
std::string JoinPorts(const std::vector<int>& ports, const std::string& prefix = "");

struct Component {
  std::string what;  // "the gateway", "simulated server 127.0.0.1:8001", ...
  std::string log;
  std::unique_ptr<Child> child;
};

using Probes = std::vector<std::pair<int, std::string>>;  // (port, path) that must answer 200

class Fleet {
 public:
  enum class Started { kReady, kFailed, kInterrupted };

  explicit Fleet(std::string log_dir, std::function<int()> signal_count = {});
  ~Fleet();
  Fleet(const Fleet&) = delete;
  Fleet& operator=(const Fleet&) = delete;

  Started Start(const std::string& what, const std::string& log_name,
                const std::vector<std::string>& argv, const Probes& probes, milliseconds timeout,
                std::string* error);
  Started StartSims(const SimSpec& spec, milliseconds timeout, std::string* error);
  Started StartGateway(const GatewaySpec& spec, milliseconds timeout, std::string* error);
  Started StartProcessor(const ProcessorSpec& spec, milliseconds timeout, std::string* error);

  void StopAll(milliseconds grace, const std::function<void(const Component&)>& on_stop = {});
  const Component* Exited();

  std::vector<Component>& components() { return components_; }
  const std::string& log_dir() const { return log_dir_; }

 private:
  int Signals() const { return signal_count_ ? signal_count_() : 0; }
  std::string log_dir_;
  std::function<int()> signal_count_;
  std::vector<Component> components_;  // in start order
};

}  // namespace tidegate::fleet
