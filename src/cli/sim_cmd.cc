// `tidegate sim`: flags (on top of a --profile preset) → SimConfig → SimCluster.
#include <spdlog/spdlog.h>

#include <charconv>
#include <cmath>
#include <iostream>
#include <limits>
#include <thread>

#include "cli/commands.h"
#include "cli/flags.h"
#include "kvevents/config.h"
#include "sim/profiles.h"
#include "sim/server.h"
#include "tokenizer/tokenizer.h"

namespace tidegate::cli {

namespace {

// "a,b,c" of numbers into the given fields.
FlagSet::Setter Doubles(std::vector<double*> outs) {
  return [outs](const std::string& v) -> std::string {
    auto items = SplitList(v);
    if (items.size() != outs.size())
      return "expected " + std::to_string(outs.size()) + " comma-separated numbers";
    for (size_t i = 0; i < outs.size(); ++i)
      if (!ParseDoubleIn(items[i], 0, 1e18, outs[i])) return "bad number '" + items[i] + "'";
    return {};
  };
}

std::string Fmt(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

}  // namespace

int RunSim(const std::vector<std::string>& args) {
  sim::SimConfig cfg;
  std::string profile_name = "llama-3.1-8b-h100";
  // The profile is applied first; the other flags override its fields wherever they appear.
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--profile" && i + 1 < args.size()) profile_name = args[i + 1];
    if (args[i].rfind("--profile=", 0) == 0) profile_name = args[i].substr(10);
  }
  std::string profiles;
  for (const auto& p : sim::Profiles()) profiles += "\n      " + p.name + ": " + p.description;
  const sim::Profile* profile = sim::FindProfile(profile_name);
  if (!profile) {
    std::cerr << "tidegate sim: unknown profile '" << profile_name << "'; profiles:" << profiles
              << "\n";
    return 2;
  }
  cfg.model = profile->model;
  cfg.engine = profile->engine;
  auto& e = cfg.engine;
  auto& lat = cfg.engine.latency;

  int port = 8000, port_count = 1;
  std::vector<uint16_t> port_list;
  std::string log_level = "info";
  bool metrics_port_set = false;

