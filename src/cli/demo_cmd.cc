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
#include <sqlite3.h>
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

#include "cli/commands.h"
#include "cli/flags.h"
#include "common/subprocess.h"
#include "common/units.h"
#include "pool/prom_text.h"

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

// One started component: its child process, what to call it and where it logs.
struct Component {
  std::string what;  // "the simulated fleet", "the gateway", "the async processor"
  std::string log;
  std::unique_ptr<Child> child;
};

// SIGTERM, then SIGKILL after `grace` or at once when another signal arrives meanwhile.
void StopComponent(Component& c, milliseconds grace) {
  if (!c.child || !c.child->Running()) return;
  int signals_before = g_signals.load();
  c.child->Signal(SIGTERM);
  auto until = Clock::now() + grace;
  while (c.child->Running()) {
    if (Clock::now() >= until || g_signals.load() > signals_before) {
      c.child->Signal(SIGKILL);
      c.child->Wait(milliseconds(5000));
      break;
    }
    c.child->Wait(milliseconds(50));
  }
}

// Sums of the metric series the status line needs, from one /metrics page.
struct PromSums : pool::PromVisitor {
  std::map<std::string, double> sums;     // family or series name → sum over labels
  std::map<double, double> ttft_buckets;  // le → cumulative count
  bool OnSample(const pool::PromSample& s) override {
    if (s.name == "tidegate_requests_total") {
      auto path = s.Label("path");
      if (path == "/v1/chat/completions" || path == "/v1/completions" || path == "/v1/embeddings")
        sums["api_requests"] += s.value;
    } else if (s.name == "tidegate_time_to_first_token_seconds_bucket") {
      double le = 0;
      if (pool::ParsePromValue(s.Label("le"), &le)) ttft_buckets[le] += s.value;
    } else {
      sums[std::string(s.name)] += s.value;
    }
    return true;
  }
  double Get(const std::string& name) const {
    auto it = sums.find(name);
    return it == sums.end() ? 0 : it->second;
  }
};

std::optional<PromSums> Scrape(int port) {
  std::string body;
  if (HttpGetBlocking(kHost, port, "/metrics", &body, milliseconds(800)) != 200)
    return std::nullopt;
  PromSums sums;
  if (!pool::ParsePromText(body, sums).ok()) return std::nullopt;
  return sums;
}

// The q-quantile of observations between two cumulative histogram snapshots (Prometheus'
// histogram_quantile: linear within the bucket). nullopt when nothing was observed.
std::optional<double> QuantileOfDelta(const std::map<double, double>& now,
                                      const std::map<double, double>& before, double q) {
  std::vector<std::pair<double, double>> delta;  // (le, cumulative count in the interval)
  for (const auto& [le, c] : now) {
    auto it = before.find(le);
    delta.emplace_back(le, c - (it == before.end() ? 0 : it->second));
  }
  if (delta.empty() || delta.back().second <= 0) return std::nullopt;
  double total = delta.back().second;
  double rank = q * total;
  double prev_le = 0, prev_c = 0;
  for (const auto& [le, c] : delta) {
    if (c >= rank) {
      if (std::isinf(le)) return prev_le;  // above the highest finite bucket
      if (c == prev_c) return le;
      return prev_le + (le - prev_le) * (rank - prev_c) / (c - prev_c);
    }
    prev_le = le;
    prev_c = c;
  }
  return prev_le;
}

// Rows of `queue` in the SQLite queue file (read-only; -1 if it cannot be read yet).
long long CountQueue(const std::string& db_path, const std::string& queue) {
  sqlite3* db = nullptr;
  long long n = -1;
  if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_busy_timeout(db, 200);
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM messages WHERE queue = ?1", -1, &st,
                           nullptr) == SQLITE_OK) {
      sqlite3_bind_text(st, 1, queue.c_str(), -1, SQLITE_TRANSIENT);
      if (sqlite3_step(st) == SQLITE_ROW) n = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
  return n;
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
  std::optional<PromSums> gateway, processor;
  std::vector<std::optional<PromSums>> sims;
};

}  // namespace

