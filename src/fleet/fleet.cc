#include "fleet/fleet.h"

#include <signal.h>

#include <fstream>
#include <thread>

namespace tidegate::fleet {

namespace {

using Steady = std::chrono::steady_clock;
constexpr const char* kHost = "127.0.0.1";

std::string Num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

}  // namespace

std::string JoinPorts(const std::vector<int>& ports, const std::string& prefix) {
  std::string s;
  for (size_t i = 0; i < ports.size(); ++i) s += (i ? "," : "") + prefix + std::to_string(ports[i]);
  return s;
}

std::vector<std::string> SimArgv(const SimSpec& spec, const std::vector<int>& ports) {
  std::vector<std::string> argv = {
      SelfExe(),        "sim",         "--host",     kHost,          "--ports",
      JoinPorts(ports), "--profile",   spec.profile, "--time-scale", Num(spec.time_scale),
      "--log-level",    spec.log_level};
  if (!spec.model.empty()) argv.insert(argv.end(), {"--model", spec.model});
  if (spec.seed != 0) argv.insert(argv.end(), {"--seed", std::to_string(spec.seed)});
  if (spec.max_num_seqs > 0)
    argv.insert(argv.end(), {"--max-num-seqs", std::to_string(spec.max_num_seqs)});
  if (spec.priority_scheduling) argv.insert(argv.end(), {"--scheduling-policy", "priority"});
  if (spec.kv_events && ports.size() == 1) {
    const std::string host = std::string("tcp://") + kHost + ":";
    argv.insert(argv.end(),
                {"--kv-events-config",
                 "{\"enable_kv_cache_events\":true,\"publisher\":\"zmq\",\"endpoint\":\"" + host +
                     std::to_string(ports[0] + 1) + "\",\"replay_endpoint\":\"" + host +
                     std::to_string(ports[0] + 2) + "\"}"});
  }
  argv.insert(argv.end(), spec.extra.begin(), spec.extra.end());
  return argv;
}

std::vector<std::string> GatewayArgv(const GatewaySpec& spec) {
  std::vector<std::string> argv = {
      SelfExe(),         "serve",
      "--host",          kHost,
      "--port",          std::to_string(spec.port),
      "--endpoints",     JoinPorts(spec.sim_ports, std::string(kHost) + ":"),
      "--policy",        spec.policy,
      "--admin-address", spec.admin_address,
      "--log-level",     spec.log_level};
  if (spec.forward_priority) argv.push_back("--forward-priority");
  if (!spec.processor_metrics.empty())
    argv.insert(argv.end(), {"--processor-metrics", spec.processor_metrics});
  argv.insert(argv.end(), spec.extra.begin(), spec.extra.end());
  return argv;
}

std::vector<std::string> ProcessorArgv(const ProcessorSpec& spec) {
  std::vector<std::string> argv = {SelfExe(),        "async",
                                   "--gateway",      spec.gateway_url,
                                   "--requests",     spec.requests_uri,
                                   "--responses",    spec.results_uri,
                                   "--metrics-host", kHost,
                                   "--metrics-port", std::to_string(spec.metrics_port),
                                   "--log-level",    spec.log_level};
  argv.insert(argv.end(), spec.extra.begin(), spec.extra.end());
  return argv;
}

Fleet::Fleet(std::string log_dir, std::function<int()> signal_count)
    : log_dir_(std::move(log_dir)), signal_count_(std::move(signal_count)) {}

Fleet::~Fleet() { StopAll(milliseconds(3000)); }

Fleet::Started Fleet::Start(const std::string& what, const std::string& log_name,
                            const std::vector<std::string>& argv, const Probes& probes,
                            milliseconds timeout, std::string* error) {
  const std::string log = log_dir_ + "/" + log_name;
  { std::ofstream truncate(log, std::ios::trunc); }
  std::string err;
  auto child = Child::Spawn(argv, log, &err);
  if (!child) {
    *error = "cannot start " + what + ": " + err;
    return Started::kFailed;
  }
  components_.push_back({what, log, std::move(child)});
  Child& c = *components_.back().child;
  const int signals_before = Signals();
  const auto until = Steady::now() + timeout;
  for (const auto& [port, path] : probes) {
    std::string body;
    for (;;) {
      if (Signals() > signals_before) return Started::kInterrupted;
      if (!c.Running()) {
        *error = what + " exited during start-up (status " +
                 std::to_string(c.Wait(milliseconds(0))) + "); see its log " + log;
        return Started::kFailed;
      }
      if (HttpGetBlocking(kHost, port, path, &body, milliseconds(500)) == 200) break;
      if (Steady::now() >= until) {
        const std::string waited = timeout.count() % 1000 == 0
                                       ? std::to_string(timeout.count() / 1000) + " s"
                                       : std::to_string(timeout.count()) + " ms";
        *error = what + " not ready after " + waited + " (GET http://" + kHost + ":" +
                 std::to_string(port) + path + " did not answer 200); see its log " + log;
        return Started::kFailed;
      }
      std::this_thread::sleep_for(milliseconds(50));
    }
  }
  return Started::kReady;
}

Fleet::Started Fleet::StartSims(const SimSpec& spec, milliseconds timeout, std::string* error) {
  if (!spec.process_per_server) {
    Probes probes;
    for (int p : spec.ports) probes.emplace_back(p, "/health");
    return Start("the simulated fleet", "sim.log", SimArgv(spec, spec.ports), probes, timeout,
                 error);
  }
  for (size_t i = 0; i < spec.ports.size(); ++i) {
    const int p = spec.ports[i];
    Started s = Start("simulated server " + std::string(kHost) + ":" + std::to_string(p),
                      "sim-" + std::to_string(p) + ".log", SimArgv(spec, {p}), {{p, "/health"}},
                      timeout, error);
    if (s != Started::kReady) return s;
  }
  return Started::kReady;
}

Fleet::Started Fleet::StartGateway(const GatewaySpec& spec, milliseconds timeout,
                                   std::string* error) {
  return Start("the gateway", spec.log_name, GatewayArgv(spec), {{spec.port, "/readyz"}}, timeout,
               error);
}

Fleet::Started Fleet::StartProcessor(const ProcessorSpec& spec, milliseconds timeout,
                                     std::string* error) {
  return Start("the async processor", "async.log", ProcessorArgv(spec),
               {{spec.metrics_port, "/healthz"}}, timeout, error);
}

void Fleet::StopAll(milliseconds grace, const std::function<void(const Component&)>& on_stop) {
  for (auto it = components_.rbegin(); it != components_.rend(); ++it) {
    Child* c = it->child.get();
    if (!c || !c->Running()) continue;
    if (on_stop) on_stop(*it);
    const int signals_before = Signals();
    c->Signal(SIGTERM);
    const auto until = Steady::now() + grace;
    while (c->Running()) {
      if (Steady::now() >= until || Signals() > signals_before) {
        c->Signal(SIGKILL);
        c->Wait(milliseconds(5000));
        break;
      }
      c->Wait(milliseconds(50));
    }
  }
}

const Component* Fleet::Exited() {
  for (auto& c : components_)
    if (c.child && !c.child->Running()) return &c;
  return nullptr;
}

}  // namespace tidegate::fleet
