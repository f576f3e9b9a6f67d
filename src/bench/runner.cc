#include "bench/runner.h"

#include <signal.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "async/message.h"
#include "bench/load.h"
#include "bench/report.h"
#include "common/subprocess.h"
#include "fleet/fleet.h"
#include "http/client.h"
#include "pool/prom_sums.h"
#include "queue/queue.h"
#include "wire/wire.h"

namespace tidegate::bench {

namespace net = boost::asio;
namespace fs = std::filesystem;
using json = nlohmann::json;
using Steady = std::chrono::steady_clock;
using std::chrono::milliseconds;

bool SumMetric(const std::string& text, const std::string& name, double* out) {
  pool::PromSums sums;
  pool::SumPromText(text, &sums);
  auto v = sums.Find(name);
  *out = v.value_or(0);
  return v.has_value();
}

namespace {

constexpr auto kTok = net::as_tuple(net::use_awaitable);

double Seconds(Steady::duration d) { return std::chrono::duration<double>(d).count(); }
Steady::duration FromSeconds(double s) {
  return std::chrono::duration_cast<Steady::duration>(std::chrono::duration<double>(s));
}

json NumOrNull(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

std::string NowIso() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

// ---------------------------------------------------------------------------------------------
// Per-run measurements.

struct RtRecord {
  double at_s = 0;  // scheduled send time (wall s from t0)
  bool sent = false;
  bool done = false;
  int status = 0;
  bool ok = false;
  double ttft_ms = NAN;  // simulated ms
  double tpot_ms = NAN;  // simulated ms
  int events = 0;
  double first_s = NAN, last_s = NAN;  // wall s from t0 of the first / last SSE event
  std::string failure;                 // why it failed ("" when ok)
  double done_s = NAN;                 // wall s from t0 when the answer (or failure) came
};

struct AsyncRecord {
  bool done = false;
  int status = 0;
  double done_s = NAN;
  bool ok = false;
  bool shed = false;
};

struct MetricSample {
  double t = 0;
  double busy = 0;    // sum of simulated busy seconds
  double tokens = 0;  // sum of generated tokens
  double running = 0, waiting = 0;
  double prefix_hits = 0, prefix_queries = 0;  // tokens (vLLM's counters)
  bool ok = false;
};

struct ResultRecord {
  double t = 0;
  bool ok = false;
  bool shed = false;
};

struct RunState {
  const Scenario* sc = nullptr;
  const RunSpec* run = nullptr;
  double ts = 1;
  Steady::time_point t0;
  Steady::time_point hard_deadline;  // no request outlives this
  http::Url target;
  std::vector<PlannedRequest> rt_plan, async_plan;
  std::vector<RtRecord> rt;
  std::vector<AsyncRecord> direct;
  std::vector<std::string> rt_bodies;  // built before the timed part
  std::vector<std::string> async_bodies;
  std::atomic<int> rt_sent{0}, rt_done{0}, async_sent{0}, async_done{0};
  std::string model;
};

// The traffic class of real-time request i (the run's realtime spec when it has no classes).
const RealtimeSpec& SpecOf(const RunState& st, size_t i) {
  const int cls = st.rt_plan[i].cls;
  return cls >= 0 ? st.run->realtime.classes[cls] : st.run->realtime;
}

// Why a real-time request failed, in words a reader of the report can act on.
std::string FailureReason(const http::ClientResponse& r, bool stream, bool hit_hard_deadline) {
  if (r.status == 0) {
    if (r.timed_out && hit_hard_deadline) return "cut at the bench's hard deadline";
    if (r.timed_out) return "timeout: " + r.error;
    if (r.connect_failed) return "connect: " + r.error;
    return "transport: " + r.error;
  }
  if (r.status != 200) {
    std::string s = "HTTP " + std::to_string(r.status);
    if (!r.dropped_reason.empty()) s += " " + r.dropped_reason;
    return s;
  }
  if (stream && r.sse_events == 0) return "stream ended without any event";
  if (stream && r.body.find("[DONE]") == std::string::npos) return "stream ended without [DONE]";
  return {};
}

http::Headers DirectHeaders(const std::string& objective, size_t i) {
  http::Headers h;
  h.emplace_back(wire::kObjective, objective);
  h.emplace_back(wire::kRequestId, "async-" + std::to_string(i));
  return h;
}

void RecordRt(RunState& st, size_t i, Steady::time_point start, const http::ClientResponse& r) {
  RtRecord& rec = st.rt[i];
  rec.done = true;
  rec.status = r.status;
  rec.at_s = st.rt_plan[i].at_s;
  const bool stream = SpecOf(st, i).stream;
  rec.done_s = Seconds(Steady::now() - st.t0);
  rec.failure = FailureReason(r, stream, Steady::now() >= st.hard_deadline);
  rec.ok = rec.failure.empty();
  if (rec.ok) {
    auto first = stream ? r.first_event : r.first_byte;
    if (first == Steady::time_point{}) first = r.first_byte;
    rec.ttft_ms = Seconds(first - start) * 1000.0 * st.ts;
    rec.events = r.sse_events;
    if (stream && r.sse_events > 0) {
      rec.first_s = Seconds(r.first_event - st.t0);
      rec.last_s = Seconds(r.last_event - st.t0);
      if (r.sse_events > 1)
        rec.tpot_ms = Seconds(r.last_event - r.first_event) * 1000.0 * st.ts / (r.sse_events - 1);
    }
  }
  st.rt_done.fetch_add(1);
}

void RecordDirect(RunState& st, size_t i, const http::ClientResponse& r) {
  AsyncRecord& rec = st.direct[i];
  rec.done = true;
  rec.status = r.status;
  rec.done_s = Seconds(Steady::now() - st.t0);
  rec.ok = r.status >= 200 && r.status < 300;
  rec.shed = r.status == 429;
  st.async_done.fetch_add(1);
}

net::awaitable<void> SendDirect(RunState& st, http::Client& client, size_t i) {
  std::string objective = "sheddable";
  if (st.run->async_mode == "direct-standard") objective = "standard";
  http::Headers headers = DirectHeaders(objective, i);
  http::ClientRequest req;
  req.method = "POST";
  req.target = "/v1/completions";
  req.body = st.async_bodies[i];
  req.headers = &headers;
  req.deadline = st.hard_deadline;
  st.async_sent.fetch_add(1);
  http::ClientResponse resp = co_await client.Send(req);
  RecordDirect(st, i, resp);
}

net::awaitable<void> DirectScheduler(RunState& st, http::Client& client, double window_s) {
  auto ex = co_await net::this_coro::executor;
  net::steady_timer timer(ex);
  const size_t n = st.async_plan.size();
  for (size_t i = 0; i < n; ++i) {
    double at = window_s * static_cast<double>(i) / static_cast<double>(n);
    timer.expires_at(st.t0 + FromSeconds(at));
    co_await timer.async_wait(kTok);
    net::co_spawn(ex, SendDirect(st, client, i), net::detached);
  }
}

// ---------------------------------------------------------------------------------------------
// The processes of one run.

// The processes of one run, started through fleet::Fleet.
struct RunFleet {
  explicit RunFleet(const std::string& dir) : fleet(dir) {}
  fleet::Fleet fleet;
  std::vector<int> sim_ports;
  int front_port = 0;
  std::vector<int> replica_ports;  // further gateway replicas (gateway_replicas > 1)
  int processor_metrics_port = 0;
};

bool Started(fleet::Fleet::Started s) { return s == fleet::Fleet::Started::kReady; }

bool StartSims(const Scenario& sc, RunFleet* f, std::string* err) {
  std::set<int> used;
  // With KV events each server also needs its port + 1 (events) and + 2 (replay).
  const int span = sc.fleet.kv_events ? 3 : 1;
  for (int tries = 0; static_cast<int>(f->sim_ports.size()) < sc.fleet.count; ++tries) {
    int p = FreeTcpPort();
    if (p <= 0 || tries > 10000) {
      *err = "no free TCP port for the simulators";
      return false;
    }
    bool ok = p + span - 1 <= 65535;
    for (int k = 0; ok && k < span; ++k)
      ok = !used.count(p + k) && (k == 0 || FreeTcpPort(p + k) == p + k);
    if (!ok) continue;
    for (int k = 0; k < span; ++k) used.insert(p + k);
    f->sim_ports.push_back(p);
  }
  fleet::SimSpec spec;
  spec.ports = f->sim_ports;
  spec.profile = sc.fleet.profile;
  spec.time_scale = sc.fleet.time_scale;
  spec.model = sc.model;
  spec.seed = sc.seed;
  spec.max_num_seqs = sc.fleet.max_num_seqs;
  spec.priority_scheduling = sc.fleet.scheduling_policy == "priority";
  spec.extra = sc.fleet.sim_args;
  spec.kv_events = sc.fleet.kv_events;
  spec.process_per_server = sc.fleet.kv_events;  // each server its own event ports
  if (sc.fleet.groups.empty()) return Started(f->fleet.StartSims(spec, milliseconds(15000), err));
  // A heterogeneous fleet: one process per server, each with its group's profile and flags.
  spec.process_per_server = true;
  size_t at = 0;
  for (const auto& g : sc.fleet.groups) {
    fleet::SimSpec gs = spec;
    gs.ports.assign(f->sim_ports.begin() + static_cast<std::ptrdiff_t>(at),
                    f->sim_ports.begin() + static_cast<std::ptrdiff_t>(at + g.count));
    at += static_cast<size_t>(g.count);
    if (!g.profile.empty()) gs.profile = g.profile;
    gs.extra.insert(gs.extra.end(), g.sim_args.begin(), g.sim_args.end());
    if (!Started(f->fleet.StartSims(gs, milliseconds(15000), err))) return false;
  }
  return true;
}

bool StartGateway(const Scenario& sc, const RunSpec& run, RunFleet* f, std::string* err,
                  const std::vector<std::string>& more = {}) {
  fleet::GatewaySpec spec;
  spec.port = f->front_port = FreeTcpPort();
  spec.sim_ports = f->sim_ports;
  spec.policy = run.policy;
  spec.admin_address = "public";  // one box: the bench reads /metrics on the gateway's port
  spec.forward_priority = sc.fleet.scheduling_policy == "priority";
  spec.extra = sc.fleet.gateway_args;
  if (sc.fleet.kv_events)
    spec.extra.insert(spec.extra.end(), {"--kv-events", "port-offset=1,replay-offset=2"});
  spec.extra.insert(spec.extra.end(), run.gateway_args.begin(), run.gateway_args.end());
  spec.extra.insert(spec.extra.end(), more.begin(), more.end());
  if (!Started(f->fleet.StartGateway(spec, milliseconds(15000), err))) return false;
  for (int r = 1; r < run.gateway_replicas; ++r) {
    fleet::GatewaySpec replica = spec;
    replica.port = FreeTcpPort();
    replica.log_name = "gateway-" + std::to_string(r + 1) + ".log";
    if (!Started(f->fleet.StartGateway(replica, milliseconds(15000), err))) return false;
    f->replica_ports.push_back(replica.port);
  }
  return true;
}

bool StartHaproxy(const BenchOptions& opt, const std::string& dir, RunFleet* f, std::string* err) {
  f->front_port = FreeTcpPort();
  std::string cfg_path = dir + "/haproxy.cfg";
  {
    std::ofstream cfg(cfg_path);
    // `option http-no-delay`: HAProxy's recommendation for interactive and streamed traffic;
    // without it small SSE events are held and delivered together.
    cfg << "# generated by tidegate bench: leastconn over the same simulators\n"
           "global\n  maxconn 4000\n\n"
           "defaults\n  mode http\n  option http-no-delay\n  timeout connect 5s\n"
           "  timeout client 10m\n"
           "  timeout server 10m\n  timeout http-keep-alive 75s\n\n"
           "frontend fe\n  bind 127.0.0.1:"
        << f->front_port
        << "\n  default_backend sims\n\n"
           "backend sims\n  balance leastconn\n";
    for (size_t i = 0; i < f->sim_ports.size(); ++i)
      cfg << "  server s" << i << " 127.0.0.1:" << f->sim_ports[i] << "\n";
    if (!cfg) {
      *err = "cannot write " + cfg_path;
      return false;
    }
  }
  return Started(f->fleet.Start("haproxy", "haproxy.log", {opt.haproxy_bin, "-f", cfg_path, "-db"},
                                {{f->front_port, "/health"}}, milliseconds(15000), err));
}

bool StartProcessor(const Scenario& sc, const RunSpec& run, const std::string& gateway_url,
                    const std::string& db, RunFleet* f, std::string* err,
                    const std::vector<std::string>& more = {}) {
  fleet::ProcessorSpec spec;
  spec.gateway_url = gateway_url;
  spec.requests_uri = "sqlite://" + db + "?queue=requests";
  spec.results_uri = "sqlite://" + db + "?queue=results";
  spec.metrics_port = f->processor_metrics_port = FreeTcpPort();
  spec.extra = {"--lease", "30s", "--progress-interval", "0"};
  spec.extra.insert(spec.extra.end(), sc.fleet.processor_args.begin(),
                    sc.fleet.processor_args.end());
  spec.extra.insert(spec.extra.end(), run.processor_args.begin(), run.processor_args.end());
  spec.extra.insert(spec.extra.end(), more.begin(), more.end());
  return Started(f->fleet.StartProcessor(spec, milliseconds(15000), err));
}

// ---------------------------------------------------------------------------------------------
// Background threads: metric sampling (+ progress lines) and async result collection.

class Sampler {
 public:
  Sampler(std::vector<int> ports, Steady::time_point t0, double interval_s, RunState* st,
          double duration_s)
      : ports_(std::move(ports)), t0_(t0), interval_(interval_s), st_(st), duration_(duration_s) {}

  MetricSample SampleOnce() {
    MetricSample s;
    s.t = Seconds(Steady::now() - t0_);
    s.ok = !ports_.empty();
    for (int p : ports_) {
      std::string body;
      if (HttpGetBlocking("127.0.0.1", p, "/metrics", &body, milliseconds(2000)) != 200) {
        s.ok = false;
        continue;
      }
      double v = 0;
      if (SumMetric(body, "tidegate_sim_busy_seconds_total", &v)) s.busy += v;
      if (SumMetric(body, "vllm:generation_tokens_total", &v)) s.tokens += v;
      if (SumMetric(body, "vllm:num_requests_running", &v)) s.running += v;
      if (SumMetric(body, "vllm:num_requests_waiting", &v)) s.waiting += v;
      if (SumMetric(body, "vllm:prefix_cache_hits_total", &v)) s.prefix_hits += v;
      if (SumMetric(body, "vllm:prefix_cache_queries_total", &v)) s.prefix_queries += v;
    }
    return s;
  }

  void Start() {
    samples_.push_back(SampleOnce());
    samples_.back().t = 0;
    thread_ = std::thread([this] { Loop(); });
  }
  void Stop() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }
  std::function<std::string()> progress_extra;
  const std::vector<MetricSample>& samples() const { return samples_; }

 private:
  void Loop() {
    int k = 1;
    auto last_progress = Steady::now();
    for (;;) {
      auto next = t0_ + FromSeconds(interval_ * k);
      {
        std::unique_lock<std::mutex> lk(mu_);
        if (cv_.wait_until(lk, next, [this] { return stop_; })) return;
      }
      MetricSample s = SampleOnce();
      {
        std::lock_guard<std::mutex> lk(mu_);
        samples_.push_back(s);
      }
      ++k;
      if (Steady::now() - last_progress >= std::chrono::seconds(5)) {
        last_progress = Steady::now();
        int sent = st_->rt_sent.load(), done = st_->rt_done.load();
        std::string extra = progress_extra ? progress_extra() : std::string();
        std::ostringstream line;
        line << "bench: [" << st_->run->name << "] " << std::fixed << std::setprecision(0) << s.t
             << "s/" << duration_ << "s  real-time sent " << sent << ", in flight " << (sent - done)
             << "  pool running " << s.running << ", waiting " << s.waiting << extra << "\n";
        std::cerr << line.str();
      }
    }
  }

  std::vector<int> ports_;
  Steady::time_point t0_;
  double interval_;
  RunState* st_;
  double duration_;
  std::vector<MetricSample> samples_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
};

// via-batch: follows one batch on the gateway (GET /v1/batches/{id} every 250 ms) and turns the
// growth of request_counts.completed into completion times.
class BatchPoller {
 public:
  BatchPoller(int port, std::string id, Steady::time_point t0)
      : port_(port), id_(std::move(id)), t0_(t0) {}
  ~BatchPoller() { Stop(); }
  void Start() {
    thread_ = std::thread([this] { Loop(); });
  }
  void Stop() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
  }
  bool ended() const { return ended_.load(); }
  int64_t answered() const { return answered_.load(); }
  std::vector<double> done_times() const {
    std::lock_guard lock(mu_);
    return done_times_;
  }
  json last() const {
    std::lock_guard lock(mu_);
    return last_;
  }
  void PollOnce() {
    std::string body;
    if (HttpGetBlocking("127.0.0.1", port_, "/v1/batches/" + id_, &body, milliseconds(2000)) != 200)
      return;
    json b = json::parse(body, nullptr, false);
    if (!b.is_object()) return;
    const double t = Seconds(Steady::now() - t0_);
    const int64_t completed = b["request_counts"].value("completed", int64_t{0});
    const int64_t failed = b["request_counts"].value("failed", int64_t{0});
    const std::string status = b.value("status", "");
    std::lock_guard lock(mu_);
    for (int64_t k = completed_; k < completed; ++k) done_times_.push_back(t);
    completed_ = std::max(completed_, completed);
    answered_.store(completed + failed);
    last_ = std::move(b);
    if (status == "completed" || status == "failed" || status == "expired" || status == "cancelled")
      ended_.store(true);
  }

