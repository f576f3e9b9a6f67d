// `tidegate demo`: the all-in-one demo. Starts, as children of this process (the same binary),
// a simulated fleet (`tidegate sim`), the gateway (`tidegate serve`) and the async processor
// (`tidegate async`) on an embedded SQLite queue; prints how to use them; shows one live status
// line (real-time RPS and TTFT p99, async backlog / done / shed, pool utilisation) until Ctrl-C,
// --duration, or a child exiting on its own. `--scenario NAME` instead runs `tidegate bench` on
// scenarios/NAME.yaml (exec'd, so there is no link dependency on the bench code).
//
// Contract:
//  * Children are started in order sims → gateway → processor, each waited for (GET /health,
//    /readyz, /healthz) with a bounded timeout; a failure names the component and its log file.
//  * Shutdown (SIGINT/SIGTERM, --duration, or a child exiting) stops them in reverse order:
//    processor first (it hands back unfinished work), then the gateway, then the sims. A second
//    signal kills whatever is left at once. Exit 0 after a signal or --duration, 1 when a child
//    failed, 2 on a usage error.
//  * Status figures come from the children's /metrics and a read-only query on the queue file;
//    nothing is added to any child's interface.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/scenario.h"
#include "cli/commands.h"
#include "cli/demo_traffic.h"
#include "cli/flags.h"
#include "common/subprocess.h"
#include "common/units.h"
#include "fleet/fleet.h"
#include "metrics/quantile.h"
#include "pool/prom_sums.h"
#include "queue/queue.h"

