// `tidegate serve`: flags and config file → GatewayConfig → Gateway.
#include <spdlog/spdlog.h>

#include <charconv>
#include <iostream>
#include <thread>

#include "cli/batch_ext.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "common/units.h"
#include "discovery/source.h"
#include "extproc/server.h"
#include "gateway/gateway.h"
#include "http/client.h"
#include "pool/engine_metrics.h"
#include "sched/picker.h"

namespace tidegate::cli {

bool SetLogLevel(const std::string& name) {
  auto level = spdlog::level::from_str(name);
  if (level == spdlog::level::off && name != "off") return false;
  spdlog::set_level(level);
  return true;
}

int RunServe(const std::vector<std::string>& args) {
  gateway::GatewayConfig cfg;
  const gateway::GatewayConfig defaults;

  // A config file is applied first; flags given on the command line override it.
  for (const auto& path : ConfigFlagValues(args)) {
    if (auto err = gateway::LoadGatewayConfigYaml(path, &cfg); !err.empty()) {
      std::cerr << "tidegate serve: " << err << "\n";
      return 2;
    }
  }

  FlagSet flags("tidegate serve",
                "Runs the gateway: an OpenAI-compatible HTTP front door (/v1/chat/completions,\n"
                "/v1/completions, /v1/embeddings, /v1/models) that picks a model server for each\n"
                "request and proxies it, streaming SSE back as it arrives. Also serves /metrics\n"
                "(Prometheus), /healthz, /readyz, /v1/pool and /v1/capacity. SIGTERM drains\n"
                "gracefully. While no endpoint has room, requests of priority >= 0 wait at the\n"
                "gateway (flow control) and sheddable ones (priority < 0) get 429.\n\n"
                "example: tidegate serve --port 8080 --endpoints 127.0.0.1:8000,127.0.0.1:8001");
  std::string ignored_config;
  flags.Add("config", "FILE",
            "YAML config file (gateway: {host, port, threads, policy, max_body_bytes, timeouts: "
            "{connect, ttfb, stream_idle, client_idle, drain}, health_interval, ...}, endpoints: "
            "[host:port, ...], objectives, saturation, scheduling, flow_control: {enabled, "
            "max_requests, max_bytes, band_max_requests, band_max_bytes, ttl, bands: [{priority, "
            "ttl}], fairness, order, max_in_flight_per_endpoint, evict_sheddable_after}); flags "
            "override it",
            "none", [&](const std::string& v) {
              ignored_config = v;
              return std::string();
            });
  flags.Add("endpoints", "HOST:PORT,...", "model servers to route to (comma-separated)", "none",
            [&](const std::string& v) -> std::string {
              cfg.endpoints.clear();
              for (const auto& item : SplitList(v)) {
                pool::EndpointConfig ep;
                if (auto err = pool::ParseEndpoint(item, &ep); !err.empty())
                  return "endpoint '" + item + "': " + err;
                ep.engine.clear();  // = --engine
                cfg.endpoints.push_back(ep);
              }
              return cfg.endpoints.empty() ? "no endpoints given" : "";
            });
  flags.Add("discovery", "TYPE[:ARG,key=value,...]",
            "where the endpoints come from while running, instead of --endpoints. "
            "file:PATH[,interval=1s] watches a YAML list (reloaded on change and on SIGHUP); "
            "dns:NAME:PORT[,type=A|SRV,interval=5s,server=IP:PORT] re-resolves a headless "
            "Service's records; kubernetes:POOL[,namespace=NS,objectives=true,kubeconfig=FILE] "
            "watches an InferencePool's pods. Endpoints that leave finish their requests first",
            "none",
            [&](const std::string& v) { return discovery::ParseSourceSpec(v, &cfg.discovery); });
  flags.Add("kv-events", "port=N|port-offset=N[,replay-port=N|replay-offset=N,topic=PREFIX]",
            "subscribe to every endpoint's KV-cache events (vLLM --kv-events-config, ZMQ) for "
            "precise-prefix-cache-scorer: port=N when each engine publishes on port N of its "
            "own address, port-offset=N when on its HTTP port + N (several on one host); "
            "replay-* names the engines' replay socket, used to catch up on connecting and "
            "after a gap",
            "off",
            [&](const std::string& v) { return gateway::ParseKvEventsSpec(v, &cfg.kv_events); });
  flags.Add("tokenizer", "DIR_OR_FILE",
            "the model's Hugging Face tokenizer.json (or its directory): prompts become the "
            "engine's token ids for precise prefix matching, and chat requests are rendered "
            "with its chat template (default: the simulator's stand-in, 4 bytes a token)",
            "", [&](const std::string& v) {
              cfg.tokenizer = v;
              return std::string();
            });
  flags.Add("host", "ADDR", "address to listen on", defaults.host, [&](const std::string& v) {
    cfg.host = v;
    return std::string();
  });
  flags.Add("api-keys", "FILE",
            "API keys and their tenants (YAML: keys: [{tenant, key_env, objectives, rate, burst, "
            "concurrency}]); without it the gateway does not authenticate. Reloaded on SIGHUP",
            "none", [&](const std::string& v) -> std::string {
              if (v.empty()) return "must not be empty";
              cfg.api_keys_file = v;
              return {};
            });
  flags.Add("tls-cert", "FILE",
            "serve HTTPS on the public port with this PEM certificate chain (with --tls-key; TLS "
            "1.2 with ECDHE AEAD suites, or 1.3; reloaded on SIGHUP)",
            "none", [&](const std::string& v) -> std::string {
              cfg.tls_cert = v;
              return {};
            });
  flags.Add("tls-key", "FILE", "the PEM private key of --tls-cert", "none",
            [&](const std::string& v) -> std::string {
              cfg.tls_key = v;
              return {};
            });
  flags.Add("upstream-ca", "FILE",
            "PEM CA bundle to verify https:// endpoints with (default: the system's store)",
            "system", [&](const std::string& v) -> std::string {
              cfg.upstream_tls.ca_file = v;
              return {};
            });
  flags.Add("upstream-cert", "FILE", "client certificate (PEM) for https:// endpoints", "none",
            [&](const std::string& v) -> std::string {
              cfg.upstream_tls.cert_file = v;
              return {};
            });
  flags.Add("upstream-key", "FILE", "the PEM key of --upstream-cert", "none",
            [&](const std::string& v) -> std::string {
              cfg.upstream_tls.key_file = v;
              return {};
            });
  flags.Add("admin-address", "HOST:PORT|public",
            "where /metrics, /v1/pool, /v1/capacity and the live /dashboard are served (GET and "
            "HEAD only): a separate listener (port 0 = a free one), or 'public' to serve them on "
            "the public port (single-box use)",
            defaults.admin_address, [&](const std::string& v) -> std::string {
              if (v.empty()) return "must not be empty";
              cfg.admin_address = v;
              return {};
            });
  flags.Add("processor-metrics", "URL",
            "the async processor's /metrics (e.g. http://127.0.0.1:9464/metrics): read every "
            "second and shown on /dashboard (backlog, in flight, done, shed)",
            "none", [&](const std::string& v) -> std::string {
              http::Url u;
              std::string err;
              if (!http::ParseHttpUrl(v, &u, &err)) return err;
              cfg.processor_metrics = v;
              return {};
            });
  flags.Add("port", "N", "port to listen on (0 picks a free one)", std::to_string(defaults.port),
            IntSetter(&cfg.port, 0, 65535));
  flags.Add("ext-proc-port", "N",
            "also serve Envoy's ext_proc (gRPC, plaintext) on --host:N as a Gateway API Inference "
            "Extension endpoint picker: the proxy asks where each request goes, decided by the "
            "same pool, scheduler and queues as the HTTP port (0 = off)",
            "0", IntSetter(&cfg.ext_proc_port, 0, 65535));
  flags.Add("threads", "N", "event loops (0 = one per core)",
            "0 (= " + std::to_string(std::thread::hardware_concurrency()) + " here)",
            IntSetter(&cfg.threads, 0, 256));
  std::string policies;
  for (const auto& n : sched::PickerNames()) policies += (policies.empty() ? "" : ", ") + n;
  flags.Add("policy", "NAME",
            "endpoint picking policy: " + policies +
                " (a 'scheduling:' section in --config overrides it)",
            defaults.policy, [&](const std::string& v) -> std::string {
              if (!sched::MakePicker(v)) return "unknown policy (choose from " + policies + ")";
              cfg.policy = v;
              return {};
            });
  std::string engines;
  for (const auto& n : pool::EngineNames()) engines += (engines.empty() ? "" : ", ") + n;
  flags.Add("engine", "NAME",
            "model-server kind of the endpoints, for reading their metrics: auto (recognise "
            "each from its metrics page), " +
                engines +
                ". Each engine's metrics are read where it exports them "
                "(trtllm-serve: /prometheus/metrics; Triton: port 8002); set metrics_port / "
                "metrics_path per endpoint in --config otherwise",
            defaults.default_engine, [&](const std::string& v) -> std::string {
              if (!pool::IsAutoEngine(v) && !pool::EngineFromName(v))
                return "unknown engine (choose from auto, " + engines + ")";
              cfg.default_engine = v;
              return {};
            });
  flags.Add("scrape-interval", "DUR", "how often each endpoint's metrics page is read (0 = never)",
            FormatDuration(defaults.scrape_interval), DurationSetter(&cfg.scrape_interval));
  flags.Add("stale-after", "DUR",
            "metrics older than this make an endpoint stale: avoided, and counted as saturated",
            FormatDuration(defaults.stale_after), DurationSetter(&cfg.stale_after));
  flags.Add("objective", "NAME=PRIORITY",
            "an objective clients name in x-gateway-inference-objective (repeatable); higher "
            "priority wins, negative = sheddable (refused with 429 when the pool is saturated)",
            "none", [&](const std::string& v) { return gateway::AddObjective(v, &cfg); });
  flags.Add("default-objective", "NAME", "objective of requests that name none",
            "none (priority 0)", [&](const std::string& v) {
              cfg.default_objective = v;
              return std::string();
            });
  flags.Add("queue-threshold", "N",
            "an endpoint with this many waiting requests is saturated (saturation = "
            "max(waiting/N, kv/kv-threshold); the pool's is the mean)",
            "5", DoubleSetter(&cfg.queue_threshold, 1e-9, 1e9));
  flags.Add("kv-threshold", "F", "KV-cache usage (0..1) at which an endpoint is saturated", "0.8",
            DoubleSetter(&cfg.kv_threshold, 1e-9, 1));
  flags.Add("max-in-flight-per-endpoint", "N",
            "flow control: an endpoint with this many requests in flight from this gateway has "
            "no room (0 = no bound; room is then decided by saturation alone)",
            "0", IntSetter(&cfg.max_in_flight_per_endpoint, 0, 1'000'000));
  flags.Add("flow-control", "on|off",
            "hold requests of priority >= 0 at the gateway while no endpoint has room (bands "
            "dispatched highest priority first, fair between tenants, the endpoint picked at "
            "dispatch); off sends every request straight to the best endpoint",
            defaults.flow.enabled ? "on" : "off", [&](const std::string& v) -> std::string {
              if (v != "on" && v != "off") return "expected on or off";
              cfg.flow.enabled = v == "on";
              return {};
            });
  flags.Add("queue-max-requests", "N",
            "flow control: requests that may wait at the gateway in all (a newcomer evicts the "
            "newest request of a lower band, else it is refused with 429)",
            std::to_string(defaults.flow.limits.max_requests), [&](const std::string& v) {
              long long n = 0;
              if (!ParseIntIn(v, 1, 10'000'000, &n)) return std::string("expected 1..10000000");
              cfg.flow.limits.max_requests = static_cast<size_t>(n);
              return std::string();
            });
  flags.Add("queue-band-max-requests", "N",
            "flow control: requests that may wait in one priority band (a newcomer to a full band "
            "is refused with 429)",
            std::to_string(defaults.flow.limits.band_max_requests), [&](const std::string& v) {
              long long n = 0;
              if (!ParseIntIn(v, 1, 10'000'000, &n)) return std::string("expected 1..10000000");
              cfg.flow.limits.band_max_requests = static_cast<size_t>(n);
              return std::string();
            });
  flags.Add("queue-max-bytes", "SIZE", "flow control: request body bytes that may wait in all",
            "1GiB", [&](const std::string& v) -> std::string {
              auto b = ParseBytes(v);
              if (!b) return "expected a size such as 256MiB";
              cfg.flow.limits.max_bytes = *b;
              cfg.flow.limits.band_max_bytes = std::min(cfg.flow.limits.band_max_bytes, *b);
              return {};
            });
  flags.Add(
      "queue-ttl", "DUR",
      "flow control: longest wait at the gateway; then 503 ttl-expired (a request's "
      "x-llm-d-inference-ttl may shorten it)",
      FormatDuration(std::chrono::duration_cast<std::chrono::milliseconds>(defaults.flow.ttl)),
      [&](const std::string& v) -> std::string {
        auto d = ParseDuration(v);
        if (!d || d->count() <= 0) return "expected a positive duration such as 30s";
        cfg.flow.ttl = *d;
        return {};
      });
  flags.Add("fairness", "POLICY",
            "flow control, between tenants (x-gateway-inference-fairness-id) of one band: "
            "round-robin or global-strict",
            "round-robin",
            [&](const std::string& v) { return gateway::ParseFairness(v, &cfg.flow.fairness); });
  flags.Add("queue-order", "ORDER",
            "flow control, within a tenant: fcfs, or edf (earliest deadline = arrival + "
            "x-slo-ttft-ms first)",
            "fcfs",
            [&](const std::string& v) { return gateway::ParseOrdering(v, &cfg.flow.ordering); });
  flags.Add("evict-sheddable-after", "DUR",
            "flow control: when a request of priority >= 0 has waited this long, evict a running "
            "sheddable request (it gets 429 evicted and is retried by the async processor); 0 = "
            "never",
            "0s", [&](const std::string& v) -> std::string {
              auto d = ParseDuration(v);
              if (!d) return "expected a duration such as 500ms (0 = never)";
              cfg.flow.evict_sheddable_after = *d;
              return {};
            });
  flags.AddSwitch("forward-priority",
                  "add vLLM's `priority` field (= -objective priority) to request bodies that "
                  "have none, for servers run with --scheduling-policy priority",
                  [&] { cfg.forward_priority = true; });
  flags.Add("max-body-bytes", "SIZE", "largest request body accepted (413 above it), e.g. 16MiB",
            "16MiB", [&](const std::string& v) -> std::string {
              auto b = ParseBytes(v);
              if (!b) return "expected a size such as 1048576, 512k or 16MiB";
              cfg.max_body_bytes = *b;
              return {};
            });
  flags.Add("max-buffered-bytes", "SIZE",
            "request bodies held in memory by all connections together; a body that would go "
            "over it is refused with 503 before it is read",
            "1GiB", [&](const std::string& v) -> std::string {
              auto b = ParseBytes(v);
              if (!b || *b < 1024) return "expected a size of at least 1 KiB, such as 512MiB";
              cfg.max_buffered_bytes = *b;
              return {};
            });
  flags.Add("connect-timeout", "DUR", "upstream connect timeout (then the next endpoint is tried)",
            FormatDuration(defaults.connect_timeout), DurationSetter(&cfg.connect_timeout));
  flags.Add("ttfb-timeout", "DUR",
            "time allowed from sending a request upstream to its first response byte (504 after)",
            FormatDuration(defaults.ttfb_timeout), DurationSetter(&cfg.ttfb_timeout));
  flags.Add("stream-idle-timeout", "DUR",
            "longest silence allowed between two chunks of a response, either direction",
            FormatDuration(defaults.stream_idle_timeout), DurationSetter(&cfg.stream_idle_timeout));
  flags.Add("eject-after", "N",
            "eject an endpoint after N failures in a row (a request that got no response head "
            "in time, a connection the server reset or closed, a response that is not HTTP), "
            "even while its /health answers; 0 = never",
            std::to_string(defaults.outlier.failures), IntSetter(&cfg.outlier.failures, 0, 1000));
  flags.Add(
      "eject-time", "DUR",
      "first ejection lasts this long, each further one this much longer (at most 12×)",
      FormatDuration(std::chrono::duration_cast<std::chrono::milliseconds>(defaults.outlier.base)),
      [&](const std::string& v) -> std::string {
        auto d = ParseDuration(v);
        if (!d || d->count() <= 0) return "expected a positive duration such as 5s";
        cfg.outlier.base = *d;
        cfg.outlier.max = *d * 12;
        return {};
      });
  flags.Add("ttfb-slo-factor", "X",
            "a streamed request with x-slo-ttft-ms waits at most max(1 s, X × SLO) for a response "
            "head before the next endpoint is tried (0 = always --ttfb-timeout)",
            "5", DoubleSetter(&cfg.ttfb_slo_factor, 0, 1000));
  flags.Add("max-connections", "N",
            "client connections served at once; more get 503 and are closed (0 = from the "
            "open-files limit, which the gateway raises to its hard limit at start-up)",
            "0", IntSetter(&cfg.max_connections, 0, 1 << 24));
  flags.Add("header-timeout", "DUR",
            "a request head must arrive within this long of its first byte (408 after; "
            "slow-header attacks)",
            FormatDuration(defaults.header_timeout), DurationSetter(&cfg.header_timeout));
  flags.Add("client-idle-timeout", "DUR",
            "longest pause of a client in the middle of sending a request (408 after)",
            FormatDuration(defaults.client_idle_timeout), DurationSetter(&cfg.client_idle_timeout));
  flags.Add("keepalive-timeout", "DUR",
            "how long a keep-alive connection may idle between requests before it is closed",
            FormatDuration(defaults.keepalive_timeout), DurationSetter(&cfg.keepalive_timeout));
  flags.Add("drain-timeout", "DUR", "on SIGTERM, how long in-flight requests may take to finish",
            FormatDuration(defaults.drain_timeout), DurationSetter(&cfg.drain_timeout));
  flags.Add("health-interval", "DUR", "how often each endpoint's GET /health is probed (0 = off)",
            FormatDuration(defaults.health_interval), DurationSetter(&cfg.health_interval));
  flags.Add("log-level", "LEVEL", "trace, debug (one line per request), info, warn, error, off",
            defaults.log_level, LogLevelSetter(&cfg.log_level));

  batch::ServiceOptions batch_opts;
  AddBatchFlags(&flags, &batch_opts);

  if (auto code = ParseCommandLine(flags, args)) return *code;
  SetLogLevel(cfg.log_level);
  if (auto err = cfg.Validate(); !err.empty()) {
    std::cerr << "tidegate serve: " << err << "\n";
    return 2;
  }
  if (batch_opts.dir.empty() && (!batch_opts.requests.empty() || !batch_opts.results.empty())) {
    std::cerr << "tidegate serve: --batch-queue and --batch-results need --batch-dir (where the "
                 "Batch API keeps its files and state)\n";
    return 2;
  }
  gateway::Gateway gw(cfg);
  std::shared_ptr<BatchExtension> batch_ext;
  if (!batch_opts.dir.empty()) {
    std::string err;
    auto service = batch::Service::Open(batch_opts, &err);
    if (!service) {
      std::cerr << "tidegate serve: " << err << "\n";
      return 2;
    }
    batch_ext = std::make_shared<BatchExtension>(std::move(service));
    gw.SetExtension(batch_ext);
  }
  if (auto err = gw.Start(); !err.empty()) {
    spdlog::error("{}", err);
    return 1;
  }
  std::unique_ptr<extproc::Server> ext_proc;
  if (cfg.ext_proc_port != 0) {
    ext_proc = std::make_unique<extproc::Server>(gw.Shared());
    if (auto err = ext_proc->Start(cfg.host, cfg.ext_proc_port); !err.empty()) {
      spdlog::error("{}", err);
      return 1;
    }
  }
  if (batch_ext) {
    batch_ext->service().Start();
    spdlog::info("Batch API (/v1/files, /v1/batches) on, state in {}", batch_opts.dir);
  }
  const int code = gw.RunUntilSignal();
  if (ext_proc) ext_proc->Stop();
  if (batch_ext) batch_ext->service().Stop();
  return code;
}

}  // namespace tidegate::cli