 private:
  void Loop() {
    while (!stop_.load() && !ended_.load()) {
      PollOnce();
      std::this_thread::sleep_for(milliseconds(250));
    }
  }
  int port_;
  std::string id_;
  Steady::time_point t0_;
  std::thread thread_;
  std::atomic<bool> stop_{false}, ended_{false};
  std::atomic<int64_t> answered_{0};
  mutable std::mutex mu_;
  int64_t completed_ = 0;
  std::vector<double> done_times_;
  json last_;
};

// via-batch: uploads the backlog as a batch input file and creates the batch; returns its id and
// expires_at, or "" (and *err).
std::string CreateBatch(int port, const std::vector<std::string>& bodies, int64_t window_s,
                        int64_t* expires_at, std::string* err) {
  std::string jsonl;
  for (size_t i = 0; i < bodies.size(); ++i) {
    jsonl += json{{"custom_id", "async-" + std::to_string(i)},
                  {"method", "POST"},
                  {"url", "/v1/completions"},
                  {"body", json::parse(bodies[i])}}
                 .dump();
    jsonl += '\n';
  }
  const std::string boundary = "tidegate-bench-boundary-7f3a";
  const std::string upload =
      "--" + boundary + "\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--" +
      boundary +
      "\r\nContent-Disposition: form-data; name=\"file\"; "
      "filename=\"backlog.jsonl\"\r\nContent-Type: application/jsonl\r\n\r\n" +
      jsonl + "\r\n--" + boundary + "--\r\n";
  std::string body;
  int status = HttpRequestBlocking("127.0.0.1", port, "POST", "/v1/files",
                                   "multipart/form-data; boundary=" + boundary, upload, &body,
                                   milliseconds(30000));
  json f = json::parse(body, nullptr, false);
  if (status != 200 || !f.is_object() || !f.contains("id")) {
    *err = "POST /v1/files answered " + std::to_string(status) + ": " + body;
    return "";
  }
  const json create = {{"input_file_id", f["id"]},
                       {"endpoint", "/v1/completions"},
                       {"completion_window", std::to_string(window_s) + "s"}};
  status = HttpRequestBlocking("127.0.0.1", port, "POST", "/v1/batches", "application/json",
                               create.dump(), &body, milliseconds(10000));
  json b = json::parse(body, nullptr, false);
  if (status != 200 || !b.is_object() || !b.contains("id")) {
    *err = "POST /v1/batches answered " + std::to_string(status) + ": " + body;
    return "";
  }
  *expires_at = b.value("expires_at", int64_t{0});
  return b["id"];
}

class ResultReader {
 public:
  ResultReader(std::string uri, Steady::time_point t0, size_t expected)
      : uri_(std::move(uri)), t0_(t0), expected_(expected) {}

