// The simulator's HTTP servers and step loops. This is the one translation unit of the simulator
// that includes Boost.Beast; see server.h for the contract.
#include "sim/server.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "kvevents/publisher.h"
#include "metrics/registry.h"
#include "sim/scaled_clock.h"
#include "sim/text.h"
#include "tokenizer/standin.h"
#include "wire/errors.h"

namespace tidegate::sim {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using net::awaitable;
using json = nlohmann::json;

namespace {

constexpr auto kTok = net::as_tuple(net::use_awaitable);
constexpr uint64_t kBodyLimit = 64ull * 1024 * 1024;
constexpr size_t kMaxPendingBytes = 4 * 1024 * 1024;

// vLLM's histogram buckets (seconds).
const std::vector<double> kTtftBuckets = {0.001, 0.005, 0.01, 0.02,  0.04,  0.06,  0.08, 0.1,
                                          0.25,  0.5,   0.75, 1.0,   2.5,   5.0,   7.5,  10.0,
                                          20.0,  40.0,  80.0, 160.0, 640.0, 2560.0};
const std::vector<double> kItlBuckets = {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,  0.3,  0.4, 0.5,
                                         0.75, 1.0,   2.5,  5.0,   7.5, 10.0, 20.0, 40.0, 80.0};
const std::vector<double> kE2eBuckets = {0.3,  0.5,   0.8,   1.0,   1.5,   2.0,    2.5,
                                         5.0,  10.0,  15.0,  20.0,  30.0,  40.0,   50.0,
                                         60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};

// vLLM-shaped error body: {"error":{"message","type","param":null,"code":<int>}}.
std::string VllmError(std::string_view message, std::string_view type, int code) {
  std::string out = "{\"error\":{\"message\":\"";
  out += wire::JsonEscape(message);
  out += "\",\"type\":\"";
  out += type;
  out += "\",\"param\":null,\"code\":";
  out += std::to_string(code);
  out += "}}";
  return out;
}

int64_t UnixNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A request being generated, shared by its HTTP session, the step loop (via the server's
// stream table) and the client hang-up watcher.
struct Stream {
  explicit Stream(const net::any_io_executor& ex) : wake(ex) {
    wake.expires_at(net::steady_timer::time_point::max());
  }
  uint64_t id = 0;
  bool chat = false;
  bool streaming = false;
  bool include_usage = false;
  int prompt_tokens = 0;
  int cached_tokens = 0;
  int completion_tokens = 0;
  int max_tokens = 0;
  bool limited_by_prompt = false;  // echo mode: finish_reason "stop"
  std::string prompt_text;         // echo mode
  uint64_t text_seed = 0;
  std::string chunk_prefix;  // "data: {...,\"choices\":[{\"index\":0,"
  std::string pending;       // SSE bytes (streaming) or the whole text (non-streaming)
  bool finished = false;
  bool gone = false;
  bool stalled = false;
  bool armed = false;  // the hang-up watcher may act
  int fd = -1;
  tcp::socket* sock = nullptr;  // valid while armed
  net::steady_timer wake;
};

}  // namespace

// ------------------------------------------------------------------ one simulated server

class Server {
 public:
  Server(net::io_context& ioc, const SimConfig& cfg, size_t index)
      : ioc_(ioc),
        cfg_(cfg),
        clock_(SystemClock::Instance(), cfg.time_scale),
        engine_(cfg.engine, clock_),
        acceptor_(ioc),
        step_timer_(ioc),
        idle_timer_(ioc),
        // Response ids must differ across processes and restarts (clients may deduplicate on
        // them), so --seed only fixes the text; ids mix in a random seed.
        rng_(cfg.seed * 1000003 + index),
        id_rng_(std::random_device{}() ^ (static_cast<uint64_t>(index) << 32)),
        index_(index) {
    const std::vector<std::string> ml = {"model_name"};
    const std::vector<std::string> mv = {cfg_.model};
    running_ = &registry_
                    .AddGauge("vllm:num_requests_running",
                              "Number of requests in model execution batches.", ml)
                    .With(mv);
    waiting_ = &registry_
                    .AddGauge("vllm:num_requests_waiting",
                              "Number of requests waiting to be processed.", ml)
                    .With(mv);
    kv_ =
        &registry_
             .AddGauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", ml)
             .With(mv);
    prefix_queries_ = &registry_
                           .AddCounter("vllm:prefix_cache_queries_total",
                                       "Prefix cache queries, in terms of number of queried "
                                       "tokens.",
                                       ml)
                           .With(mv);
    prefix_hits_ = &registry_
                        .AddCounter("vllm:prefix_cache_hits_total",
                                    "Prefix cache hits, in terms of number of cached tokens.", ml)
                        .With(mv);
    preemptions_ = &registry_
                        .AddCounter("vllm:num_preemptions_total",
                                    "Cumulative number of preemption from the engine.", ml)
                        .With(mv);
    prompt_tokens_ =
        &registry_.AddCounter("vllm:prompt_tokens_total", "Number of prefill tokens processed.", ml)
             .With(mv);
    generation_tokens_ = &registry_
                              .AddCounter("vllm:generation_tokens_total",
                                          "Number of generation tokens processed.", ml)
                              .With(mv);
    auto& success = registry_.AddCounter("vllm:request_success_total",
                                         "Count of successfully processed requests.",
                                         {"model_name", "finished_reason"});
    success_length_ = &success.With({cfg_.model, "length"});
    success_stop_ = &success.With({cfg_.model, "stop"});
    EngineSinks sinks;
    sinks.ttft =
        &registry_
             .AddHistogram("vllm:time_to_first_token_seconds",
                           "Histogram of time to first token in seconds.", kTtftBuckets, ml)
             .With(mv);
    sinks.itl = &registry_
                     .AddHistogram("vllm:inter_token_latency_seconds",
                                   "Histogram of inter-token latency in seconds.", kItlBuckets, ml)
                     .With(mv);
    sinks.e2e = &registry_
                     .AddHistogram("vllm:e2e_request_latency_seconds",
                                   "Histogram of e2e request latency in seconds.", kE2eBuckets, ml)
                     .With(mv);
    engine_.set_sinks(sinks);
    registry_
        .AddGauge("vllm:cache_config_info", "Information of the LLMEngine CacheConfig",
                  {"block_size", "num_gpu_blocks", "enable_prefix_caching", "model_name"})
        .With({std::to_string(cfg_.engine.block_size), std::to_string(cfg_.engine.num_gpu_blocks),
               cfg_.engine.enable_prefix_caching ? "True" : "False", cfg_.model})
        .Set(1);
    base_seed_ = HashBytes(cfg_.seed, cfg_.model);
  }