  FlagSet flags(
      "tidegate sim",
      "Runs one or more simulated vLLM model servers (no GPU): the OpenAI-compatible API\n"
      "(POST /v1/completions, /v1/chat/completions with SSE streaming; GET /v1/models, /health)\n"
      "and vLLM's Prometheus metrics on GET /metrics. Each server has its own engine: a\n"
      "continuous-batching step loop with a paged KV cache, prefix caching, chunked prefill,\n"
      "preemption, FCFS/priority scheduling and LoRA slots; each step lasts as long as the\n"
      "profile's latency model says (divided by --time-scale).\n\n"
      "Tokens: ~4 characters of prompt text per token. Output: deterministic filler words, or the\n"
      "prompt itself with --mode echo (finish_reason \"stop\" when the prompt runs out).\n"
      "Prints `sim listening on http://HOST:PORT` to stderr per server once it accepts.\n"
      "Signals: SIGINT/SIGTERM stop it; SIGUSR1 kills it at once, crash-like (exit 137, open\n"
      "streams cut mid-response).\n\n"
      "Personalities: --personality sglang|trtllm|triton|llamacpp makes the servers look like "
      "that\n"
      "engine from outside (metric names, labels, paths and ports; the engine model is the same):\n"
      "  sglang    SGLang 0.5 metrics on /metrics (per-priority series with --scheduling-policy\n"
      "            priority, one copy per rank with --tp-size)\n"
      "  trtllm    trtllm-serve: JSON iteration stats on /metrics, Prometheus text on\n"
      "            /prometheus/metrics (404 with --no-metrics, as without return_perf_metrics)\n"
      "  triton    Triton + TensorRT-LLM backend: no /metrics on the inference port; metrics on\n"
      "            --metrics-port (printed as `sim metrics on http://HOST:PORT/metrics`)\n"
      "  llamacpp  llama-server: llamacpp:* metrics (501 with --no-metrics, as without "
      "--metrics)\n\n"
      "example: tidegate sim --port 8000 --port-count 4 --time-scale 10");
  flags.Add("profile", "NAME", "model/hardware preset; other flags override its fields:" + profiles,
            profile_name, [](const std::string&) { return std::string(); });
  flags.Add("host", "ADDR", "address to listen on", cfg.host, [&](const std::string& v) {
    cfg.host = v;
    return std::string();
  });
  flags.Add("port", "N", "port of the first server (0 = a free port for each server)",
            std::to_string(port), IntSetter(&port, 0, 65535));
  flags.Add("port-count", "K", "number of servers, on ports N, N+1, ... (all free ports if N=0)",
            "1", IntSetter(&port_count, 1, 1024));
  flags.Add("ports", "A,B,...", "explicit ports, one server each (overrides --port/--port-count)",
            "none", [&](const std::string& v) -> std::string {
              port_list.clear();
              for (const auto& item : SplitList(v)) {
                long long x;
                if (!ParseIntIn(item, 0, 65535, &x)) return "bad port '" + item + "'";
                port_list.push_back(static_cast<uint16_t>(x));
              }
              return port_list.empty() ? "no ports given" : "";
            });
  flags.Add("threads", "N", "event loops shared by the servers (0 = min(servers, cores))", "0",
            IntSetter(&cfg.threads, 0, 256));
  std::string personalities;
  for (const auto& n : sim::PersonalityNames())
    personalities += (personalities.empty() ? "" : "|") + n;
  flags.Add("personality", personalities, "which engine the servers look like (see above)", "vllm",
            [&](const std::string& v) -> std::string {
              auto p = sim::PersonalityFromName(v);
              if (!p) return "unknown personality (choose from " + personalities + ")";
              cfg.personality = *p;
              return {};
            });
  flags.AddSwitch("no-metrics", "export no metrics (sglang, trtllm and llamacpp personalities)",
                  [&] { cfg.export_metrics = false; });
  flags.Add("metrics-port", "N",
            "triton personality: metrics port of the first server, +1 per further server "
            "(0 = a free port each)",
            "8002 (free ports when --port is 0)", [&](const std::string& v) -> std::string {
              long long x;
              if (!ParseIntIn(v, 0, 65535, &x)) return "expected a port 0..65535";
              cfg.metrics_port = static_cast<uint16_t>(x);
              metrics_port_set = true;
              return {};
            });
  flags.Add("tp-size", "N", "sglang personality: tensor-parallel ranks (copies of every series)",
            "1", IntSetter(&cfg.tp_size, 1, 64));
  flags.Add("model", "NAME", "served (base) model name", cfg.model, [&](const std::string& v) {
    cfg.model = v;
    return std::string();
  });
  flags.Add("max-num-seqs", "N", "most requests in a batch; the rest wait",
            std::to_string(e.max_num_seqs), IntSetter(&e.max_num_seqs, 1, 1 << 20));
  flags.Add("max-num-batched-tokens", "N", "token budget of one step (chunked prefill)",
            std::to_string(e.max_num_batched_tokens),
            IntSetter(&e.max_num_batched_tokens, 1, 1 << 24));
  flags.Add("block-size", "N", "tokens per KV block", std::to_string(e.block_size),
            IntSetter(&e.block_size, 1, 1024));
  flags.Add("num-gpu-blocks", "N", "KV cache size in blocks", std::to_string(e.num_gpu_blocks),
            IntSetter(&e.num_gpu_blocks, 1, 1 << 26));
  flags.Add("max-model-len", "N", "longest prompt + completion (also capped by the KV cache)",
            std::to_string(e.max_model_len), IntSetter(&e.max_model_len, 2, 1 << 26));
  flags.AddSwitch("no-enable-prefix-caching", "disable prefix caching",
                  [&] { e.enable_prefix_caching = false; });
  flags.Add("scheduling-policy", "fcfs|priority",
            "waiting order; priority reads the request's `priority` field (lower first) and "
            "rejects non-zero priorities under fcfs, as vLLM",
            "fcfs", [&](const std::string& v) -> std::string {
              if (v == "fcfs") {
                e.policy = sim::SchedulingPolicy::kFcfs;
              } else if (v == "priority") {
                e.policy = sim::SchedulingPolicy::kPriority;
              } else {
                return "expected fcfs or priority";
              }
              return {};
            });
  flags.Add("lora-modules", "NAME,...",
            "LoRA adapters served as models (vLLM's name=path form is accepted; the path is "
            "ignored)",
            "none", [&](const std::string& v) -> std::string {
              cfg.lora_modules.clear();
              for (auto item : SplitList(v)) {
                item = item.substr(0, item.find('='));
                if (item.empty()) return "empty adapter name";
                cfg.lora_modules.push_back(item);
              }
              return {};
            });
  flags.Add("max-loras", "N", "adapters that can be in a batch at once",
            std::to_string(e.max_loras), IntSetter(&e.max_loras, 1, 1024));
  flags.Add("lora-load-ms", "MS", "simulated time to load an adapter into a slot",
            Fmt(lat.lora_load_ms), DoubleSetter(&lat.lora_load_ms, 0, 1e9));
  flags.Add("prefill-coeffs", "A,B,C", "prefill step ms = A·N² + B·N + C for N prefill tokens",
            Fmt(lat.prefill_a) + "," + Fmt(lat.prefill_b) + "," + Fmt(lat.prefill_c),
            Doubles({&lat.prefill_a, &lat.prefill_b, &lat.prefill_c}));
  flags.Add("decode-coeffs", "BASE,PER_SEQ", "decode step ms = BASE + PER_SEQ·running requests",
            Fmt(lat.decode_base_ms) + "," + Fmt(lat.decode_per_seq_ms),
            Doubles({&lat.decode_base_ms, &lat.decode_per_seq_ms}));
  flags.Add("kv-bytes-per-token", "BYTES",
            "KV bytes per token for the memory-bound decode floor (context × this / bandwidth)",
            Fmt(lat.kv_bytes_per_token), DoubleSetter(&lat.kv_bytes_per_token, 0, 1e12));
  flags.Add("mem-bandwidth", "BYTES/S", "HBM bandwidth for the memory-bound decode floor",
            Fmt(lat.mem_bandwidth_bytes_per_s),
            DoubleSetter(&lat.mem_bandwidth_bytes_per_s, 1, 1e18));
  flags.Add("time-scale", "X",
            "simulated time runs X times faster than wall time (latencies and "
            "metrics are in simulated time)",
            "1", DoubleSetter(&cfg.time_scale, 1e-3, 1e6));
  flags.Add("mode", "filler|echo", "output text: deterministic filler words or the prompt echoed",
            "filler", [&](const std::string& v) -> std::string {
              if (v == "filler") {
                cfg.mode = sim::OutputMode::kFiller;
              } else if (v == "echo") {
                cfg.mode = sim::OutputMode::kEcho;
              } else {
                return "expected filler or echo";
              }
              return {};
            });
  flags.Add("default-max-tokens", "N",
            "completion length of chat requests without max_tokens (completions: 16, as OpenAI)",
            std::to_string(cfg.default_max_tokens), IntSetter(&cfg.default_max_tokens, 1, 1 << 24));
  flags.Add("fail-rate", "P", "probability that a completion request is answered 500 at once", "0",
            DoubleSetter(&cfg.fail_rate, 0, 1));
  flags.Add("stall-after-tokens", "N",
            "each stream goes silent after N tokens, connection left open (0 = never)", "0",
            IntSetter(&cfg.stall_after_tokens, 0, 1 << 30));
  flags.Add("seed", "S", "seed for filler text, ids and --fail-rate", "0",
            IntSetter(&cfg.seed, 0, std::numeric_limits<long long>::max()));
  std::string kv_events_json, kv_encoding = "map", tokenizer_path;
  flags.Add("kv-events-config", "JSON",
            "publish KV-cache events as vLLM does (its JSON, same keys): e.g. "
            "'{\"enable_kv_cache_events\":true,\"publisher\":\"zmq\",\"endpoint\":"
            "\"tcp://127.0.0.1:5557\",\"replay_endpoint\":\"tcp://127.0.0.1:5657\",\"topic\":"
            "\"kv@127.0.0.1@model\"}'. Server k of --port-count publishes on the endpoint's port "
            "+ k (and replays on replay_endpoint's port + k)",
            "", [&](const std::string& v) -> std::string {
              kv_events_json = v;
              return {};
            });
  flags.Add("kv-events-encoding", "map|array",
            "how events are encoded: map (current vLLM: tagged maps, block hashes as bytes) or "
            "array (older vLLM: tagged arrays, integer hashes)",
            kv_encoding, [&](const std::string& v) -> std::string {
              kvevents::Encoding enc;
              if (!kvevents::ParseEncoding(v, &enc)) return "expected map or array";
              kv_encoding = v;
              return {};
            });
  flags.Add("tokenizer", "DIR_OR_FILE",
            "the model's Hugging Face tokenizer.json (or its directory): prompts are counted and "
            "hashed in the engine's real token ids, and chat requests rendered with its chat "
            "template (default: 4 bytes a token)",
            "", [&](const std::string& v) -> std::string {
              tokenizer_path = v;
              return {};
            });
  flags.Add("log-level", "LEVEL", "trace, debug, info, warn, error, off", log_level,
            LogLevelSetter(&log_level));