  bool Start(std::string* err) {
    q_ = queue::OpenQueue(uri_, err);
    if (!q_) return false;
    thread_ = std::thread([this] { Loop(); });
    return true;
  }
  void Stop() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
  }
  size_t distinct() const {
    std::lock_guard<std::mutex> lk(mu_);
    return by_id_.size();
  }
  std::map<std::string, ResultRecord> results() const {
    std::lock_guard<std::mutex> lk(mu_);
    return by_id_;
  }
  size_t malformed() const { return malformed_.load(); }
  size_t duplicates() const { return duplicates_.load(); }

 private:
  void Loop() {
    while (!stop_.load()) {
      std::vector<queue::Message> msgs;
      queue::Status s = q_->Pull(100, milliseconds(60000), milliseconds(200), &msgs);
      if (!s.ok) {
        spdlog::warn("bench: reading results failed: {}", s.error);
        std::this_thread::sleep_for(milliseconds(200));
        continue;
      }
      std::vector<std::string> acks;
      double t = Seconds(Steady::now() - t0_);
      for (auto& m : msgs) {
        acks.push_back(m.ack_id);
        async::Result r;
        std::string perr;
        if (!async::ParseResultMessage(m.data, &r, &perr)) {
          malformed_.fetch_add(1);
          continue;
        }
        ResultRecord rec;
        rec.t = t;
        rec.ok =
            r.error_code == async::ErrorCode::kNone && r.status_code >= 200 && r.status_code < 300;
        rec.shed = r.error_code == async::ErrorCode::kShedExhausted;
        std::lock_guard<std::mutex> lk(mu_);
        if (!by_id_.emplace(r.id, rec).second) duplicates_.fetch_add(1);
      }
      if (!acks.empty()) q_->Ack(acks);
    }
  }

