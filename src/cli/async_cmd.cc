// `tidegate async`: flags and config file → ProcessorConfig → Processor.
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <iostream>
#include <set>

#include "async/processor.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "common/units.h"

namespace tidegate::cli {

namespace {

// Loads `async:` (or top-level) keys of a YAML file into cfg. Returns an error message or "".
std::string LoadAsyncConfigYaml(const std::string& path, async::ProcessorConfig* cfg) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const std::exception& e) {
    return "cannot read config '" + path + "': " + e.what();
  }
  YAML::Node n = root["async"] ? root["async"] : root;
  if (!n.IsMap()) return "config '" + path + "': expected a mapping (optionally under 'async:')";
  static const std::set<std::string> kKeys = {"gateway",
                                              "requests",
                                              "responses",
                                              "batch_responses",
                                              "objective",
                                              "max_inflight",
                                              "min_window",
                                              "initial_window",
                                              "max_held",
                                              "pull_batch",
                                              "lease",
                                              "capacity_interval",
                                              "request_timeout",
                                              "backoff_base",
                                              "backoff_max",
                                              "max_attempts",
                                              "default_deadline",
                                              "drain_timeout",
                                              "metrics_host",
                                              "metrics_port",
                                              "workers",
                                              "journal",
                                              "allow_message_headers",
                                              "escalation_objective",
                                              "escalation_rate",
                                              "max_escalated"};
  try {
    for (const auto& kv : n) {
      std::string key = kv.first.as<std::string>();
      if (!kKeys.count(key))
        return "config '" + path + "': unknown key '" + key + "' (known: gateway, requests, " +
               "responses, objective, max_inflight, lease, ...; see tidegate async --help)";
      const YAML::Node& v = kv.second;
      auto dur = [&](std::chrono::milliseconds* out) -> std::string {
        auto parsed = ParseDuration(v.as<std::string>());
        if (!parsed)
          return "config '" + path + "': " + key + ": not a duration (e.g. 500ms, 30s, 1h)";
        *out = *parsed;
        return "";
      };
      std::string err;
      if (key == "gateway")
        cfg->gateway = v.as<std::string>();
      else if (key == "requests")
        cfg->requests = v.as<std::string>();
      else if (key == "responses")
        cfg->responses = v.as<std::string>();
      else if (key == "batch_responses")
        cfg->batch_responses = v.as<std::string>();
      else if (key == "objective")
        cfg->objective = v.as<std::string>();
      else if (key == "escalation_objective")
        cfg->escalation_objective = v.as<std::string>();
      else if (key == "escalation_rate")
        cfg->escalation_rate = v.as<double>();
      else if (key == "max_escalated")
        cfg->max_escalated = v.as<int>();
      else if (key == "gateway_admin")
        cfg->gateway_admin = v.as<std::string>();
      else if (key == "allow_message_headers") {
        if (!v.IsSequence())
          return "config '" + path + "': allow_message_headers must be a list of header names";
        for (const auto& h : v) cfg->allow_message_headers.push_back(h.as<std::string>());
      } else if (key == "max_inflight")
        cfg->max_inflight = v.as<int>();
      else if (key == "min_window")
        cfg->min_window = v.as<int>();
      else if (key == "initial_window")
        cfg->initial_window = v.as<int>();
      else if (key == "max_held")
        cfg->max_held = v.as<int>();
      else if (key == "pull_batch")
        cfg->pull_batch = v.as<int>();
      else if (key == "max_attempts")
        cfg->max_attempts = v.as<int>();
      else if (key == "metrics_host")
        cfg->metrics_host = v.as<std::string>();
      else if (key == "metrics_port")
        cfg->metrics_port = v.as<int>();
      else if (key == "workers")
        cfg->workers = v.as<int>();
      else if (key == "lease")
        err = dur(&cfg->lease);
      else if (key == "capacity_interval")
        err = dur(&cfg->capacity_interval);
      else if (key == "request_timeout")
        err = dur(&cfg->request_timeout);
      else if (key == "backoff_base")
        err = dur(&cfg->backoff_base);
      else if (key == "backoff_max")
        err = dur(&cfg->backoff_max);
      else if (key == "default_deadline")
        err = dur(&cfg->default_deadline);
      else if (key == "drain_timeout")
        err = dur(&cfg->drain_timeout);
      if (!err.empty()) return err;
    }
  } catch (const YAML::Exception& e) {
    return "config '" + path + "': " + e.what();
  }
  return "";
}

}  // namespace