namespace tidegate::cli {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr const char* kHost = "127.0.0.1";
constexpr const char* kModel = "meta-llama/Llama-3.1-8B-Instruct";
constexpr milliseconds kReadyTimeout{20'000};
constexpr milliseconds kStopGrace{8'000};

std::atomic<int> g_signals{0};
void OnSignal(int) { g_signals.fetch_add(1); }

void InstallSignalHandlers() {
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: sleeps wake up early
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
}

bool PortFree(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return true;
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

// A /metrics page as sums (the class split of the gateway's counters kept apart).
std::optional<pool::PromSums> Scrape(int port) {
  std::string body;
  if (HttpGetBlocking(kHost, port, "/metrics", &body, milliseconds(800)) != 200)
    return std::nullopt;
  pool::PromSums sums;
  if (!pool::SumPromText(body, &sums, {"class"})) return std::nullopt;
  return sums;
}

// The q-quantile of the observations between two snapshots of a cumulative histogram.
std::optional<double> QuantileOfDelta(const std::map<double, double>& now,
                                      const std::map<double, double>& before, double q) {
  std::vector<double> bounds, counts;
  double prev = 0;
  for (const auto& [le, c] : now) {
    auto it = before.find(le);
    const double cum = c - (it == before.end() ? 0 : it->second);
    if (!std::isinf(le)) bounds.push_back(le);
    counts.push_back(cum - prev);
    prev = cum;
  }
  if (counts.size() != bounds.size() + 1) return std::nullopt;  // no +Inf bucket
  return metrics::BucketQuantile(bounds, counts, q);
}

std::string Fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

// A scenario name → its file: NAME itself if it is a file, else ./scenarios/NAME.yaml, else
// <binary dir>/../scenarios/NAME.yaml. Returns "" (and the places tried) when none exists.
std::string ResolveScenario(const std::string& name, std::vector<std::string>* tried) {
  std::error_code ec;
  if (fs::is_regular_file(name, ec)) return name;
  tried->push_back(name);
  std::string file = name;
  auto ends_with = [&](const std::string& suffix) {
    return file.size() >= suffix.size() &&
           file.compare(file.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  if (!ends_with(".yaml") && !ends_with(".yml")) file += ".yaml";
  fs::path exe_dir = fs::path(SelfExe()).parent_path();
  for (const auto& c : {fs::path("scenarios") / file, exe_dir / ".." / "scenarios" / file}) {
    fs::path n = c.lexically_normal();
    if (fs::is_regular_file(n, ec)) return n.string();
    tried->push_back(n.string());
  }
  return "";
}

// Runs `tidegate bench` in place of this process. Returns only on failure.
int ExecBench(const std::string& scenario, const std::string& report,
              const std::optional<std::string>& duration) {
  std::string exe = SelfExe();
  std::vector<std::string> tried;
  std::string file = ResolveScenario(scenario, &tried);
  if (file.empty()) {
    std::cerr << "tidegate demo: no scenario file for '" << scenario << "' (tried";
    for (const auto& t : tried) std::cerr << " " << t;
    std::cerr << ")\n";
    return 2;
  }
  std::vector<std::string> argv = {exe, "bench", "--scenario", file, "--report", report};
  if (duration) {
    argv.push_back("--duration");
    argv.push_back(*duration);
  }
  std::cout << "tidegate demo: running";
  for (size_t i = 1; i < argv.size(); ++i) std::cout << " " << argv[i];
  std::cout << std::endl;
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  ::execv(exe.c_str(), cargv.data());
  std::perror(("tidegate demo: cannot run " + exe + " bench").c_str());
  return 1;
}

struct Sample {
  Clock::time_point at;
  std::optional<pool::PromSums> gateway, processor;
  std::optional<int64_t> backlog;
};

}  // namespace

int RunDemo(const std::vector<std::string>& args) {
  int port = 8080, sim_port = 8001, metrics_port = 9464, admin_port = 9090, servers = 4;
  int max_num_seqs = 8;
  double time_scale = 1;
  std::optional<double> time_scale_flag;
  std::string profile = "llama-3.1-8b-h100", policy = "tidegate-default";
  std::string data_dir = "./tidegate-demo", scenario, report, traffic = "sample";
  std::optional<std::string> duration_text;
  milliseconds duration{0};

  FlagSet flags(
      "tidegate demo",
      "Runs tidegate's main job on one machine with no GPU: a simulated fleet of vLLM servers\n"
      "(`tidegate sim`, default 4 × Llama-3.1-8B on one H100 each, one process per server, at\n"
      "most --max-num-seqs requests in a batch each), the gateway in front of them\n"
      "(`tidegate serve`), and the async processor (`tidegate async`) reading an embedded queue\n"
      "(one SQLite file, DATA-DIR/tidegate.db). All are child processes of this one, logging to\n"
      "DATA-DIR/sim-PORT.log, gateway.log and async.log.\n\n"
      "Sample traffic runs by default (--traffic sample), so the job shows without typing\n"
      "anything: spiky real-time chat traffic through the gateway (Poisson, 4 req/s with a\n"
      "spike of 45 req/s for 5 s every 20 s, streamed), and an async backlog on the embedded\n"
      "queue (400 requests at start, 200 more whenever fewer than 200 are left) that the\n"
      "processor sends as sheddable filler into the troughs. Rates are wall-clock. The sample's\n"
      "ids start with sample-; the demo takes the sample's own results off the results queue\n"
      "and leaves every other result for `tidegate results`. --traffic seed uses the seed\n"
      "scenario's shape (scenarios/seed.yaml: its real-time block, its async requests as the\n"
      "backlog, its time scale and batch size unless given); --traffic none starts idle.\n\n"
      "It prints the dashboard's URL (GET /dashboard on the gateway's admin listener,\n"
      "--admin-port), the OpenAI base URL, a curl example, how to submit your own async work\n"
      "with `tidegate submit` and read results with `tidegate results`, and where the metrics\n"
      "are. Your own traffic runs alongside the sample's. Then it shows one status line per\n"
      "second (rewritten in place on a terminal, else a line every 5 s): real-time requests/s\n"
      "(everything that is not the processor's sheddable traffic) and TTFT p99 of streamed\n"
      "requests in the last interval (simulated time: wall time × --time-scale), the async\n"
      "backlog (messages on the requests queue, including those being worked on), async\n"
      "requests in flight / done / shed (429s the processor retried), and pool utilisation\n"
      "(share of time the servers had work, as the gateway sees it) split into real-time and\n"
      "async.\n\n"
      "Ctrl-C (or SIGTERM) stops everything cleanly: the sample traffic, then the processor (it\n"
      "hands unfinished work back to the queue), the gateway, and the fleet; a second Ctrl-C\n"
      "kills at once. If a child exits on its own (say you kill one simulated server), the demo\n"
      "says which and its log; a simulated server may die and the rest keeps running (the\n"
      "dashboard shows it down), any other child stops the demo (exit 1).\n\n"
      "--scenario NAME runs the benchmark unattended instead: `tidegate bench --scenario FILE\n"
      "--report DIR [--duration D]`, FILE being ./scenarios/NAME.yaml, or <binary>/../scenarios/\n"
      "NAME.yaml, or NAME itself.\n\n"
      "examples: tidegate demo\n"
      "          tidegate demo --port 0 --sim-port 0 --metrics-port 0 --admin-port 0\n"
      "          tidegate demo --traffic none --time-scale 10\n"
      "          tidegate demo --scenario seed --duration 60s --report /tmp/seed-report");
  flags.Add("port", "N", "gateway port (0 = a free port)", "8080", IntSetter(&port, 0, 65535));
  flags.Add("admin-port", "N",
            "the gateway's admin listener on 127.0.0.1: /dashboard, /metrics, /v1/pool (0 = a "
            "free port)",
            "9090", IntSetter(&admin_port, 0, 65535));
  flags.Add("sim-port", "N",
            "port of the first simulated server, the others follow (0 = free ports)", "8001",
            IntSetter(&sim_port, 0, 65535));
  flags.Add("metrics-port", "N",
            "the async processor's /metrics and /healthz port (0 = a free port)", "9464",
            IntSetter(&metrics_port, 0, 65535));
  flags.Add("servers", "N", "simulated model servers", "4", IntSetter(&servers, 1, 256));
  flags.Add("max-num-seqs", "N", "most requests in a simulated server's batch (the rest wait)", "8",
            IntSetter(&max_num_seqs, 1, 4096));
  flags.Add("profile", "NAME", "simulator model/hardware profile (see tidegate sim --help)",
            profile, [&](const std::string& v) {
              profile = v;
              return std::string();
            });
  flags.Add("time-scale", "X", "the simulated fleet runs X times faster than real time", "1",
            [&](const std::string& v) -> std::string {
              double x = 0;
              if (!ParseDoubleIn(v, 1e-3, 1e6, &x)) return "expected 0.001 .. 1000000";
              time_scale_flag = x;
              return {};
            });
  flags.Add("traffic", "sample|seed|none", "the sample traffic to run (see above)", traffic,
            [&](const std::string& v) -> std::string {
              if (v != "sample" && v != "seed" && v != "none")
                return "expected sample, seed or none";
              traffic = v;
              return {};
            });
  flags.Add("policy", "NAME", "the gateway's picking policy (see tidegate serve --help)", policy,
            [&](const std::string& v) {
              policy = v;
              return std::string();
            });
  flags.Add("data-dir", "DIR", "where the queue file and the logs go (created if missing)",
            data_dir, [&](const std::string& v) -> std::string {
              if (v.empty()) return "must not be empty";
              data_dir = v;
              return {};
            });
  flags.Add("duration", "DUR", "stop everything after this long (0 = run until Ctrl-C)", "0",
            [&](const std::string& v) -> std::string {
              auto d = ParseDuration(v);
              if (!d || d->count() < 0) return "expected a duration such as 20s or 5m";
              duration = *d;
              duration_text = v;
              return {};
            });
  flags.Add("scenario", "NAME|FILE", "run the benchmark on this scenario instead (e.g. seed)",
            "none", [&](const std::string& v) -> std::string {
              if (v.empty()) return "must not be empty";
              scenario = v;
              return {};
            });
  flags.Add("report", "DIR", "with --scenario: where the bench writes report.json and report.html",
            "DATA-DIR/report", [&](const std::string& v) -> std::string {
              if (v.empty()) return "must not be empty";
              report = v;
              return {};
            });
  if (auto rc = ParseCommandLine(flags, args)) return *rc;

  if (!scenario.empty()) {
    if (report.empty()) report = (fs::path(data_dir) / "report").string();
    return ExecBench(scenario, report, duration_text);
  }
  if (!report.empty()) {
    std::cerr << "tidegate demo: --report needs --scenario (see tidegate demo --help)\n";
    return 2;
  }

  // The traffic's shape (and, for seed, the fleet's settings).
  std::optional<DemoTrafficPreset> preset;
  std::vector<std::string> gateway_extra = {"--drain-timeout", "5s", "--queue-threshold", "2"};
  if (traffic == "sample") preset = SampleTraffic();
  if (traffic == "seed") {
    std::vector<std::string> tried;
    std::string file = ResolveScenario("seed", &tried);
    bench::Scenario seed;
    std::string err;
    if (file.empty() || !bench::LoadScenario(file, &seed, &err)) {
      std::cerr << "tidegate demo: --traffic seed needs scenarios/seed.yaml: "
                << (file.empty() ? "not found" : err) << "\n";
      return 2;
    }
    preset = SeedTraffic(seed);
    if (!time_scale_flag) time_scale_flag = seed.fleet.time_scale;
    if (seed.fleet.max_num_seqs > 0) max_num_seqs = seed.fleet.max_num_seqs;
    gateway_extra = {"--drain-timeout", "5s"};
    gateway_extra.insert(gateway_extra.end(), seed.fleet.gateway_args.begin(),
                         seed.fleet.gateway_args.end());
  }
  time_scale = time_scale_flag.value_or(1);

  // Directories, ports, URIs.
  std::error_code ec;
  fs::create_directories(data_dir, ec);
  fs::path dir = fs::weakly_canonical(fs::absolute(data_dir), ec);
  if (ec || !fs::is_directory(dir)) {
    std::cerr << "tidegate demo: cannot create the data directory " << data_dir << "\n";
    return 1;
  }
  const std::string db = (dir / "tidegate.db").string();
  const std::string requests_uri = "sqlite://" + db + "?queue=requests";
  const std::string results_uri = "sqlite://" + db + "?queue=results";
  // The OpenAI Batch API on the same pool: its lines go on the processor's queue; their results
  // come back on their own queue, which the gateway's batch runner reads.
  const std::string batch_results_uri = "sqlite://" + db + "?queue=batch-results";
  const std::string batch_dir = (dir / "batches").string();
  gateway_extra.insert(gateway_extra.end(), {"--batch-dir", batch_dir, "--batch-queue",
                                             requests_uri, "--batch-results", batch_results_uri});

  std::set<int> taken;  // ports already given to a component
  auto pick = [&taken](int wanted, const char* flag, int* out) -> bool {
    if (wanted == 0) {
      for (int tries = 0; tries < 100; ++tries) {
        int p = FreeTcpPort();
        if (p > 0 && taken.insert(p).second) {
          *out = p;
          return true;
        }
      }
      std::cerr << "tidegate demo: cannot find a free port for " << flag << "\n";
      return false;
    }
    if (taken.count(wanted)) {
      std::cerr << "tidegate demo: port " << wanted << " is given twice (" << flag
                << " overlaps another port flag)\n";
      return false;
    }
    taken.insert(wanted);
    if (!PortFree(wanted)) {
      std::cerr << "tidegate demo: port " << wanted << " is in use (pass " << flag
                << " with another port, or 0 for a free one)\n";
      return false;
    }
    *out = wanted;
    return true;
  };
  std::vector<int> sim_ports;
  for (int i = 0; i < servers; ++i) {
    int p = 0;
    if (!pick(sim_port == 0 ? 0 : sim_port + i, "--sim-port", &p)) return 1;
    sim_ports.push_back(p);
  }
  if (!pick(port, "--port", &port)) return 1;
  if (!pick(admin_port, "--admin-port", &admin_port)) return 1;
  if (!pick(metrics_port, "--metrics-port", &metrics_port)) return 1;

  const std::string gateway_url = "http://" + std::string(kHost) + ":" + std::to_string(port);
  const std::string admin_url = "http://" + std::string(kHost) + ":" + std::to_string(admin_port);
  const std::string processor_metrics =
      "http://" + std::string(kHost) + ":" + std::to_string(metrics_port) + "/metrics";

  InstallSignalHandlers();
  fleet::Fleet fleet(dir.string(), [] { return g_signals.load(); });
  auto stop_all = [&] {
    fleet.StopAll(kStopGrace, [](const fleet::Component& c) {
      std::cout << "tidegate demo: stopping " << c.what << " (pid " << c.child->pid() << ")"
                << std::endl;
    });
  };
  auto started = [&](fleet::Fleet::Started r, const std::string& err) -> std::optional<int> {
    if (r == fleet::Fleet::Started::kReady) return std::nullopt;
    if (r == fleet::Fleet::Started::kFailed) std::cerr << "tidegate demo: " << err << "\n";
    stop_all();
    return r == fleet::Fleet::Started::kInterrupted ? 0 : 1;
  };
  auto announce = [&](size_t from) {
    auto& cs = fleet.components();
    for (size_t i = from; i < cs.size(); ++i)
      std::cout << "tidegate demo: started " << cs[i].what << " (pid " << cs[i].child->pid()
                << ", log " << cs[i].log << ")" << std::endl;
  };

  std::string err;
  fleet::SimSpec sims;
  sims.ports = sim_ports;
  sims.profile = profile;
  sims.model = kModel;
  sims.time_scale = time_scale;
  sims.max_num_seqs = max_num_seqs;
  sims.priority_scheduling = true;  // real-time is served before the filler that waits
  sims.process_per_server = true;   // one server can die alone
  if (auto rc = started(fleet.StartSims(sims, kReadyTimeout, &err), err)) return *rc;
  announce(0);
  const size_t n_sims = fleet.components().size();

  fleet::GatewaySpec gw;
  gw.port = port;
  gw.sim_ports = sim_ports;
  gw.policy = policy;
  gw.forward_priority = true;
  gw.admin_address = std::string(kHost) + ":" + std::to_string(admin_port);
  gw.processor_metrics = processor_metrics;
  gw.log_level = "info";
  gw.extra = gateway_extra;
  if (auto rc = started(fleet.StartGateway(gw, kReadyTimeout, &err), err)) return *rc;
  announce(n_sims);

  fleet::ProcessorSpec pr;
  pr.gateway_url = gateway_url;
  pr.requests_uri = requests_uri;
  pr.results_uri = results_uri;
  pr.metrics_port = metrics_port;
  pr.log_level = "info";
  pr.extra = {"--drain-timeout", "5s", "--gateway-admin", admin_url, "--batch-responses",
              batch_results_uri};
  if (auto rc = started(fleet.StartProcessor(pr, kReadyTimeout, &err), err)) return *rc;
  announce(n_sims + 1);

  // The sample traffic.
  std::unique_ptr<RealtimeTraffic> rt;
  std::unique_ptr<AsyncBacklog> backlog;
  if (preset) {
    backlog = std::make_unique<AsyncBacklog>(requests_uri, results_uri, kModel, *preset, 1);
    rt = std::make_unique<RealtimeTraffic>(gateway_url, kModel, preset->realtime, preset->window_s,
                                           1);
    if (!backlog->Open(&err) || !rt->Start(&err)) {
      std::cerr << "tidegate demo: cannot start the sample traffic: " << err << "\n";
      rt.reset();
      stop_all();
      return 1;
    }
    if (auto problem = backlog->Tick(); !problem.empty())
      std::cerr << "tidegate demo: " << problem << "\n";
  }
  std::unique_ptr<queue::Queue> requests_view = queue::OpenQueue(requests_uri, &err);

  std::string sim_range = std::to_string(sim_ports.front());
  if (sim_ports.size() > 1) sim_range += ".." + std::to_string(sim_ports.back());
  bool contiguous = sim_ports.back() - sim_ports.front() + 1 == static_cast<int>(sim_ports.size());
  std::string sim_pids, ports_csv = fleet::JoinPorts(sim_ports);
  for (size_t i = 0; i < n_sims; ++i)
    sim_pids += (i ? "," : "") + std::to_string(fleet.components()[i].child->pid());
  auto pad = [](std::string s) {
    s.insert(0, "    ");
    s.resize(std::max<size_t>(s.size() + 2, 48), ' ');
    return s;
  };
  std::ostringstream m;
  m << "\n"
    << "  tidegate is running.\n\n"
    << "  dashboard:        " << admin_url << "/dashboard\n"
    << "  OpenAI base URL:  " << gateway_url << "/v1   (any API key; model \"" << kModel << "\")\n"
    << "  behind it:        " << servers << " simulated vLLM servers (" << profile << ", "
    << Fixed(time_scale, time_scale == std::floor(time_scale) ? 0 : 2) << "x real time, "
    << max_num_seqs << " seqs each) on " << kHost << ":" << (contiguous ? sim_range : ports_csv)
    << "\n"
    << "  async processor:  " << requests_uri << " -> gateway (sheddable) -> " << results_uri
    << "\n"
    << "  sample traffic:   "
    << (!preset ? std::string("none (--traffic none)")
                : traffic + ": real-time " + Fixed(preset->realtime.base_rps, 0) +
                      " req/s, spikes of " + Fixed(preset->realtime.spike_rps, 0) +
                      " req/s; async backlog of " + std::to_string(preset->initial) + ", topped up")
    << "\n\n"
    << "  chat (streaming):\n"
    << "    curl -sN " << gateway_url
    << "/v1/chat/completions -H 'content-type: application/json' \\\n"
    << "      -d '{\"model\":\"" << kModel
    << "\",\"max_tokens\":64,\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"
       "'\n\n"
    << "  async work: one request per line of a JSONL file, e.g. work.jsonl:\n"
    << "    {\"id\":\"doc-1\",\"payload\":{\"model\":\"" << kModel
    << "\",\"max_tokens\":64,\"messages\":[{\"role\":\"user\",\"content\":\"categorise: ...\"}]}}\n"
    << "    " << SelfExe() << " submit --queue '" << requests_uri << "' work.jsonl\n"
    << "    " << SelfExe() << " results --queue '" << results_uri << "'\n\n"
    << "  OpenAI Batch API (the same lines with custom_id/method/url/body; served as filler):\n"
    << "    curl -s " << gateway_url << "/v1/files -F purpose=batch -F file=@batch.jsonl\n"
    << "    curl -s " << gateway_url << "/v1/batches -H 'content-type: application/json' \\\n"
    << "      -d '{\"input_file_id\":\"file-...\",\"endpoint\":\"/v1/chat/completions\","
       "\"completion_window\":\"24h\"}'\n"
    << "    (or the openai client: files.create, batches.create, batches.retrieve; state in "
    << batch_dir << ")\n\n"
    << "  metrics:\n"
    << pad(admin_url + "/metrics") << "the gateway (Prometheus text format)\n"
    << pad(processor_metrics) << "the async processor\n"
    << pad(admin_url + "/v1/pool") << "every server, as the gateway sees it\n"
    << pad(admin_url + "/v1/capacity") << "how many more sheddable requests fit now\n\n"
    << "  logs: " << (dir / ("sim-" + std::to_string(sim_ports.front()) + ".log")).string()
    << " (one per server), gateway.log, async.log\n"
    << "  pids: sim " << sim_pids << ", gateway " << fleet.components()[n_sims].child->pid()
    << ", async " << fleet.components()[n_sims + 1].child->pid() << "\n"
    << "  sim pids: " << sim_pids << "   (kill one: the dashboard shows it down)\n"
    << "  Ctrl-C stops everything.\n";
  std::cout << m.str() << std::endl;

  // Live status until a signal, --duration, or a child exiting on its own.
  const bool tty = ::isatty(STDOUT_FILENO) == 1;
  auto take = [&] {
    Sample s;
    s.at = Clock::now();
    s.gateway = Scrape(admin_port);
    s.processor = Scrape(metrics_port);
    if (requests_view) s.backlog = requests_view->Backlog();
    return s;
  };
  // The status line: rates over the interval since `base` (1 s on a terminal, else 5 s).
  auto status_line = [&](const Sample& cur, const Sample& base, Clock::time_point started_at) {
    double dt = std::chrono::duration<double>(cur.at - base.at).count();
    std::string rps = "-", p99 = "-", backlog_s = "-", inflight = "-", done = "-", shed = "-",
                util = "-";
    if (cur.gateway && base.gateway && dt > 0) {
      const char* kRt = "tidegate_requests_by_class_total{class=\"realtime\"}";
      rps = Fixed(std::max(0.0, cur.gateway->Get(kRt) - base.gateway->Get(kRt)) / dt, 1);
      const auto& b = cur.gateway->buckets;
      const auto& bb = base.gateway->buckets;
      auto it = b.find("tidegate_time_to_first_token_seconds");
      auto jt = bb.find("tidegate_time_to_first_token_seconds");
      if (it != b.end() && jt != bb.end())
        if (auto q = QuantileOfDelta(it->second, jt->second, 0.99))
          p99 = std::to_string(static_cast<long long>(std::llround(*q * 1000 * time_scale))) +
                (time_scale == 1 ? " ms" : " ms simulated");
      const char* kRtBusy = "tidegate_endpoint_busy_seconds_total{class=\"realtime\"}";
      const char* kAsBusy = "tidegate_endpoint_busy_seconds_total{class=\"async\"}";
      const double cap = dt * servers;
      const double u_rt = std::clamp(
          (cur.gateway->Get(kRtBusy) - base.gateway->Get(kRtBusy)) / cap * 100, 0.0, 100.0);
      const double u_as = std::clamp(
          (cur.gateway->Get(kAsBusy) - base.gateway->Get(kAsBusy)) / cap * 100, 0.0, 100.0 - u_rt);
      util = Fixed(u_rt + u_as, 0) + "% (real-time " + Fixed(u_rt, 0) + "%, async " +
             Fixed(u_as, 0) + "%)";
    }
    if (cur.backlog) backlog_s = std::to_string(*cur.backlog);
    if (cur.processor) {
      inflight = Fixed(cur.processor->Get("tidegate_async_in_flight"), 0);
      done = Fixed(cur.processor->Get("tidegate_async_requests_succeeded_total"), 0);
      shed = Fixed(cur.processor->Get("tidegate_async_sheds_total"), 0);
    }
    long long secs = std::chrono::duration_cast<std::chrono::seconds>(cur.at - started_at).count();
    return "[" + std::to_string(secs) + "s] real-time " + rps + " req/s, TTFT p99 " + p99 +
           " | async backlog " + backlog_s + ", in flight " + inflight + ", done " + done +
           ", shed " + shed + " | utilisation " + util;
  };

  const auto started_at = Clock::now();
  Sample base = take();
  auto tick = base.at;
  int exit_code = 0;
  std::set<pid_t> reported;  // simulated servers already reported dead
  while (true) {
    tick += milliseconds(1000);
    while (Clock::now() < tick && g_signals.load() == 0)
      std::this_thread::sleep_for(milliseconds(50));
    if (g_signals.load() > 0) {
      if (tty) std::cout << "\n";
      std::cout << "tidegate demo: stopping (signal)" << std::endl;
      break;
    }
    bool fatal = false;
    auto& cs = fleet.components();
    for (size_t i = 0; i < cs.size(); ++i) {
      Child& c = *cs[i].child;
      if (c.Running() || reported.count(c.pid())) continue;
      reported.insert(c.pid());
      const bool sim = i < n_sims;
      if (tty) std::cout << "\n";
      std::cout << "tidegate demo: " << cs[i].what << " (pid " << c.pid()
                << ") exited on its own with status " << c.Wait(milliseconds(0)) << "; see its log "
                << cs[i].log << (sim ? "; the gateway routes around it" : "; stopping the rest")
                << std::endl;
      fatal = fatal || !sim;
    }
    if (reported.size() >= n_sims && !fatal) {
      std::cout << "tidegate demo: every simulated server is gone; stopping the rest" << std::endl;
      fatal = true;
    }
    if (fatal) {
      exit_code = 1;
      break;
    }
    if (backlog) {
      if (auto problem = backlog->Tick(); !problem.empty())
        std::cerr << "tidegate demo: " << problem << "\n";
    }
    if (Clock::now() > tick + milliseconds(1000)) tick = Clock::now();  // scrapes were slow
    Sample cur = take();
    if (tty) {
      std::cout << "\r" << status_line(cur, base, started_at) << "\033[K" << std::flush;
      base = std::move(cur);
    } else if (cur.at - base.at >= milliseconds(4900)) {
      std::cout << status_line(cur, base, started_at) << std::endl;
      base = std::move(cur);
    }
    if (duration.count() > 0 && Clock::now() - started_at >= duration) {
      if (tty) std::cout << "\n";
      std::cout << "tidegate demo: --duration " << *duration_text << " reached; stopping"
                << std::endl;
      break;
    }
  }
  if (rt) {
    std::cout << "tidegate demo: stopping the sample traffic (" << rt->sent()
              << " real-time requests sent, " << rt->succeeded() << " succeeded; "
              << (backlog ? backlog->submitted() : 0) << " async submitted)" << std::endl;
    rt->Stop();
  }
  stop_all();
  std::cout << "tidegate demo: stopped; logs and the queue file are in " << dir.string()
            << std::endl;
  return exit_code;
}

}  // namespace tidegate::cli