  std::string Listen(uint16_t port) {
    if (cfg_.kv_events.enabled) {
      kvevents::PublisherConfig pc = cfg_.kv_events;
      std::string err;
      const int off = static_cast<int>(index_);
      pc.endpoint = kvevents::WithPortOffset(cfg_.kv_events.endpoint, off, &err);
      if (!err.empty()) return "--kv-events-config endpoint: " + err;
      if (!pc.replay_endpoint.empty()) {
        pc.replay_endpoint = kvevents::WithPortOffset(cfg_.kv_events.replay_endpoint, off, &err);
        if (!err.empty()) return "--kv-events-config replay_endpoint: " + err;
      }
      publisher_ = kvevents::Publisher::Open(pc, &err);
      if (!publisher_) return err;
      engine_.EnableKvEvents();
      spdlog::info("sim server {}: KV events on {}{}", index_, publisher_->endpoint(),
                   pc.replay_endpoint.empty() ? std::string()
                                              : ", replay on " + publisher_->replay_endpoint());
    }
    beast::error_code ec;
    auto addr = net::ip::make_address(cfg_.host, ec);
    if (ec) return "invalid --host '" + cfg_.host + "': use an IP address such as 127.0.0.1";
    tcp::endpoint ep(addr, port);
    acceptor_.open(ep.protocol(), ec);
    if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(ep, ec);
    if (!ec) acceptor_.listen(1024, ec);
    if (ec)
      return "cannot listen on " + cfg_.host + ":" + std::to_string(port) + ": " + ec.message();
    port_ = acceptor_.local_endpoint().port();
    if (cfg_.personality == Personality::kTriton) {
      const uint16_t mp =
          cfg_.metrics_port == 0 ? 0 : static_cast<uint16_t>(cfg_.metrics_port + index_);
      tcp::endpoint mep(addr, mp);
      metrics_acceptor_.open(mep.protocol(), ec);
      if (!ec) metrics_acceptor_.set_option(net::socket_base::reuse_address(true), ec);
      if (!ec) metrics_acceptor_.bind(mep, ec);
      if (!ec) metrics_acceptor_.listen(64, ec);
      if (ec)
        return "cannot listen on " + cfg_.host + ":" + std::to_string(mp) +
               " (metrics port): " + ec.message();
      metrics_port_ = metrics_acceptor_.local_endpoint().port();
    }
    return {};
  }

  void Start() {
    net::co_spawn(ioc_, AcceptLoop(), net::detached);
    if (metrics_acceptor_.is_open()) net::co_spawn(ioc_, MetricsAcceptLoop(), net::detached);
    net::co_spawn(ioc_, StepLoop(), net::detached);
  }

  // Ends every coroutine of this server (so its event loop runs out of work).
  void Stop() {
    net::post(ioc_, [this] {
      stopping_ = true;
      beast::error_code ec;
      acceptor_.close(ec);
      metrics_acceptor_.close(ec);
      step_timer_.cancel();
      idle_timer_.cancel();
      for (Stream* s : all_streams_) {
        s->gone = true;
        s->armed = false;
        s->wake.cancel();
      }
      for (tcp::socket* sock : sockets_) {
        sock->shutdown(tcp::socket::shutdown_both, ec);
        sock->close(ec);
      }
    });
  }

  uint16_t port() const { return port_; }
  uint16_t metrics_port() const { return metrics_port_; }

 private:
  // ---------------------------------------------------------------- loops

  awaitable<void> AcceptLoop() {
    while (!stopping_) {
      auto [ec, sock] = co_await acceptor_.async_accept(kTok);
      if (ec) {
        if (stopping_ || ec == net::error::operation_aborted) break;
        continue;
      }
      net::co_spawn(ioc_, Session(std::move(sock)), net::detached);
    }
  }

  // Triton's metrics port: GET /metrics only.
  awaitable<void> MetricsAcceptLoop() {
    while (!stopping_) {
      auto [ec, sock] = co_await metrics_acceptor_.async_accept(kTok);
      if (ec) {
        if (stopping_ || ec == net::error::operation_aborted) break;
        continue;
      }
      net::co_spawn(ioc_, Session(std::move(sock), true), net::detached);
    }
  }