  std::string uri_;
  Steady::time_point t0_;
  size_t expected_;
  std::unique_ptr<queue::Queue> q_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  mutable std::mutex mu_;
  std::map<std::string, ResultRecord> by_id_;
  std::atomic<size_t> malformed_{0}, duplicates_{0};
};

// ---------------------------------------------------------------------------------------------
// Figures.

json Percentiles(const std::vector<double>& v) {
  json j;
  j["p50"] = NumOrNull(Percentile(v, 50));
  j["p90"] = NumOrNull(Percentile(v, 90));
  j["p99"] = NumOrNull(Percentile(v, 99));
  j["n"] = v.size();
  return j;
}

// Index of the last sample at or before t (+ half an interval).
size_t SampleAt(const std::vector<MetricSample>& s, double t, double interval) {
  size_t best = 0;
  for (size_t i = 0; i < s.size(); ++i)
    if (s[i].t <= t + interval / 2) best = i;
  return best;
}

// Real-time tokens generated in [a, b): each stream's tokens spread evenly over its events.
double RtTokensIn(const std::vector<RtRecord>& rt, double a, double b) {
  double sum = 0;
  for (const auto& r : rt) {
    if (!r.ok || r.events <= 0 || !std::isfinite(r.first_s)) continue;
    double span = r.last_s - r.first_s;
    if (span <= 1e-9) {
      if (r.first_s >= a && r.first_s < b) sum += r.events;
      continue;
    }
    double lo = std::max(a, r.first_s), hi = std::min(b, r.last_s);
    if (hi > lo) sum += r.events * (hi - lo) / span;
  }
  return sum;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

namespace {

json RunOne(const Scenario& sc, const RunSpec& run, const BenchOptions& opt, bool* setup_failed) {
  const std::string dir = opt.report_dir + "/runs/" + run.name;
  fs::create_directories(dir);
  std::error_code ec;
  fs::remove(dir + "/queue.db", ec);
  fs::remove(dir + "/queue.db-wal", ec);
  fs::remove(dir + "/queue.db-shm", ec);

  RunState st;
  st.sc = &sc;
  st.run = &run;
  st.ts = sc.fleet.time_scale;
  st.model = sc.model;
  st.rt_plan = ArrivalSchedule(run.realtime, sc.duration_s, sc.seed, sc.max_requests);
  st.rt.resize(st.rt_plan.size());
  for (size_t i = 0; i < st.rt_plan.size(); ++i) {
    const auto& p = st.rt_plan[i];
    const RealtimeSpec& spec = SpecOf(st, i);
    st.rt_bodies.push_back(
        CompletionBody(sc.model, PromptText(p.prompt_tokens, p.group, spec.prefix_tokens, i + 1),
                       p.output_tokens, spec.stream));
  }
  const bool via_batch = run.async_mode == "via-batch";
  const bool via = run.async_mode == "via-processor" || via_batch;
  const bool direct = run.async_mode == "direct-sheddable" || run.async_mode == "direct-standard";
  if (via || direct) {
    st.async_plan = AsyncPlan(run.async, sc.seed);
    st.direct.resize(direct ? st.async_plan.size() : 0);
    for (size_t i = 0; i < st.async_plan.size(); ++i) {
      const auto& p = st.async_plan[i];
      st.async_bodies.push_back(CompletionBody(
          sc.model, PromptText(p.prompt_tokens, -1, 0, 1000000 + i), p.output_tokens, false));
    }
  }

  json out;
  out["name"] = run.name;
  out["policy"] = run.target == "haproxy" ? "leastconn" : run.policy;
  out["async_mode"] = run.async_mode;
  out["target"] = run.target;
  out["duration_s"] = sc.duration_s;
  out["time_scale"] = st.ts;
  out["latency_unit"] = "simulated ms (wall ms x time_scale)";

  std::cerr << "bench: [" << run.name << "] starting (" << st.rt_plan.size()
            << " real-time requests over " << sc.duration_s << "s"
            << (st.async_plan.empty()
                    ? std::string()
                    : ", " + std::to_string(st.async_plan.size()) + " async " + run.async_mode)
            << ")\n";

  RunFleet fleet(dir);
  std::string err, target_url = opt.target_url;
  const bool external = !opt.target_url.empty();
  if (!external) {
    bool ok = StartSims(sc, &fleet, &err);
    if (ok && run.target == "haproxy") ok = StartHaproxy(opt, dir, &fleet, &err);
    std::vector<std::string> batch_args;
    if (via_batch) {
      const std::string qdb = fs::absolute(dir + "/queue.db").string();
      batch_args = {"--batch-dir",     fs::absolute(dir + "/batches").string(),
                    "--batch-queue",   "sqlite://" + qdb + "?queue=requests",
                    "--batch-results", "sqlite://" + qdb + "?queue=batch-results"};
    }
    if (ok && run.target == "tidegate") ok = StartGateway(sc, run, &fleet, &err, batch_args);
    if (!ok) {
      std::cerr << "bench: [" << run.name << "] setup failed: " << err << "\n";
      *setup_failed = true;
      out["error"] = err;
      return out;
    }
    target_url = "http://127.0.0.1:" + std::to_string(fleet.front_port);
  }
  if (!http::ParseHttpUrl(target_url, &st.target, &err)) {
    *setup_failed = true;
    out["error"] = err;
    return out;
  }

  // Async submission for via-processor: publish everything before the timed part.
  const std::string db = fs::absolute(dir + "/queue.db").string();
  int64_t deadline_unix = 0, soft_unix = 0;
  std::chrono::system_clock::time_point sys_t0;  // the planned start of the load phase
  std::string batch_id;
  if (via_batch) {
    if (external) {
      *setup_failed = true;
      out["error"] = "async_mode via-batch needs the bench's own gateway (no --target)";
      return out;
    }
    // The window counts from now; the load phase starts right after the batch is created.
    const int64_t window = static_cast<int64_t>(std::ceil(run.async.deadline_s));
    batch_id = CreateBatch(fleet.front_port, st.async_bodies, window, &deadline_unix, &err);
    if (batch_id.empty() ||
        !StartProcessor(sc, run, target_url, db, &fleet, &err,
                        {"--batch-responses", "sqlite://" + db + "?queue=batch-results"})) {
      std::cerr << "bench: [" << run.name << "] setup failed: " << err << "\n";
      *setup_failed = true;
      out["error"] = err;
      return out;
    }
    soft_unix = deadline_unix;  // a batch's window is its lines' soft and hard deadline
    std::cerr << "bench: [" << run.name << "] batch " << batch_id << " created ("
              << st.async_plan.size() << " lines, window " << window << "s)\n";
  } else if (via) {
    auto q = queue::OpenQueue("sqlite://" + db + "?queue=requests", &err);
    if (!q) {
      *setup_failed = true;
      out["error"] = err;
      return out;
    }
    // The deadlines count from the start of the load phase, planned a moment ahead: the
    // messages are published in batches (one transaction each) meanwhile.
    const double publish_estimate_s = 1.0 + 0.0005 * static_cast<double>(st.async_plan.size());
    sys_t0 = std::chrono::system_clock::now() + FromSeconds(publish_estimate_s);
    deadline_unix = std::chrono::duration_cast<std::chrono::seconds>(
                        sys_t0.time_since_epoch() + FromSeconds(run.async.deadline_s))
                        .count();
    if (run.async.soft_deadline_s > 0)
      soft_unix = std::chrono::duration_cast<std::chrono::seconds>(
                      sys_t0.time_since_epoch() + FromSeconds(run.async.soft_deadline_s))
                      .count();
    const std::vector<std::string> msgs =
        AsyncRequestMessages(st.async_plan, sc.model, "async-", 0, deadline_unix, soft_unix);
    for (size_t at = 0; at < msgs.size(); at += 500) {
      const std::vector<std::string> batch(msgs.begin() + at,
                                           msgs.begin() + std::min(msgs.size(), at + 500));
      size_t published = 0;
      auto s = q->PublishBatch(batch, &published);
      if (!s.ok || published != batch.size()) {
        *setup_failed = true;
        out["error"] = s.ok ? "the request queue took only part of a batch" : s.error;
        return out;
      }
    }
    // The load phase starts when the deadlines said it would: every run gets the same time to
    // its deadlines (and no head start when publishing was quicker than estimated).
    if (auto left = sys_t0 - std::chrono::system_clock::now(); left > left.zero())
      std::this_thread::sleep_for(left);
    if (!StartProcessor(sc, run, target_url, db, &fleet, &err)) {
      std::cerr << "bench: [" << run.name << "] setup failed: " << err << "\n";
      *setup_failed = true;
      out["error"] = err;
      return out;
    }
  }

  // ---- the timed part
  st.t0 = Steady::now();
  st.hard_deadline = st.t0 + FromSeconds(sc.duration_s + sc.drain_timeout_s);
  double deadline_rel_s = run.async.deadline_s;
  double soft_rel_s = 0;  // the soft deadline, wall s from t0 (0 = none)
  Steady::time_point deadline_steady = st.t0 + FromSeconds(deadline_rel_s);
  if (via) {
    auto now_sys = std::chrono::system_clock::now();
    auto dl_sys = std::chrono::system_clock::time_point(std::chrono::seconds(deadline_unix));
    deadline_steady = st.t0 + std::chrono::duration_cast<Steady::duration>(dl_sys - now_sys);
    deadline_rel_s = Seconds(deadline_steady - st.t0);
    if (soft_unix > 0) soft_rel_s = deadline_rel_s - static_cast<double>(deadline_unix - soft_unix);
  }

  Sampler sampler(external ? std::vector<int>() : fleet.sim_ports, st.t0, sc.sample_interval_s, &st,
                  sc.duration_s);
  std::unique_ptr<ResultReader> reader;
  std::unique_ptr<BatchPoller> poller;
  if (via_batch) {
    poller = std::make_unique<BatchPoller>(fleet.front_port, batch_id, st.t0);
    poller->Start();
    BatchPoller* bp = poller.get();
    size_t total = st.async_plan.size();
    sampler.progress_extra = [bp, total] {
      return "  batch answered " + std::to_string(bp->answered()) + "/" + std::to_string(total);
    };
  } else if (via) {
    reader = std::make_unique<ResultReader>("sqlite://" + db + "?queue=results", st.t0,
                                            st.async_plan.size());
    if (!reader->Start(&err)) {
      *setup_failed = true;
      out["error"] = err;
      return out;
    }
    ResultReader* rd = reader.get();
    size_t total = st.async_plan.size();
    sampler.progress_extra = [rd, total] {
      return "  async results " + std::to_string(rd->distinct()) + "/" + std::to_string(total);
    };
  } else if (direct) {
    RunState* sp = &st;
    sampler.progress_extra = [sp] {
      return "  async answered " + std::to_string(sp->async_done.load()) + "/" +
             std::to_string(sp->async_sent.load());
    };
  }
  sampler.Start();

  {
    net::io_context io(1);
    auto shared_client = std::make_shared<http::Client>(io.get_executor(), st.target, 1024);
    http::Client& client = *shared_client;
    std::vector<std::shared_ptr<http::Client>> clients = {shared_client};
    for (int port : fleet.replica_ports) {
      http::Url u = st.target;
      u.port = static_cast<uint16_t>(port);
      clients.push_back(std::make_shared<http::Client>(io.get_executor(), u, 1024));
    }
    PlayHooks hooks;
    hooks.headers_for = [&st](size_t i) {
      return RealtimeHeaders(SpecOf(st, i), "rt-" + std::to_string(i));
    };
    hooks.on_sent = [&st](size_t i) {
      st.rt_sent.fetch_add(1);
      st.rt[i].sent = true;
    };
    hooks.on_done = [&st](size_t i, Steady::time_point start, const http::ClientResponse& r) {
      RecordRt(st, i, start, r);
    };
    net::co_spawn(io, PlayPlan(clients, st.rt_plan, st.rt_bodies, st.t0, st.hard_deadline, hooks),
                  net::detached);
    if (direct) {
      double window = run.async.submit_window_s > 0 ? run.async.submit_window_s : sc.duration_s;
      net::co_spawn(io, DirectScheduler(st, client, window), net::detached);
    }
    io.run();
  }
  double load_end_s = Seconds(Steady::now() - st.t0);

  // via-processor: wait (bounded) for the remaining results, until the deadline (+ grace).
  if (via_batch) {
    auto limit = std::max(deadline_steady + std::chrono::seconds(5), Steady::now());
    while (!poller->ended() && Steady::now() < limit)
      std::this_thread::sleep_for(milliseconds(100));
    poller->Stop();
    poller->PollOnce();
  } else if (via) {
    auto limit = std::max(deadline_steady + std::chrono::seconds(5), Steady::now());
    limit = std::min(limit, Steady::now() + FromSeconds(std::max(sc.drain_timeout_s, 5.0)) +
                                FromSeconds(deadline_rel_s));
    while (reader->distinct() < st.async_plan.size() && Steady::now() < limit)
      std::this_thread::sleep_for(milliseconds(100));
    std::this_thread::sleep_for(milliseconds(300));  // results published in the same batch
  }
  double end_s = Seconds(Steady::now() - st.t0);
  sampler.Stop();
  if (reader) reader->Stop();
  if (poller) poller->Stop();

  json processor_metrics;
  if (via) {
    std::string body;
    if (HttpGetBlocking("127.0.0.1", fleet.processor_metrics_port, "/metrics", &body) == 200) {
      for (const char* name :
           {"tidegate_async_requests_dispatched_total", "tidegate_async_requests_succeeded_total",
            "tidegate_async_requests_failed_total", "tidegate_async_sheds_total",
            "tidegate_async_retries_total", "tidegate_async_deadline_misses_total",
            "tidegate_async_escalations_total", "tidegate_async_soft_deadline_misses_total"}) {
        double v = 0;
        if (SumMetric(body, name, &v)) processor_metrics[name] = v;
      }
    }
  }
  // The latency predictor's error, from the gateway's own histogram of observed ÷ predicted.
  json predictor = nullptr, prefix_index_rate = nullptr;
  if (!external && run.target == "tidegate") {
    std::string body;
    if (HttpGetBlocking("127.0.0.1", fleet.front_port, "/metrics", &body) == 200) {
      pool::PromSums sums;
      if (pool::SumPromText(body, &sums, {"target"})) {
        json p;
        for (const char* target : {"ttft", "tpot"}) {
          const std::string k = std::string("{target=\"") + target + "\"}";
          const double n = sums.Get("tidegate_latency_prediction_ratio_count" + k);
          const double sum = sums.Get("tidegate_latency_prediction_ratio_sum" + k);
          if (n > 0) p[std::string(target) + "_observed_over_predicted_mean"] = sum / n;
          if (n > 0) p[std::string(target) + "_samples"] = n;
        }
        if (!p.empty()) predictor = p;
      }
      // The prefix index's predicted hit rate over what it sent, for the engines' own.
      double hit = 0, prompt = 0;
      if (SumMetric(body, "tidegate_prefix_index_predicted_hit_tokens_total", &hit) &&
          SumMetric(body, "tidegate_prefix_index_prompt_tokens_total", &prompt) && prompt > 0)
        prefix_index_rate = hit / prompt;
    }
  }
  out["predictor"] = predictor;
  out["prefix_index_hit_rate"] = prefix_index_rate;
  fleet.fleet.StopAll(milliseconds(3000));

  // ---- figures
  const auto& samples = sampler.samples();
  const double interval = sc.sample_interval_s;
  std::vector<double> ttft, tpot;
  int rt_ok = 0, slo_ok = 0, tpot_ok = 0, both_ok = 0;
  std::map<std::string, int> failures;
  json failure_list = json::array();
  for (size_t i = 0; i < st.rt.size(); ++i) {
    const auto& r = st.rt[i];
    if (r.sent && !r.ok) {
      const std::string why = r.done ? r.failure : "no answer before the end of the run";
      ++failures[why];
      if (failure_list.size() < 200)
        failure_list.push_back({{"id", "rt-" + std::to_string(i)},
                                {"sent_s", r.at_s},
                                {"failed_s", NumOrNull(r.done_s)},
                                {"reason", why}});
    }
    if (!r.ok) continue;
    ++rt_ok;
    ttft.push_back(r.ttft_ms);
    if (std::isfinite(r.tpot_ms)) tpot.push_back(r.tpot_ms);
    const RealtimeSpec& spec = SpecOf(st, i);
    const bool ttft_met = r.ttft_ms <= spec.slo_ttft_ms;
    // A TPOT objective is met by a request that streamed no second token (no TPOT to miss).
    const bool tpot_met =
        spec.slo_tpot_ms <= 0 || !std::isfinite(r.tpot_ms) || r.tpot_ms <= spec.slo_tpot_ms;
    slo_ok += ttft_met;
    tpot_ok += tpot_met;
    both_ok += ttft_met && tpot_met;
  }
  json rt;
  rt["sent"] = st.rt_sent.load();
  rt["planned"] = st.rt_plan.size();
  rt["succeeded"] = rt_ok;
  rt["failed"] = st.rt_sent.load() - rt_ok;
  rt["ttft_ms"] = Percentiles(ttft);
  rt["tpot_ms"] = Percentiles(tpot);
  rt["slo_ttft_ms"] = run.realtime.slo_ttft_ms;
  const double sent_n = static_cast<double>(st.rt_sent.load());
  // slo_attainment: TTFT within its objective (of the requests sent); _tpot likewise when the
  // scenario sets a TPOT objective; goodput: requests per second that met every objective.
  rt["slo_attainment"] = sent_n > 0 ? json(slo_ok / sent_n) : json(nullptr);
  rt["slo_tpot_ms"] = run.realtime.slo_tpot_ms > 0 ? json(run.realtime.slo_tpot_ms) : json(nullptr);
  rt["slo_tpot_attainment"] =
      sent_n > 0 && run.realtime.slo_tpot_ms > 0 ? json(tpot_ok / sent_n) : json(nullptr);
  rt["slo_both_attainment"] = sent_n > 0 ? json(both_ok / sent_n) : json(nullptr);
  rt["goodput_rps"] = static_cast<double>(both_ok) / sc.duration_s;
  rt["failures"] = failures;
  rt["failure_list"] = failure_list;
  // Per traffic class: who got what.
  if (!run.realtime.classes.empty()) {
    json classes = json::array();
    for (size_t k = 0; k < run.realtime.classes.size(); ++k) {
      const RealtimeSpec& spec = run.realtime.classes[k];
      std::vector<double> c_ttft;
      int c_sent = 0, c_ok = 0, c_slo = 0;
      for (size_t i = 0; i < st.rt.size(); ++i) {
        if (st.rt_plan[i].cls != static_cast<int>(k) || !st.rt[i].sent) continue;
        ++c_sent;
        if (!st.rt[i].ok) continue;
        ++c_ok;
        c_ttft.push_back(st.rt[i].ttft_ms);
        if (st.rt[i].ttft_ms <= spec.slo_ttft_ms) ++c_slo;
      }
      classes.push_back({{"name", spec.name},
                         {"objective", spec.objective},
                         {"tenant", spec.tenant},
                         {"sent", c_sent},
                         {"succeeded", c_ok},
                         {"failed", c_sent - c_ok},
                         {"ttft_ms", Percentiles(c_ttft)},
                         {"slo_ttft_ms", spec.slo_ttft_ms},
                         {"slo_attainment", c_sent ? json(double(c_slo) / c_sent) : json(nullptr)},
                         {"goodput_rps", c_slo / sc.duration_s}});
    }
    rt["classes"] = classes;
  }
  out["realtime"] = rt;

  // Async completions over time (wall s from t0) for the timeseries.
  std::vector<double> async_done_times;
  json as;
  if (via_batch) {
    const json b = poller->last();
    async_done_times = poller->done_times();
    int on_time = 0;
    for (double t : async_done_times)
      if (t <= deadline_rel_s + 1e-9) ++on_time;
    const json counts = b.is_object() ? b.value("request_counts", json::object()) : json::object();
    const int64_t completed = counts.value("completed", int64_t{0});
    const int64_t failed = counts.value("failed", int64_t{0});
    as["submitted"] = st.async_plan.size();
    as["succeeded"] = completed;
    as["shed"] = 0;
    as["failed"] = failed;
    as["lost"] = static_cast<int64_t>(st.async_plan.size()) - completed - failed;
    as["on_time"] = on_time;
    as["soft_deadline_s"] = soft_rel_s;
    as["on_time_soft"] = on_time;
    as["soft_deadline_share"] =
        st.async_plan.empty() ? 0.0 : static_cast<double>(on_time) / st.async_plan.size();
    as["batch"] = {{"id", batch_id},
                   {"status", b.is_object() ? b.value("status", "") : std::string()},
                   {"request_counts", counts}};
    as["processor"] = processor_metrics;
  } else if (via) {
    auto results = reader->results();
    int ok = 0, shed = 0, failed = 0, on_time = 0, on_time_soft = 0;
    for (const auto& [id, r] : results) {
      if (r.ok) {
        ++ok;
        async_done_times.push_back(r.t);
        if (r.t <= deadline_rel_s + 1e-9) ++on_time;
        if (soft_rel_s > 0 && r.t <= soft_rel_s + 1e-9) ++on_time_soft;
      } else if (r.shed) {
        ++shed;
      } else {
        ++failed;
      }
    }
    as["submitted"] = st.async_plan.size();
    as["succeeded"] = ok;
    as["shed"] = shed;
    as["failed"] = failed;
    as["lost"] = static_cast<int64_t>(st.async_plan.size()) - static_cast<int64_t>(results.size());
    as["on_time"] = on_time;
    if (soft_rel_s > 0) {
      as["soft_deadline_s"] = soft_rel_s;
      as["on_time_soft"] = on_time_soft;
      as["soft_deadline_share"] =
          st.async_plan.empty() ? 0.0 : static_cast<double>(on_time_soft) / st.async_plan.size();
    }
    as["duplicate_results"] = reader->duplicates();
    as["malformed_results"] = reader->malformed();
    as["processor"] = processor_metrics;
  } else if (direct) {
    int ok = 0, shed = 0, failed = 0, on_time = 0, answered = 0;
    for (const auto& r : st.direct) {
      if (!r.done) continue;
      ++answered;
      if (r.ok) {
        ++ok;
        async_done_times.push_back(r.done_s);
        if (r.done_s <= deadline_rel_s) ++on_time;
      } else if (r.shed) {
        ++shed;
      } else {
        ++failed;
      }
    }
    as["submitted"] = st.async_sent.load();
    as["succeeded"] = ok;
    as["shed"] = shed;
    as["failed"] = failed;
    as["lost"] = st.async_sent.load() - answered;
    as["on_time"] = on_time;
  }
  if (via || direct) {
    as["deadline_s"] = deadline_rel_s;
    as["submit_window_s"] =
        direct ? (run.async.submit_window_s > 0 ? run.async.submit_window_s : sc.duration_s) : 0.0;
    int after_load = 0;
    for (double t : async_done_times)
      if (t > sc.duration_s) ++after_load;
    as["completed_after_load_phase"] = after_load;
    out["async"] = as;
  } else {
    out["async"] = nullptr;
  }

  // Utilisation and throughput over the load phase.
  const double n_servers = external ? 0 : sc.fleet.count;
  if (!external && samples.size() >= 2) {
    size_t a = 0, b = SampleAt(samples, sc.duration_s, interval);
    double wall = samples[b].t - samples[a].t;
    if (wall > 0) {
      double util = (samples[b].busy - samples[a].busy) / (wall * st.ts * n_servers);
      double toks = samples[b].tokens - samples[a].tokens;
      out["utilization"] = std::clamp(util, 0.0, 1.0);
      out["tokens_per_s"] = toks / wall;
      out["tokens_per_s_simulated"] = toks / (wall * st.ts);
      out["utilization_window_s"] = wall;
    }
    // Over the whole run (the simulators start afresh for each run).
    const MetricSample& last = samples.back();
    if (last.prefix_queries > samples.front().prefix_queries)
      out["prefix_cache_hit_rate"] = (last.prefix_hits - samples.front().prefix_hits) /
                                     (last.prefix_queries - samples.front().prefix_queries);
  } else {
    out["utilization"] = nullptr;
    out["tokens_per_s"] = nullptr;
  }
  out["load_phase_s"] = load_end_s;
  out["total_s"] = end_s;

  // Timeseries.
  json tsj;
  tsj["interval_s"] = interval;
  json t = json::array(), urt = json::array(), uas = json::array(), rps = json::array(),
       p50 = json::array(), p99 = json::array(), acomp = json::array(), running = json::array(),
       waiting = json::array();
  std::sort(async_done_times.begin(), async_done_times.end());
  size_t rt_idx = 0;
  for (size_t k = 1; k < samples.size(); ++k) {
    const auto& s0 = samples[k - 1];
    const auto& s1 = samples[k];
    double dt = s1.t - s0.t;
    if (dt <= 0) continue;
    t.push_back(s1.t);
    if (!external && s0.ok && s1.ok) {
      double util = std::clamp((s1.busy - s0.busy) / (dt * st.ts * n_servers), 0.0, 1.0);
      double toks = s1.tokens - s0.tokens;
      double share = 1.0;
      if (via || direct) {
        double rtt = RtTokensIn(st.rt, s0.t, s1.t);
        share = toks > 0 ? std::clamp(rtt / toks, 0.0, 1.0) : 1.0;
      }
      urt.push_back(util * share);
      uas.push_back(util * (1.0 - share));
    } else {
      urt.push_back(nullptr);
      uas.push_back(nullptr);
    }
    std::vector<double> win;
    int arrivals = 0;
    while (rt_idx < st.rt_plan.size() && st.rt_plan[rt_idx].at_s < s1.t) {
      ++arrivals;
      if (st.rt[rt_idx].ok) win.push_back(st.rt[rt_idx].ttft_ms);
      ++rt_idx;
    }
    rps.push_back(arrivals / dt);
    p50.push_back(NumOrNull(Percentile(win, 50)));
    p99.push_back(NumOrNull(Percentile(win, 99)));
    acomp.push_back(std::upper_bound(async_done_times.begin(), async_done_times.end(), s1.t) -
                    async_done_times.begin());
    running.push_back(s1.running);
    waiting.push_back(s1.waiting);
  }
  tsj["t"] = t;
  tsj["util_realtime"] = urt;
  tsj["util_async"] = uas;
  tsj["realtime_rps"] = rps;
  tsj["ttft_p50_ms"] = p50;
  tsj["ttft_p99_ms"] = p99;
  tsj["async_completed"] = acomp;
  tsj["pool_running"] = running;
  tsj["pool_waiting"] = waiting;
  out["timeseries"] = tsj;

  std::ostringstream done;
  done << "bench: [" << run.name << "] done in " << std::fixed << std::setprecision(1) << end_s
       << "s: real-time " << rt_ok << "/" << st.rt_sent.load() << " ok, TTFT p99 "
       << Percentile(ttft, 99) << " ms (sim)";
  for (const auto& [why, n] : failures) done << "; " << n << " failed: " << why;
  if (via || direct)
    done << "; async " << as["succeeded"] << "/" << as["submitted"] << " ok, shed " << as["shed"]
         << ", lost " << as["lost"];
  if (out.contains("utilization") && out["utilization"].is_number())
    done << "; utilisation " << std::setprecision(3) << out["utilization"].get<double>();
  done << "\n";
  std::cerr << done.str();
  return out;
}

}  // namespace

int RunBenchScenario(const Scenario& sc, const BenchOptions& opt) {
  std::error_code ec;
  fs::create_directories(opt.report_dir, ec);
  if (ec) {
    std::cerr << "tidegate bench: cannot create " << opt.report_dir << ": " << ec.message() << "\n";
    return 1;
  }
  for (const auto& name : opt.only) {
    bool found = false;
    for (const auto& r : sc.runs) found = found || r.name == name;
    if (!found) {
      std::cerr << "tidegate bench: --only: no run named '" << name << "' in the scenario\n";
      return 2;
    }
  }
  // Children die with SIGPIPE-free writes; a broken client connection must not kill us.
  signal(SIGPIPE, SIG_IGN);

  json report;
  report["scenario"] = sc.name;
  report["scenario_file"] = opt.scenario_path;
  report["generated_at"] = NowIso();
  report["command"] = opt.command_line;
  report["time_scale"] = sc.fleet.time_scale;
  report["fleet"] = {{"count", sc.fleet.count},
                     {"profile", sc.fleet.profile},
                     {"time_scale", sc.fleet.time_scale},
                     {"max_num_seqs", sc.fleet.max_num_seqs},
                     {"scheduling_policy", sc.fleet.scheduling_policy}};
  report["latency_unit"] = "simulated ms (wall ms x time_scale)";
  report["runs"] = json::array();
  bool failed = false;
  for (const auto& run : sc.runs) {
    if (!opt.only.empty() &&
        std::find(opt.only.begin(), opt.only.end(), run.name) == opt.only.end())
      continue;
    bool setup_failed = false;
    report["runs"].push_back(RunOne(sc, run, opt, &setup_failed));
    failed = failed || setup_failed;
    // Write as we go, so a long benchmark leaves partial results behind.
    std::ofstream(opt.report_dir + "/report.json") << report.dump(2) << "\n";
  }
  std::ofstream(opt.report_dir + "/report.json") << report.dump(2) << "\n";
  std::ofstream html(opt.report_dir + "/report.html");
  html << RenderReportHtml(report);
  std::cout << RenderReportTable(report) << std::flush;
  std::cerr << "bench: wrote " << opt.report_dir << "/report.json and " << opt.report_dir
            << "/report.html\n";
  return failed ? 1 : 0;
}

}  // namespace tidegate::bench