  if (auto code = ParseCommandLine(flags, args)) return *code;
  if (!kv_events_json.empty()) {
    std::string err;
    if (!kvevents::ParsePublisherConfig(kv_events_json, &cfg.kv_events, &err)) {
      std::cerr << "tidegate sim: " << err << "\n";
      return 2;
    }
    kvevents::ParseEncoding(kv_encoding, &cfg.kv_events.encoding);
  }
  if (!tokenizer_path.empty()) {
    std::string err;
    auto tok = tokenizer::Tokenizer::Load(tokenizer_path, &err);
    if (!tok) {
      std::cerr << "tidegate sim: --tokenizer: " << err << "\n";
      return 2;
    }
    cfg.tokenizer = std::move(tok);
  }
  SetLogLevel(log_level);
  if (!port_list.empty()) {
    cfg.ports = port_list;
  } else {
    cfg.ports.clear();
    for (int i = 0; i < port_count; ++i) {
      int p = port == 0 ? 0 : port + i;
      if (p > 65535) {
        std::cerr << "tidegate sim: --port + --port-count goes past 65535\n";
        return 2;
      }
      cfg.ports.push_back(static_cast<uint16_t>(p));
    }
  }
  if (!metrics_port_set) cfg.metrics_port = cfg.ports.front() == 0 ? 0 : 8002;
  for (const auto& l : cfg.lora_modules) {
    if (l == cfg.model) {
      std::cerr << "tidegate sim: adapter '" << l << "' has the base model's name\n";
      return 2;
    }
  }

  sim::SimCluster cluster(cfg);
  if (auto err = cluster.Start(); !err.empty()) {
    std::cerr << "tidegate sim: " << err << "\n";
    return 1;
  }
  spdlog::info(
      "tidegate sim: {} server(s) of {} (profile {}), {} KV blocks of {}, max {} seqs, "
      "time scale {}",
      cfg.ports.size(), cfg.model, profile_name, e.num_gpu_blocks, e.block_size, e.max_num_seqs,
      cfg.time_scale);
  if (cfg.personality != sim::Personality::kVllm)
    spdlog::info("tidegate sim: personality {}{}", sim::PersonalityName(cfg.personality),
                 cfg.export_metrics ? "" : ", metrics off");
  for (uint16_t p : cluster.metrics_ports())
    std::cerr << "sim metrics on http://" << cfg.host << ":" << p << "/metrics\n" << std::flush;
  for (uint16_t p : cluster.ports())
    std::cerr << "sim listening on http://" << cfg.host << ":" << p << "\n" << std::flush;
  return cluster.RunUntilSignal();
}

}  // namespace tidegate::cli