int RunDemo(const std::vector<std::string>& args) {
  int port = 8080, sim_port = 8001, metrics_port = 9464, servers = 4;
  double time_scale = 1;
  std::string profile = "llama-3.1-8b-h100", policy = "tidegate-default";
  std::string data_dir = "./tidegate-demo", scenario, report;
  std::optional<std::string> duration_text;
  milliseconds duration{0};

  FlagSet flags(
      "tidegate demo",
      "Runs tidegate's main job on one machine with no GPU: a simulated fleet of vLLM servers\n"
      "(`tidegate sim`, default 4 × Llama-3.1-8B on one H100 each), the gateway in front of\n"
      "them (`tidegate serve`), and the async processor (`tidegate async`) reading an embedded\n"
      "queue (one SQLite file, DATA-DIR/tidegate.db). All three are child processes of this one,\n"
      "logging to DATA-DIR/sim.log, gateway.log and async.log.\n\n"
      "It prints the OpenAI base URL, a curl example, how to submit async work with\n"
      "`tidegate submit` and read results with `tidegate results`, and where the metrics are.\n"
      "Then it shows one status line per second (rewritten in place on a terminal, else a line\n"
      "every 5 s): real-time requests/s (API requests minus the processor's dispatches), TTFT p99\n"
      "of streamed requests in the last interval (simulated time: wall time × --time-scale, as a\n"
      "real fleet would see it), the async backlog (messages in the requests queue, including\n"
      "those being worked on), async requests in flight / done / shed (429s the processor\n"
      "retried), and pool utilisation (simulated busy time over wall time × time scale × "
      "servers).\n\n"
      "Ctrl-C (or SIGTERM) stops everything cleanly: the processor first (it hands unfinished\n"
      "work back to the queue), then the gateway, then the fleet; a second Ctrl-C kills at once.\n"
      "If a child exits on its own, the demo says which (and its log) and stops the rest (exit "
      "1).\n\n"
      "--scenario NAME runs the benchmark unattended instead: `tidegate bench --scenario FILE\n"
      "--report DIR [--duration D]`, FILE being ./scenarios/NAME.yaml, or <binary>/../scenarios/\n"
      "NAME.yaml, or NAME itself.\n\n"
      "examples: tidegate demo\n"
      "          tidegate demo --port 0 --sim-port 0 --metrics-port 0 --time-scale 10\n"
      "          tidegate demo --scenario seed --duration 60s --report /tmp/seed-report");
  flags.Add("port", "N", "gateway port (0 = a free port)", "8080", IntSetter(&port, 0, 65535));
  flags.Add("sim-port", "N",
            "port of the first simulated server, the others follow (0 = free ports)", "8001",
            IntSetter(&sim_port, 0, 65535));
  flags.Add("metrics-port", "N",
            "the async processor's /metrics and /healthz port (0 = a free port)", "9464",
            IntSetter(&metrics_port, 0, 65535));
  flags.Add("servers", "N", "simulated model servers", "4", IntSetter(&servers, 1, 256));
  flags.Add("profile", "NAME", "simulator model/hardware profile (see tidegate sim --help)",
            profile, [&](const std::string& v) {
              profile = v;
              return std::string();
            });
  flags.Add("time-scale", "X", "the simulated fleet runs X times faster than real time", "1",
            DoubleSetter(&time_scale, 1e-3, 1e6));
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
  if (!pick(metrics_port, "--metrics-port", &metrics_port)) return 1;

  std::string ports_csv, endpoints_csv;
  for (size_t i = 0; i < sim_ports.size(); ++i) {
    ports_csv += (i ? "," : "") + std::to_string(sim_ports[i]);
    endpoints_csv += std::string(i ? "," : "") + kHost + ":" + std::to_string(sim_ports[i]);
  }
  const std::string exe = SelfExe();
  const std::string gateway_url = "http://" + std::string(kHost) + ":" + std::to_string(port);

  InstallSignalHandlers();
  std::vector<Component> comps;  // in start order; stopped in reverse
  auto stop_all = [&] {
    for (auto it = comps.rbegin(); it != comps.rend(); ++it) {
      if (it->child && it->child->Running())
        std::cout << "tidegate demo: stopping " << it->what << " (pid " << it->child->pid() << ")"
                  << std::endl;
      StopComponent(*it, kStopGrace);
    }
  };

  // Starts one component and waits until every (port, path) answers 200.
  // Returns 0 when ready, 1 on failure (reported), or -1 when interrupted by a signal.
  auto start = [&](const std::string& what, const std::string& log_name,
                   std::vector<std::string> argv,
                   const std::vector<std::pair<int, std::string>>& probes) -> int {
    std::string log = (dir / log_name).string();
    { std::ofstream truncate(log, std::ios::trunc); }
    std::string err;
    auto child = Child::Spawn(argv, log, &err);
    if (!child) {
      std::cerr << "tidegate demo: cannot start " << what << ": " << err << "\n";
      return 1;
    }
    std::cout << "tidegate demo: started " << what << " (pid " << child->pid() << ", log " << log
              << ")" << std::endl;
    comps.push_back({what, log, std::move(child)});
    Child& c = *comps.back().child;
    auto until = Clock::now() + kReadyTimeout;
    for (const auto& [p, path] : probes) {
      std::string body;
      for (;;) {
        if (g_signals.load() > 0) return -1;
        if (!c.Running()) {
          std::cerr << "tidegate demo: " << what << " exited during start-up (status "
                    << c.Wait(milliseconds(0)) << "); see its log " << log << "\n";
          return 1;
        }
        if (HttpGetBlocking(kHost, p, path, &body, milliseconds(500)) == 200) break;
        if (Clock::now() >= until) {
          std::cerr << "tidegate demo: " << what << " not ready after "
                    << kReadyTimeout.count() / 1000 << " s (GET http://" << kHost << ":" << p
                    << path << " did not answer 200); see its log " << log << "\n";
          return 1;
        }
        std::this_thread::sleep_for(milliseconds(50));
      }
    }
    return 0;
  };
  auto fail_or_interrupt = [&](int rc) {
    stop_all();
    return rc < 0 ? 0 : rc;
  };

  std::vector<std::pair<int, std::string>> sim_probes;
  for (int p : sim_ports) sim_probes.emplace_back(p, "/health");
  if (int rc = start("the simulated fleet", "sim.log",
                     {exe, "sim", "--host", kHost, "--ports", ports_csv, "--profile", profile,
                      "--time-scale", Fixed(time_scale, 6), "--log-level", "warn"},
                     sim_probes))
    return fail_or_interrupt(rc);
  if (int rc = start(
          "the gateway", "gateway.log",
          {exe, "serve", "--host", kHost, "--port", std::to_string(port), "--endpoints",
           endpoints_csv, "--policy", policy, "--drain-timeout", "5s", "--admin-address", "public"},
          {{port, "/readyz"}}))
    return fail_or_interrupt(rc);
  if (int rc = start("the async processor", "async.log",
                     {exe, "async", "--gateway", gateway_url, "--requests", requests_uri,
                      "--responses", results_uri, "--metrics-host", kHost, "--metrics-port",
                      std::to_string(metrics_port), "--drain-timeout", "5s"},
                     {{metrics_port, "/healthz"}}))
    return fail_or_interrupt(rc);

  std::string sim_range = std::to_string(sim_ports.front());
  if (sim_ports.size() > 1) sim_range += ".." + std::to_string(sim_ports.back());
  bool contiguous = sim_ports.back() - sim_ports.front() + 1 == static_cast<int>(sim_ports.size());
  auto pad = [](std::string s) {
    s.insert(0, "    ");
    s.resize(std::max<size_t>(s.size() + 2, 48), ' ');
    return s;
  };
  std::ostringstream m;
  m << "\n"
    << "  tidegate is running.\n\n"
    << "  OpenAI base URL:  " << gateway_url << "/v1   (any API key; model \"" << kModel << "\")\n"
    << "  behind it:        " << servers << " simulated vLLM servers (" << profile << ", "
    << Fixed(time_scale, time_scale == std::floor(time_scale) ? 0 : 2) << "x real time) on "
    << kHost << ":" << (contiguous ? sim_range : ports_csv) << "\n"
    << "  async processor:  " << requests_uri << " -> gateway (sheddable) -> " << results_uri
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
    << "    " << exe << " submit --queue '" << requests_uri << "' work.jsonl\n"
    << "    " << exe << " results --queue '" << results_uri << "'\n\n"
    << "  metrics:\n"
    << pad(gateway_url + "/metrics") << "the gateway (Prometheus text format)\n"
    << pad("http://" + std::string(kHost) + ":" + std::to_string(metrics_port) + "/metrics")
    << "the async processor\n"
    << pad(gateway_url + "/v1/pool") << "every server, as the gateway sees it\n"
    << pad(gateway_url + "/v1/capacity") << "how many more sheddable requests fit now\n\n"
    << "  logs: " << (dir / "sim.log").string() << ", gateway.log, async.log\n"
    << "  pids: sim " << comps[0].child->pid() << ", gateway " << comps[1].child->pid()
    << ", async " << comps[2].child->pid() << "\n"
    << "  Ctrl-C stops everything.\n";
  std::cout << m.str() << std::endl;

  // Live status until a signal, --duration, or a child exiting on its own.
  const bool tty = ::isatty(STDOUT_FILENO) == 1;
  auto take = [&] {
    Sample s;
    s.at = Clock::now();
    s.gateway = Scrape(port);
    s.processor = Scrape(metrics_port);
    for (int p : sim_ports) s.sims.push_back(Scrape(p));
    return s;
  };
  // The status line: rates over the interval since `base` (1 s on a terminal, else 5 s).
  auto status_line = [&](const Sample& cur, const Sample& base, Clock::time_point started) {
    double dt = std::chrono::duration<double>(cur.at - base.at).count();
    std::string rps = "-", p99 = "-", backlog = "-", inflight = "-", done = "-", shed = "-",
                util = "-";
    if (cur.gateway && base.gateway && dt > 0) {
      double api = cur.gateway->Get("api_requests") - base.gateway->Get("api_requests");
      double disp = 0;
      if (cur.processor && base.processor)
        disp = cur.processor->Get("tidegate_async_requests_dispatched_total") -
               base.processor->Get("tidegate_async_requests_dispatched_total");
      rps = Fixed(std::max(0.0, api - disp) / dt, 1);
      if (auto q = QuantileOfDelta(cur.gateway->ttft_buckets, base.gateway->ttft_buckets, 0.99))
        p99 = std::to_string(static_cast<long long>(std::llround(*q * 1000 * time_scale))) +
              (time_scale == 1 ? " ms" : " ms simulated");
    }
    if (long long n = CountQueue(db, "requests"); n >= 0) backlog = std::to_string(n);
    if (cur.processor) {
      inflight = Fixed(cur.processor->Get("tidegate_async_in_flight"), 0);
      done = Fixed(cur.processor->Get("tidegate_async_requests_succeeded_total"), 0);
      shed = Fixed(cur.processor->Get("tidegate_async_sheds_total"), 0);
    }
    double busy = 0;
    bool have_busy = dt > 0;
    for (size_t i = 0; have_busy && i < cur.sims.size(); ++i) {
      if (!cur.sims[i] || !base.sims[i]) {
        have_busy = false;
        break;
      }
      busy += cur.sims[i]->Get("tidegate_sim_busy_seconds_total") -
              base.sims[i]->Get("tidegate_sim_busy_seconds_total");
    }
    if (have_busy)
      util = Fixed(std::clamp(100 * busy / (dt * time_scale * servers), 0.0, 100.0), 0) + "%";
    long long secs = std::chrono::duration_cast<std::chrono::seconds>(cur.at - started).count();
    return "[" + std::to_string(secs) + "s] real-time " + rps + " req/s, TTFT p99 " + p99 +
           " | async backlog " + backlog + ", in flight " + inflight + ", done " + done +
           ", shed " + shed + " | utilisation " + util;
  };

  const auto started = Clock::now();
  Sample base = take();
  auto tick = base.at;
  int exit_code = 0;
  while (true) {
    tick += milliseconds(1000);
    while (Clock::now() < tick && g_signals.load() == 0)
      std::this_thread::sleep_for(milliseconds(50));
    if (g_signals.load() > 0) {
      if (tty) std::cout << "\n";
      std::cout << "tidegate demo: stopping (signal)" << std::endl;
      break;
    }
    bool died = false;
    for (auto& c : comps) {
      if (!c.child->Running()) {
        if (tty && !died) std::cout << "\n";
        std::cout << "tidegate demo: " << c.what << " (pid " << c.child->pid()
                  << ") exited on its own with status " << c.child->Wait(milliseconds(0))
                  << "; see its log " << c.log << "; stopping the rest" << std::endl;
        died = true;
      }
    }
    if (died) {
      exit_code = 1;
      break;
    }
    if (Clock::now() > tick + milliseconds(1000)) tick = Clock::now();  // scrapes were slow
    Sample cur = take();
    if (tty) {
      std::cout << "\r" << status_line(cur, base, started) << "\033[K" << std::flush;
      base = std::move(cur);
    } else if (cur.at - base.at >= milliseconds(4900)) {
      std::cout << status_line(cur, base, started) << std::endl;
      base = std::move(cur);
    }
    if (duration.count() > 0 && Clock::now() - started >= duration) {
      if (tty) std::cout << "\n";
      std::cout << "tidegate demo: --duration " << *duration_text << " reached; stopping"
                << std::endl;
      break;
    }
  }
  stop_all();
  std::cout << "tidegate demo: stopped; logs and the queue file are in " << dir.string()
            << std::endl;
  return exit_code;
}

}  // namespace tidegate::cli