  awaitable<void> StepLoop() {
    while (!stopping_) {
      if (!engine_.HasWork()) {
        idle_timer_.expires_at(net::steady_timer::time_point::max());
        co_await idle_timer_.async_wait(kTok);
        continue;
      }
      auto wall_start = std::chrono::steady_clock::now();
      const StepResult& r = engine_.Step();
      ++steps_;
      Nanos wall = r.duration.count() > 0 ? clock_.ToBase(r.duration) : Nanos(1000000);
      step_timer_.expires_at(wall_start + wall);
      co_await step_timer_.async_wait(kTok);
      if (stopping_) break;
      PublishKvEvents();
      Deliver(r.events);
    }
  }

  // One EventBatch per step that changed the prefix cache (vLLM publishes per scheduler step).
  void PublishKvEvents() {
    if (!publisher_) return;
    std::vector<kvevents::Event> ev = engine_.TakeKvEvents();
    if (ev.empty()) return;
    kvevents::EventBatch b;
    b.ts = static_cast<double>(std::chrono::duration_cast<std::chrono::microseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count()) /
           1e6;
    b.events = std::move(ev);
    b.data_parallel_rank = 0;
    publisher_->Publish(b);
  }

  std::string KvCacheJson() const {
    std::string out =
        "{\"block_size\":" + std::to_string(cfg_.engine.block_size) + ",\"block_hashes\":[";
    bool first = true;
    char buf[24];
    for (uint64_t h : engine_.CachedBlockHashes()) {
      std::snprintf(buf, sizeof buf, "\"%016llx\"", static_cast<unsigned long long>(h));
      if (!first) out += ',';
      out += buf;
      first = false;
    }
    return out + "]}";
  }

  void Deliver(const std::vector<TokenEvent>& events) {
    for (const TokenEvent& e : events) {
      auto it = streams_.find(e.id);
      if (it == streams_.end()) continue;
      Stream& s = *it->second;
      if (e.index == 0) {
        if (auto v = engine_.Get(e.id)) s.cached_tokens = std::max(0, v->cached_tokens);
      }
      std::string_view tok = cfg_.mode == OutputMode::kEcho ? EchoToken(s.prompt_text, e.index)
                                                            : FillerToken(s.text_seed, e.index);
      ++s.completion_tokens;
      if (s.streaming) {
        AppendTokenEvent(s, tok, e.index == 0, e.finished);
      } else {
        s.pending += tok;
      }
      if (e.finished) {
        s.finished = true;
        (s.limited_by_prompt ? success_stop_ : success_length_)->Inc();
        streams_.erase(it);
      } else if (cfg_.stall_after_tokens > 0 && s.completion_tokens >= cfg_.stall_after_tokens) {
        s.stalled = true;  // keeps the connection open, silent; the engine forgets it
        engine_.Abort(s.id);
        streams_.erase(it);
      } else if (s.pending.size() > kMaxPendingBytes) {
        spdlog::warn("sim :{}: dropping request {}: client is {} bytes behind", port_, s.id,
                     s.pending.size());
        s.gone = true;
        engine_.Abort(s.id);
        streams_.erase(it);
      }
      s.wake.cancel();
    }
  }

  // ---------------------------------------------------------------- SSE formatting

  const char* FinishReason(const Stream& s) const {
    return s.limited_by_prompt ? "stop" : "length";
  }

  void AppendTokenEvent(Stream& s, std::string_view tok, bool first, bool last) {
    std::string& out = s.pending;
    if (s.chat && first) {
      out += s.chunk_prefix;
      out +=
          "\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,"
          "\"finish_reason\":null}]}\n\n";
    }
    out += s.chunk_prefix;
    out += s.chat ? "\"delta\":{\"content\":\"" : "\"text\":\"";
    if (cfg_.mode == OutputMode::kEcho) {
      out += wire::JsonEscape(tok);
    } else {
      out += tok;
    }
    out += s.chat ? "\"},\"logprobs\":null,\"finish_reason\":"
                  : "\",\"logprobs\":null,\"finish_reason\":";
    if (last) {
      out += '"';
      out += FinishReason(s);
      out += '"';
    } else {
      out += "null";
    }
    out += s.chat ? "}]}\n\n" : ",\"stop_reason\":null}]}\n\n";
    if (last) {
      if (s.include_usage) {
        // chunk_prefix ends inside the choices array: rebuild the head for a usage-only chunk.
        size_t cut = s.chunk_prefix.find("\"choices\":[");
        out.append(s.chunk_prefix, 0, cut);
        out += "\"choices\":[],\"usage\":";
        out += UsageJson(s);
        out += "}\n\n";
      }
      out += "data: [DONE]\n\n";
    }
  }

  static std::string UsageJson(const Stream& s) {
    std::string u =
        "{\"prompt_tokens\":" + std::to_string(s.prompt_tokens) +
        ",\"total_tokens\":" + std::to_string(s.prompt_tokens + s.completion_tokens) +
        ",\"completion_tokens\":" + std::to_string(s.completion_tokens) +
        ",\"prompt_tokens_details\":{\"cached_tokens\":" + std::to_string(s.cached_tokens) + "}}";
    return u;
  }

  // ---------------------------------------------------------------- HTTP

  awaitable<bool> Write(beast::tcp_stream& st, http::status status, bool keep_alive,
                        std::string_view content_type, std::string body) {
    http::response<http::string_body> res{status, 11};
    res.set(http::field::server, "tidegate-sim");
    res.set(http::field::content_type, content_type);
    res.keep_alive(keep_alive && !stopping_);
    res.body() = std::move(body);
    res.prepare_payload();
    auto [ec, n] = co_await http::async_write(st, res, kTok);
    co_return !ec && res.keep_alive();
  }