int RunAsync(const std::vector<std::string>& args) {
  async::ProcessorConfig cfg;
  for (const auto& path : ConfigFlagValues(args)) {
    if (auto err = LoadAsyncConfigYaml(path, &cfg); !err.empty()) {
      std::cerr << "tidegate async: " << err << "\n";
      return 2;
    }
  }

  const async::ProcessorConfig d;
  auto ms = [](std::chrono::milliseconds v) { return FormatDuration(v); };
  std::string log_level = "info";

  FlagSet flags(
      "tidegate async",
      "Runs the async processor: pulls request messages from a queue, sends them through the\n"
      "gateway as sheddable traffic when the pool has room (the gateway's /v1/capacity plus an\n"
      "AIMD window), earliest deadline first, retries what is shed (429) or fails (5xx) with\n"
      "back-off until the deadline, and publishes one result per request on the response queue,\n"
      "acknowledging a request only after its result is published. SIGTERM hands back what is\n"
      "not finished. Message formats: llm-d-async {id, deadline, payload, headers, path} or\n"
      "OpenAI Batch {custom_id, url, body}; results {id, status_code, payload, error_code,\n"
      "error_message} with error_code DEADLINE_EXCEEDED, INVALID_REQUEST, INFERENCE_ERROR or\n"
      "SHED_EXHAUSTED.\n\n"
      "queue URIs: sqlite:///path/q.db?queue=NAME (embedded),\n"
      "            pubsub://projects/P/subscriptions/S (consume), pubsub://projects/P/topics/T "
      "(publish)\n\n"
      "example: tidegate async --gateway http://127.0.0.1:8080 \\\n"
      "           --requests 'sqlite:///tmp/tidegate.db?queue=requests' \\\n"
      "           --responses 'sqlite:///tmp/tidegate.db?queue=results'");
  flags.Add("config", "FILE",
            "YAML file with the same settings (keys as the flags with _ for -, optionally under "
            "'async:'); flags override it",
            "none", [](const std::string&) { return std::string(); });
  flags.Add("gateway", "URL", "the gateway's base URL", d.gateway, [&](const std::string& v) {
    cfg.gateway = v;
    return std::string();
  });
  flags.Add("requests", "URI", "queue to consume request messages from (required)", "none",
            [&](const std::string& v) {
              cfg.requests = v;
              return std::string();
            });
  flags.Add("responses", "URI", "queue to publish result messages on (required)", "none",
            [&](const std::string& v) {
              cfg.responses = v;
              return std::string();
            });
  flags.Add("batch-responses", "URI",
            "queue for the results of OpenAI Batch API lines (the gateway's --batch-results); "
            "without it they go to --responses",
            "none", [&](const std::string& v) {
              cfg.batch_responses = v;
              return std::string();
            });
  flags.Add("objective", "NAME",
            "x-gateway-inference-objective sent with each request (a sheddable objective)",
            d.objective, [&](const std::string& v) {
              cfg.objective = v;
              return std::string();
            });
  flags.Add("escalation-objective", "NAME",
            "objective of a message escalated because its projected finish passed its "
            "soft_deadline (pick one whose priority is not above your real-time objectives; "
            "'' turns escalation off)",
            d.escalation_objective, [&](const std::string& v) {
              cfg.escalation_objective = v;
              return std::string();
            });
  flags.Add("escalation-rate", "N", "most escalations per second (a token bucket, burst max(1, N))",
            "2", DoubleSetter(&cfg.escalation_rate, 0, 1e6));
  flags.Add("max-escalated", "N", "most escalated requests in flight at once",
            std::to_string(d.max_escalated), IntSetter(&cfg.max_escalated, 1, 100000));
  flags.Add("escalation-warmup", "DURATION",
            "how long the processor measures its service rate before it projects finishes "
            "(and escalates)",
            FormatDuration(d.escalation_warmup), [&](const std::string& v) -> std::string {
              auto x = ParseDuration(v);
              if (!x || x->count() < 0) return "expected a duration such as 10s";
              cfg.escalation_warmup = *x;
              return {};
            });
  flags.Add("api-key-env", "VAR",
            "environment variable holding the processor's API key for the gateway (sent as "
            "Authorization: Bearer; the gateway's --api-keys names its tenant)",
            "none", [&](const std::string& v) -> std::string {
              const char* key = std::getenv(v.c_str());
              if (!key || !*key) return "environment variable " + v + " is not set";
              cfg.api_key = key;
              return {};
            });
  flags.Add("gateway-admin", "URL",
            "the gateway's admin listener, for /v1/capacity (default: the --gateway URL when it "
            "serves /v1/capacity, else port 9090 of its host)",
            "auto", [&](const std::string& v) -> std::string {
              if (v.empty()) return "must not be empty";
              cfg.gateway_admin = v;
              return {};
            });
  flags.Add("allow-message-header", "NAME",
            "let messages set this header (repeatable): by default a message cannot set the "
            "objective (x-gateway-inference-objective, x-llm-d-inference-objective), "
            "authorization, proxy-authorization or x-request-id; such headers are dropped, "
            "counted in tidegate_async_message_headers_dropped_total and logged",
            "none", [&](const std::string& v) -> std::string {
              if (v.empty()) return "must not be empty";
              cfg.allow_message_headers.push_back(v);
              return {};
            });
  flags.Add("max-inflight", "N", "upper bound of the dispatch window",
            std::to_string(d.max_inflight), IntSetter(&cfg.max_inflight, 1, 100000));
  flags.Add("min-window", "N", "lower bound of the dispatch window", std::to_string(d.min_window),
            IntSetter(&cfg.min_window, 1, 100000));
  flags.Add("initial-window", "N", "dispatch window at start", std::to_string(d.initial_window),
            IntSetter(&cfg.initial_window, 1, 100000));
  flags.Add("max-held", "N", "most messages leased at once (waiting + in flight)",
            std::to_string(d.max_held), IntSetter(&cfg.max_held, 1, 1000000));
  flags.Add("pull-batch", "N", "most messages per pull", std::to_string(d.pull_batch),
            IntSetter(&cfg.pull_batch, 1, 1000));
  flags.Add("lease", "DURATION",
            "lease (ack deadline) on each held message, extended every third of it; Pub/Sub "
            "clamps it to 10s..600s",
            ms(d.lease), DurationSetter(&cfg.lease));
  flags.Add("capacity-interval", "DURATION",
            "how often to read the gateway's /v1/capacity (0 = never)", ms(d.capacity_interval),
            DurationSetter(&cfg.capacity_interval));
  flags.Add("request-timeout", "DURATION", "longest single attempt (the deadline also bounds it)",
            ms(d.request_timeout), DurationSetter(&cfg.request_timeout));
  flags.Add("backoff-base", "DURATION", "first retry back-off (doubles per attempt, with jitter)",
            ms(d.backoff_base), DurationSetter(&cfg.backoff_base));
  flags.Add("backoff-max", "DURATION", "longest retry back-off (Retry-After may exceed it)",
            ms(d.backoff_max), DurationSetter(&cfg.backoff_max));
  flags.Add("max-attempts", "N", "attempts per request before giving up (0 = until the deadline)",
            std::to_string(d.max_attempts), IntSetter(&cfg.max_attempts, 0, 1000000));
  flags.Add("default-deadline", "DURATION",
            "deadline for messages that carry none, counted from their publication",
            ms(d.default_deadline), DurationSetter(&cfg.default_deadline));
  flags.Add("drain-timeout", "DURATION",
            "on SIGTERM, how long in-flight requests may finish before they are handed back",
            ms(d.drain_timeout), DurationSetter(&cfg.drain_timeout));
  flags.Add("metrics-host", "HOST", "address for /metrics and /healthz", d.metrics_host,
            [&](const std::string& v) {
              cfg.metrics_host = v;
              return std::string();
            });
  flags.Add("metrics-port", "PORT", "port for /metrics and /healthz (0 = any free port, -1 = off)",
            std::to_string(d.metrics_port), IntSetter(&cfg.metrics_port, -1, 65535));
  flags.Add("workers", "N", "threads for blocking queue calls", std::to_string(d.workers),
            IntSetter(&cfg.workers, 1, 64));
  flags.Add("progress-interval", "DURATION", "how often to log progress (0 = never)",
            ms(d.progress_interval), DurationSetter(&cfg.progress_interval));
  flags.Add("journal", "auto|off|FILE",
            "local record of results published but not yet acknowledged, so a crash leads to an "
            "identical duplicate at worst (auto: tidegate-async-journal.db unless both queues "
            "share one SQLite file, where publish+ack is atomic)",
            d.journal, [&](const std::string& v) {
              cfg.journal = v;
              return std::string();
            });
  flags.Add("log-level", "LEVEL", "trace, debug, info, warn, error or off", log_level,
            LogLevelSetter(&log_level));
  if (auto rc = ParseCommandLine(flags, args)) return *rc;
  if (!flags.positional().empty()) {
    std::cerr << "tidegate async: unexpected argument '" << flags.positional()[0]
              << "' (see tidegate async --help)\n";
    return 2;
  }
  SetLogLevel(log_level);
  if (auto err = cfg.Validate(); !err.empty()) {
    std::cerr << "tidegate async: " << err << " (see tidegate async --help)\n";
    return 2;
  }
  async::Processor processor(cfg);
  if (auto err = processor.Start(); !err.empty()) {
    std::cerr << "tidegate async: " << err << "\n";
    return 2;
  }
  return processor.Run(true);
}

}  // namespace tidegate::cli
