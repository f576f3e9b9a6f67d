// gateway/config.h — everything `tidegate serve` can be told, from a YAML file and/or flags.
//
// Contract: GatewayConfig holds sane production defaults; LoadGatewayConfigYaml() fills it from a
// file and rejects unknown keys and bad values with a message naming the key, so a typo never
// silently falls back to a default. Validate() checks cross-field rules before start-up.
// Thread-safety: plain data; read-only once the gateway starts.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "control/director.h"
#include "discovery/source.h"
#include "gateway/kv_events_feed.h"
#include "http/client.h"
#include "pool/endpoint.h"
#include "pool/saturation.h"

namespace tidegate::gateway {

using std::chrono::milliseconds;

struct GatewayConfig {
  std::string host = "0.0.0.0";
  uint16_t port = 8080;
  int threads = 0;  // 0 = one event loop per core
  std::vector<pool::EndpointConfig> endpoints;
  // Where endpoints come from at run time (discovery/source.h); type "" = the fixed `endpoints`.
  discovery::SourceSpec discovery;
  std::string policy = "tidegate-default";
  // The engines' KV events, for precise-prefix-cache-scorer (gateway/kv_events_feed.h).
  KvEventsConfig kv_events;
  // The model's tokenizer.json (or its directory): prompts become the engine's token ids for
  // precise prefix matching, chat requests rendered with its chat template. "" = the stand-in.
  std::string tokenizer;
  // GIE-style scheduler section (plugins, schedulingProfiles) as YAML text; overrides `policy`.
  std::string scheduler_yaml;
  // Metric mapping for endpoints that name none; "auto" recognises each server's engine.
  std::string default_engine = "auto";
  milliseconds scrape_interval{50};  // GET /metrics on every endpoint; 0 disables
  milliseconds stale_after{2000};    // older metrics: the endpoint counts as saturated
  // The one saturation detector (pool/saturation.h). `saturation:` in the file and GIE's
  // `scheduling.saturationDetector` both set it; values they both name must agree.
  double queue_threshold = 5;  // saturation = max(waiting/this, kv/kv_threshold)
  double kv_threshold = 0.8;
  int max_in_flight_per_endpoint = 0;  // flow control's in-flight bound (0 = none)
  // Flow control: requests of priority ≥ 0 wait at the gateway while no endpoint has room.
  control::FlowControlConfig flow;
  // Objectives: name → priority (higher wins; negative = sheddable). Two are built in so the
  // async processor works against a default gateway; configuration may redefine them.
  std::map<std::string, int> objectives = {{"standard", 0}, {"sheddable", -1}};
  std::string default_objective;  // for requests naming none ("" = priority 0)
  bool forward_priority = false;  // add vLLM's `priority` (= −priority) to bodies
  uint64_t max_body_bytes = 16ull * 1024 * 1024;
  milliseconds connect_timeout{3000};
  milliseconds ttfb_timeout{120'000};        // request sent → first response byte
  milliseconds stream_idle_timeout{60'000};  // between two body chunks from upstream
  // Client side: the whole request head must arrive within header_timeout of its first byte
  // (408 after: slowloris); a request body may pause at most client_idle_timeout between two
  // reads (408 after); between requests a keep-alive connection may idle keepalive_timeout.
  milliseconds header_timeout{10'000};
  // Client connections served at once; more are answered 503 and closed at once. 0 = from the
  // open-files limit: (limit − a reserve for the control plane) / 2, since every client
  // connection may hold one upstream connection.
  int max_connections = 0;
  // Where /metrics, /v1/pool and /v1/capacity are served: "HOST:PORT" (port 0 = a free one),
  // or "public" for the public port (single-box use; the demo does this).
  std::string admin_address = "127.0.0.1:9090";
  // The ext_proc endpoint picker (Envoy's ExternalProcessor gRPC service, as the Gateway API
  // Inference Extension's Endpoint Picker Protocol uses it) on host:ext_proc_port; 0 = off.
  uint16_t ext_proc_port = 0;
  // The async processor's /metrics, shown on the dashboard ("" = not shown).
  std::string processor_metrics;
  // API keys and their tenants (auth/keys.h); "" = no authentication. Reloaded on SIGHUP.
  std::string api_keys_file;
  // TLS on the public listener: a PEM certificate chain and its key (reloaded on SIGHUP).
  std::string tls_cert, tls_key;
  // For https:// endpoints: the CA to verify them with ("" = the system store) and an
  // optional client certificate.
  ::tidegate::http::TlsOptions upstream_tls;
  // Request bodies held in memory by all connections together; a body that would go over it
  // is refused (503) before it is read. Each body is also bounded by max_body_bytes.
  uint64_t max_buffered_bytes = 1ull << 30;
  // Outlier ejection of endpoints whose requests time out, reset or answer garbage
  // (pool::Endpoint::OutlierConfig; failures 0 = off).
  pool::Endpoint::OutlierConfig outlier;
  // A streamed request with x-slo-ttft-ms waits at most max(1 s, factor × SLO) for its response
  // head (instead of ttfb_timeout) before the next endpoint is tried. 0 = always ttfb_timeout.
  double ttfb_slo_factor = 5;
  milliseconds client_idle_timeout{75'000};
  milliseconds keepalive_timeout{75'000};
  milliseconds drain_timeout{30'000};    // SIGTERM grace period
  milliseconds health_interval{1000};    // active /health probes; 0 disables
  size_t max_idle_upstream_conns = 256;  // per endpoint per event loop
  std::string log_level = "info";

  // Returns an error message, or empty when the configuration can start.
  std::string Validate() const;
  pool::SaturationConfig SaturationSettings() const;
};

// "round-robin" | "global-strict" and "fcfs" | "edf". Return an error message or empty.
std::string ParseFairness(const std::string& v, control::Fairness* out);
std::string ParseOrdering(const std::string& v, control::Ordering* out);

// Parses "NAME=PRIORITY" into cfg->objectives. Returns an error message or empty.
std::string AddObjective(const std::string& spec, GatewayConfig* cfg);

// Loads the file at `path` into `cfg` (keys absent in the file keep their current values).
// Returns an error message, or empty on success.
std::string LoadGatewayConfigYaml(const std::string& path, GatewayConfig* cfg);

}  // namespace tidegate::gateway