  awaitable<bool> WriteJson(beast::tcp_stream& st, http::status status, bool keep_alive,
                            std::string body) {
    co_return co_await Write(st, status, keep_alive, "application/json", std::move(body));
  }

  awaitable<bool> BadRequest(beast::tcp_stream& st, bool keep_alive, std::string_view msg) {
    co_return co_await WriteJson(st, http::status::bad_request, keep_alive,
                                 VllmError(msg, "BadRequestError", 400));
  }

  awaitable<void> Session(tcp::socket sock, bool metrics_only = false) {
    beast::error_code ec;
    sock.set_option(tcp::no_delay(true), ec);
    beast::tcp_stream st(std::move(sock));
    beast::flat_buffer buf;
    sockets_.insert(&st.socket());
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.body_limit(kBodyLimit);
      auto [rec, n] = co_await http::async_read_header(st, buf, parser, kTok);
      if (!rec && !parser.is_done()) {
        if (parser.get()[http::field::expect] == "100-continue") {
          static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
          auto [wec, wn] = co_await net::async_write(st, net::buffer(kContinue), kTok);
          if (wec) break;
        }
        std::tie(rec, n) = co_await http::async_read(st, buf, parser, kTok);
      }
      if (rec) {
        if (rec == http::error::body_limit) {
          co_await WriteJson(st, http::status::payload_too_large, false,
                             VllmError("request body too large", "BadRequestError", 413));
        }
        break;
      }
      bool keep = metrics_only ? co_await HandleMetricsPort(st, parser.release())
                               : co_await Handle(st, parser.release());
      if (!keep || stopping_) break;
    }
    st.socket().shutdown(tcp::socket::shutdown_both, ec);
    st.socket().close(ec);
    sockets_.erase(&st.socket());
  }

  awaitable<bool> Handle(beast::tcp_stream& st, http::request<http::string_body> req) {
    std::string_view target = req.target();
    std::string_view path = target.substr(0, target.find('?'));
    const bool ka = req.keep_alive();
    const bool get = req.method() == http::verb::get;
    const bool post = req.method() == http::verb::post;
    const Personality pers = cfg_.personality;
    const bool prom_route = pers == Personality::kTrtllm && path == "/prometheus/metrics";
    const bool is_get_route = path == "/health" || path == "/metrics" || path == "/v1/models" ||
                              path == "/debug/kv_cache" || prom_route;
    const bool is_post_route = path == "/v1/completions" || path == "/v1/chat/completions" ||
                               path == "/reset_prefix_cache";
    if ((is_get_route && !get) || (is_post_route && !post)) {
      co_return co_await WriteJson(st, http::status::method_not_allowed, ka,
                                   "{\"detail\":\"Method Not Allowed\"}");
    }
    if (path == "/health")
      co_return co_await Write(st, http::status::ok, ka, "application/json", "");
    constexpr std::string_view kProm = "text/plain; version=0.0.4; charset=utf-8";
    if (path == "/metrics") {
      switch (pers) {
        case Personality::kVllm:
          co_return co_await Write(st, http::status::ok, ka, kProm, RenderMetrics());
        case Personality::kSglang:
          if (cfg_.export_metrics)
            co_return co_await Write(st, http::status::ok, ka, kProm, RenderSglangMetrics(State()));
          break;
        case Personality::kTrtllm:
          co_return co_await WriteJson(st, http::status::ok, ka,
                                       RenderTrtllmIterationStats(State()));
        case Personality::kTriton:
          break;  // on the metrics port
        case Personality::kLlamaCpp:
          if (cfg_.export_metrics)
            co_return co_await Write(st, http::status::ok, ka, kProm,
                                     RenderLlamaCppMetrics(State()));
          co_return co_await WriteJson(st, http::status::not_implemented, ka,
                                       LlamaCppMetricsDisabledBody());
      }
      co_return co_await WriteJson(st, http::status::not_found, ka, "{\"detail\":\"Not Found\"}");
    }
    if (prom_route) {
      if (cfg_.export_metrics)
        co_return co_await Write(st, http::status::ok, ka, kProm, RenderTrtllmPrometheus(State()));
      co_return co_await WriteJson(st, http::status::not_found, ka, "{\"detail\":\"Not Found\"}");
    }
    if (path == "/v1/models") co_return co_await WriteJson(st, http::status::ok, ka, ModelsJson());
    if (path == "/debug/kv_cache")
      co_return co_await WriteJson(st, http::status::ok, ka, KvCacheJson());
    if (path == "/reset_prefix_cache") {
      if (!engine_.ResetPrefixCache())
        co_return co_await WriteJson(
            st, http::status::conflict, ka,
            VllmError("The prefix cache cannot be reset while requests are running or waiting.",
                      "BadRequestError", 409));
      PublishKvEvents();
      co_return co_await Write(st, http::status::ok, ka, "application/json", "");
    }
    if (is_post_route) co_return co_await Completion(st, req, path == "/v1/chat/completions");
    co_return co_await WriteJson(st, http::status::not_found, ka, "{\"detail\":\"Not Found\"}");
  }

  awaitable<bool> HandleMetricsPort(beast::tcp_stream& st, http::request<http::string_body> req) {
    std::string_view target = req.target();
    const bool ka = req.keep_alive();
    if (target.substr(0, target.find('?')) == "/metrics" && req.method() == http::verb::get)
      co_return co_await Write(st, http::status::ok, ka, "text/plain; version=0.0.4; charset=utf-8",
                               RenderTritonMetrics(State()));
    co_return co_await Write(st, http::status::not_found, ka, "text/plain", "");
  }

  // What the engine shows of itself now, for the personalities' pages.
  EngineState State() const {
    EngineState s;
    s.model = cfg_.model;
    s.running = engine_.num_running();
    s.waiting = engine_.num_waiting();
    s.prefilling = engine_.num_prefilling();
    s.kv_usage = engine_.KvUsage();
    s.block_size = cfg_.engine.block_size;
    s.num_blocks = cfg_.engine.num_gpu_blocks;
    s.used_blocks = static_cast<int64_t>(s.kv_usage * static_cast<double>(s.num_blocks) + 0.5);
    s.max_num_seqs = cfg_.engine.max_num_seqs;
    const EngineStats& es = engine_.stats();
    s.prompt_tokens = es.prompt_tokens;
    s.generation_tokens = es.generation_tokens;
    s.finished = es.finished;
    s.iteration = steps_;
    s.busy_seconds = ToSeconds(es.busy);
    s.priority_scheduling = cfg_.engine.policy == SchedulingPolicy::kPriority;
    if (s.priority_scheduling)
      engine_.CountByPriority(&s.running_by_priority, &s.waiting_by_priority);
    s.tp_size = std::max(1, cfg_.tp_size);
    return s;
  }

  std::string ModelsJson() const {
    json data = json::array();
    const int64_t created = UnixNow();
    int64_t max_len = std::min<int64_t>(
        cfg_.engine.max_model_len,
        static_cast<int64_t>(cfg_.engine.num_gpu_blocks) * cfg_.engine.block_size);
    const std::string owner(PersonalityOwner(cfg_.personality));
    if (cfg_.personality != Personality::kVllm) {
      // The other engines list their models without vLLM's `parent`/`permission` fields.
      data.push_back(
          {{"id", cfg_.model}, {"object", "model"}, {"created", created}, {"owned_by", owner}});
      for (const auto& l : cfg_.lora_modules)
        data.push_back({{"id", l}, {"object", "model"}, {"created", created}, {"owned_by", owner}});
      return json{{"object", "list"}, {"data", data}}.dump();
    }
    data.push_back({{"id", cfg_.model},
                    {"object", "model"},
                    {"created", created},
                    {"owned_by", owner},
                    {"root", cfg_.model},
                    {"parent", nullptr},
                    {"max_model_len", max_len},
                    {"permission", json::array()}});
    for (const auto& l : cfg_.lora_modules) {
      data.push_back({{"id", l},
                      {"object", "model"},
                      {"created", created},
                      {"owned_by", owner},
                      {"root", l},
                      {"parent", cfg_.model},
                      {"max_model_len", nullptr},
                      {"permission", json::array()}});
    }
    return json{{"object", "list"}, {"data", data}}.dump();
  }

  std::string RenderMetrics() {
    running_->Set(engine_.num_running());
    waiting_->Set(engine_.num_waiting());
    kv_->Set(engine_.KvUsage());
    const EngineStats& st = engine_.stats();
    auto sync = [](metrics::Counter* c, uint64_t v) {
      if (v > c->Value()) c->Inc(v - c->Value());
    };
    sync(prefix_queries_, st.prefix_queries);
    sync(prefix_hits_, st.prefix_hits);
    sync(preemptions_, st.preemptions);
    sync(prompt_tokens_, st.prompt_tokens);
    sync(generation_tokens_, st.generation_tokens);
    std::string out = registry_.Render();
    // Rendered by hand: a float counter, and an info gauge whose labels change over time (the
    // registry never forgets a label set; vLLM exposes the latest one, valued by its timestamp).
    auto join = [](const std::vector<std::string>& v) {
      std::string s;
      for (const auto& x : v) s += (s.empty() ? "" : ",") + x;
      return s;
    };
    out +=
        "# HELP vllm:lora_requests_info Running stats on lora requests.\n"
        "# TYPE vllm:lora_requests_info gauge\n"
        "vllm:lora_requests_info{max_lora=\"" +
        std::to_string(cfg_.engine.max_loras) + "\",running_lora_adapters=\"" +
        join(engine_.RunningLoras()) + "\",waiting_lora_adapters=\"" +
        join(engine_.WaitingLoras()) + "\"} " + std::to_string(UnixNow()) + "\n";
    out +=
        "# HELP tidegate_sim_busy_seconds_total Simulated seconds in which an engine step was "
        "running (utilisation = rate of this).\n"
        "# TYPE tidegate_sim_busy_seconds_total counter\n"
        "tidegate_sim_busy_seconds_total{model_name=\"" +
        cfg_.model + "\"} " + metrics::FormatValue(ToSeconds(st.busy)) + "\n";
    return out;
  }

  // Parses and validates a completion request; on failure returns the error (status, body).
  struct Parsed {
    std::string model, lora, prompt_text;
    std::vector<uint32_t> token_ids;  // the prompt's, as the engine tokenises it
    int prompt_tokens = 0;
    int max_tokens = 0;
    int priority = 0;
    bool stream = false, include_usage = false;
  };

  std::optional<std::string> Parse(const std::string& body, bool chat, Parsed* p, int* status) {
    *status = 400;
    json j = json::parse(body, nullptr, false);
    if (j.is_discarded() || !j.is_object())
      return std::string("Invalid request body: expected a JSON object");
    auto model = j.find("model");
    if (model == j.end() || !model->is_string())
      return std::string("Field 'model' is required and must be a string");
    p->model = model->get<std::string>();
    if (p->model != cfg_.model) {
      bool known = false;
      for (const auto& l : cfg_.lora_modules) known |= l == p->model;
      if (!known) {
        *status = 404;
        return "The model `" + p->model + "` does not exist.";
      }
      p->lora = p->model;
    }
    if (chat) {
      auto msgs = j.find("messages");
      if (msgs == j.end() || !msgs->is_array() || msgs->empty())
        return std::string("Field 'messages' is required and must be a non-empty array");
      std::vector<std::pair<std::string, std::string>> m;
      for (const auto& msg : *msgs) {
        if (!msg.is_object() || !msg.contains("role") || !msg["role"].is_string())
          return std::string("Each message must be an object with a string 'role'");
        std::string content;
        auto c = msg.find("content");
        if (c != msg.end()) {
          if (c->is_string()) {
            content = c->get<std::string>();
          } else if (c->is_array()) {
            bool first = true;
            for (const auto& part : *c) {
              if (part.is_object() && part.contains("text") && part["text"].is_string()) {
                // With a chat template, text parts are joined with "\n" as vLLM joins them.
                if (!first && cfg_.tokenizer) content += '\n';
                content += part["text"].get<std::string>();
                first = false;
              }
            }
          } else if (!c->is_null()) {
            return std::string("Message 'content' must be a string or an array of parts");
          }
        }
        m.emplace_back(msg["role"].get<std::string>(), std::move(content));
      }
      if (cfg_.tokenizer) {
        std::vector<tokenizer::ChatMessage> cm;
        for (auto& [role, content] : m) cm.push_back({role, content});
        std::string err;
        auto text = cfg_.tokenizer->RenderChat(cm, /*add_generation_prompt=*/true, &err);
        if (!text) return "Cannot apply the chat template: " + err;
        p->prompt_text = std::move(*text);
        std::vector<int32_t> ids = cfg_.tokenizer->Encode(p->prompt_text, false);
        p->token_ids.assign(ids.begin(), ids.end());
      } else {
        p->prompt_text = ChatPromptText(m);
      }
    } else {
      auto pr = j.find("prompt");
      if (pr == j.end()) return std::string("Field 'prompt' is required");
      if (pr->is_string()) {
        p->prompt_text = pr->get<std::string>();
      } else if (pr->is_array() && pr->size() == 1 && (*pr)[0].is_string()) {
        p->prompt_text = (*pr)[0].get<std::string>();
      } else if (pr->is_array() && !pr->empty() && (*pr)[0].is_number_integer()) {
        // Token ids, used as given; the text is their decimal rendering (for echo).
        for (const auto& t : *pr) {
          if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() > UINT32_MAX)
            return std::string("'prompt' token ids must be non-negative integers");
          p->prompt_text += std::to_string(t.get<int64_t>()) + " ";
          p->token_ids.push_back(static_cast<uint32_t>(t.get<int64_t>()));
        }
      } else {
        return std::string(
            "'prompt' must be a string, an array of one string, or an array of token ids "
            "(batched prompts are not supported by the simulator)");
      }
    }
    if (p->token_ids.empty()) {
      if (cfg_.tokenizer) {
        std::vector<int32_t> ids = cfg_.tokenizer->Encode(p->prompt_text, true);
        p->token_ids.assign(ids.begin(), ids.end());
      } else {
        tokenizer::StandInTokenIds(p->prompt_text, &p->token_ids);
      }
    }
    p->prompt_tokens = static_cast<int>(p->token_ids.size());
    const char* max_names[] = {"max_completion_tokens", "max_tokens"};
    p->max_tokens = chat ? cfg_.default_max_tokens : 16;
    for (const char* name : max_names) {
      auto mt = j.find(name);
      if (mt == j.end() || mt->is_null()) continue;
      if (!mt->is_number_integer() || mt->get<int64_t>() < 1 || mt->get<int64_t>() > (1 << 30))
        return std::string(name) + " must be a positive integer";
      p->max_tokens = static_cast<int>(mt->get<int64_t>());
      break;
    }
    if (auto s = j.find("stream"); s != j.end() && !s->is_null()) {
      if (!s->is_boolean()) return std::string("'stream' must be a boolean");
      p->stream = s->get<bool>();
    }
    if (auto so = j.find("stream_options"); so != j.end() && so->is_object()) {
      if (!p->stream) return std::string("Stream options can only be defined when `stream=True`.");
      auto iu = so->find("include_usage");
      p->include_usage = iu != so->end() && iu->is_boolean() && iu->get<bool>();
    }
    if (auto pri = j.find("priority"); pri != j.end() && !pri->is_null()) {
      if (!pri->is_number_integer()) return std::string("'priority' must be an integer");
      p->priority = static_cast<int>(pri->get<int64_t>());
      if (p->priority != 0 && cfg_.engine.policy != SchedulingPolicy::kPriority)
        return "Got priority " + std::to_string(p->priority) +
               " but Priority scheduling is not enabled.";
    }
    return std::nullopt;
  }

  std::string NewId(bool chat) {
    char buf[48];
    uint64_t a = id_rng_(), b = id_rng_();
    std::snprintf(buf, sizeof buf, "%s%016llx%016llx", chat ? "chatcmpl-" : "cmpl-",
                  static_cast<unsigned long long>(a), static_cast<unsigned long long>(b));
    return buf;
  }

  // Arms a readiness wait on the client socket: EOF or an error while the request is in
  // progress means the client hung up, so the request is aborted and its blocks freed.
  void Watch(const std::shared_ptr<Stream>& sp) {
    if (sp->fd < 0 || !sp->armed) return;
    sp->sock->async_wait(tcp::socket::wait_read, [this, sp](const beast::error_code& ec) {
      if (ec || !sp->armed) return;
      char c;
      ssize_t n = ::recv(sp->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
      if (n > 0) return;  // pipelined bytes: cannot tell, stop watching
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        Watch(sp);
        return;
      }
      ClientGone(*sp);
    });
  }

  void ClientGone(Stream& s) {
    if (s.gone) return;
    s.gone = true;
    if (!s.finished) {
      engine_.Abort(s.id);
      streams_.erase(s.id);
    }
    s.wake.cancel();
  }

  awaitable<bool> Completion(beast::tcp_stream& st, const http::request<http::string_body>& req,
                             bool chat) {
    const bool ka = req.keep_alive();
    Parsed p;
    int status = 400;
    if (auto err = Parse(req.body(), chat, &p, &status)) {
      co_return co_await WriteJson(
          st, static_cast<http::status>(status), ka,
          VllmError(*err, status == 404 ? "NotFoundError" : "BadRequestError", status));
    }
    if (cfg_.fail_rate > 0 && std::uniform_real_distribution<double>(0, 1)(rng_) < cfg_.fail_rate) {
      co_return co_await WriteJson(
          st, http::status::internal_server_error, ka,
          VllmError("simulated failure (--fail-rate)", "InternalServerError", 500));
    }
    auto sp = std::make_shared<Stream>(ioc_.get_executor());
    Stream& s = *sp;
    s.chat = chat;
    s.streaming = p.stream;
    s.include_usage = p.include_usage;
    s.prompt_tokens = p.prompt_tokens;
    s.max_tokens = p.max_tokens;
    if (cfg_.mode == OutputMode::kEcho) {
      int avail = std::max(1, CountTokens(p.prompt_text));
      if (p.prompt_text.empty()) avail = 0;
      if (avail < s.max_tokens) {
        s.max_tokens = std::max(1, avail);
        s.limited_by_prompt = true;
      }
      s.prompt_text = p.prompt_text;
    }

    RequestSpec spec;
    spec.prompt_tokens = p.prompt_tokens;
    spec.max_tokens = s.max_tokens;
    spec.priority = p.priority;
    spec.lora = p.lora;
    spec.block_hashes =
        BlockHashes(p.token_ids, cfg_.engine.block_size, HashBytes(base_seed_, p.lora));
    if (publisher_) spec.token_ids = std::move(p.token_ids);
    std::string err;
    s.id = engine_.Add(std::move(spec), &err);
    if (s.id == 0) co_return co_await BadRequest(st, ka, err);
    s.text_seed = HashBytes(base_seed_, std::to_string(s.id));
    streams_.emplace(s.id, &s);
    idle_timer_.cancel();

    std::string rid = NewId(chat);
    const int64_t created = UnixNow();
    s.chunk_prefix = "data: {\"id\":\"" + rid + "\",\"object\":\"" +
                     (chat ? "chat.completion.chunk" : "text_completion") +
                     "\",\"created\":" + std::to_string(created) + ",\"model\":\"" +
                     wire::JsonEscape(p.model) + "\",\"choices\":[{\"index\":0,";

    // Watch the client for a hang-up while the request is in the engine.
    s.fd = st.socket().native_handle();
    s.sock = &st.socket();
    s.armed = true;
    all_streams_.insert(&s);
    Watch(sp);
    struct Disarm {
      Stream& s;
      tcp::socket& sock;
      ~Disarm() {
        if (s.armed) {
          s.armed = false;
          beast::error_code ec;
          sock.cancel(ec);
        }
      }
    };

    bool keep = false;
    {
      Disarm disarm{s, st.socket()};
      if (s.streaming) {
        keep = co_await StreamOut(st, s, ka);
      } else {
        while (!s.finished && !s.gone) co_await s.wake.async_wait(kTok);
        if (!s.gone) {
          s.armed = false;
          beast::error_code ec;
          st.socket().cancel(ec);
          keep = co_await WriteJson(st, http::status::ok, ka, CompletionJson(s, rid, created, p));
        }
      }
    }
    if (!s.finished && !s.gone) {  // e.g. stalled or write failed
      engine_.Abort(s.id);
      streams_.erase(s.id);
    }
    all_streams_.erase(&s);
    co_return keep && !stopping_;
  }

  awaitable<bool> StreamOut(beast::tcp_stream& st, Stream& s, bool ka) {
    http::response<http::empty_body> res{http::status::ok, 11};
    res.set(http::field::server, "tidegate-sim");
    res.set(http::field::content_type, "text/event-stream; charset=utf-8");
    res.chunked(true);
    res.keep_alive(ka);
    http::response_serializer<http::empty_body> sr{res};
    auto [hec, hn] = co_await http::async_write_header(st, sr, kTok);
    if (hec) {
      ClientGone(s);
      co_return false;
    }
    std::string out;
    for (;;) {
      while (s.pending.empty() && !s.finished && !s.gone) co_await s.wake.async_wait(kTok);
      if (s.gone) co_return false;
      if (!s.pending.empty()) {
        out.swap(s.pending);
        auto [wec, wn] = co_await net::async_write(st, http::make_chunk(net::buffer(out)), kTok);
        out.clear();
        if (wec) {
          ClientGone(s);
          co_return false;
        }
        continue;  // more may have arrived meanwhile
      }
      // finished and flushed
      s.armed = false;
      beast::error_code ec;
      st.socket().cancel(ec);
      auto [lec, ln] = co_await net::async_write(st, http::make_chunk_last(), kTok);
      co_return !lec && ka && !stopping_;
    }
  }

  std::string CompletionJson(const Stream& s, const std::string& rid, int64_t created,
                             const Parsed& p) const {
    std::string text = cfg_.mode == OutputMode::kEcho ? wire::JsonEscape(s.pending) : s.pending;
    std::string out = "{\"id\":\"" + rid + "\",\"object\":\"" +
                      (s.chat ? "chat.completion" : "text_completion") +
                      "\",\"created\":" + std::to_string(created) + ",\"model\":\"" +
                      wire::JsonEscape(p.model) + "\",\"choices\":[{\"index\":0,";
    if (s.chat) {
      out += "\"message\":{\"role\":\"assistant\",\"content\":\"" + text +
             "\",\"tool_calls\":[]},\"logprobs\":null,\"finish_reason\":\"" + FinishReason(s) +
             "\",\"stop_reason\":null}]";
    } else {
      out += "\"text\":\"" + text + "\",\"logprobs\":null,\"finish_reason\":\"" + FinishReason(s) +
             "\",\"stop_reason\":null,\"prompt_logprobs\":null}]";
    }
    out += ",\"usage\":" + UsageJson(s) + "}";
    return out;
  }

  net::io_context& ioc_;
  const SimConfig& cfg_;
  ScaledClock clock_;
  Engine engine_;
  tcp::acceptor acceptor_;
  net::steady_timer step_timer_, idle_timer_;
  std::mt19937_64 rng_;
  std::mt19937_64 id_rng_;
  size_t index_;
  uint64_t base_seed_ = 0;
  std::unique_ptr<kvevents::Publisher> publisher_;
  uint16_t port_ = 0;
  uint64_t steps_ = 0;
  bool stopping_ = false;
  std::unordered_map<uint64_t, Stream*> streams_;  // requests in the engine
  std::unordered_set<Stream*> all_streams_;        // every request being answered
  std::unordered_set<tcp::socket*> sockets_;       // every client connection

  tcp::acceptor metrics_acceptor_{ioc_};
  uint16_t metrics_port_ = 0;
  metrics::Registry registry_;
  metrics::Gauge *running_, *waiting_, *kv_;
  metrics::Counter *prefix_queries_, *prefix_hits_, *preemptions_, *prompt_tokens_,
      *generation_tokens_, *success_length_, *success_stop_;
};

// ------------------------------------------------------------------ the cluster

struct SimCluster::Impl {
  SimConfig cfg;
  std::vector<std::unique_ptr<net::io_context>> loops;
  std::vector<std::unique_ptr<Server>> servers;
  std::vector<std::thread> threads;
  net::io_context control;
};

SimCluster::SimCluster(SimConfig cfg) : impl_(std::make_unique<Impl>()) {
  impl_->cfg = std::move(cfg);
}

SimCluster::~SimCluster() {
  Stop();
  for (auto& t : impl_->threads)
    if (t.joinable()) t.join();
  impl_->servers.clear();
}

std::string SimCluster::Start() {
  auto& I = *impl_;
  size_t n = I.cfg.ports.size();
  if (n == 0) return "no ports configured";
  size_t loops = I.cfg.threads > 0
                     ? static_cast<size_t>(I.cfg.threads)
                     : std::min<size_t>(n, std::max(1u, std::thread::hardware_concurrency()));
  for (size_t i = 0; i < loops; ++i) I.loops.push_back(std::make_unique<net::io_context>(1));
  for (size_t i = 0; i < n; ++i) {
    auto s = std::make_unique<Server>(*I.loops[i % loops], I.cfg, i);
    if (auto err = s->Listen(I.cfg.ports[i]); !err.empty()) return err;
    I.servers.push_back(std::move(s));
  }
  for (auto& s : I.servers) s->Start();
  for (auto& l : I.loops) {
    I.threads.emplace_back([lp = l.get()] {
      for (;;) {  // returns once Stop() has ended every coroutine
        try {
          lp->run();
          return;
        } catch (const std::exception& e) {
          spdlog::error("sim event loop error: {}", e.what());
        }
      }
    });
  }
  return {};
}

std::vector<uint16_t> SimCluster::metrics_ports() const {
  std::vector<uint16_t> out;
  for (const auto& s : impl_->servers)
    if (s->metrics_port()) out.push_back(s->metrics_port());
  return out;
}

std::vector<uint16_t> SimCluster::ports() const {
  std::vector<uint16_t> out;
  for (const auto& s : impl_->servers) out.push_back(s->port());
  return out;
}

void SimCluster::Stop() {
  for (auto& s : impl_->servers) s->Stop();
  impl_->control.stop();
}

int SimCluster::RunUntilSignal() {
  auto& I = *impl_;
  ::signal(SIGPIPE, SIG_IGN);
  net::signal_set signals(I.control, SIGINT, SIGTERM, SIGUSR1);
  signals.async_wait([&](const beast::error_code& ec, int sig) {
    if (ec) return;
    if (sig == SIGUSR1) {
      // Crash-like: no flushing, no goodbyes; the kernel closes every socket mid-response.
      std::_Exit(137);
    }
    spdlog::info("tidegate sim: received {}, stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    Stop();
  });
  auto guard = net::make_work_guard(I.control);
  I.control.run();
  for (auto& t : I.threads)
    if (t.joinable()) t.join();
  return 0;
}

}  // namespace tidegate::sim
