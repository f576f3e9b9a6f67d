#include "gateway/config.h"

#include <yaml-cpp/yaml.h>

#include <charconv>
#include <set>
#include <sstream>

#include "common/units.h"
#include "discovery/endpoint_list.h"
#include "pool/engine_metrics.h"
#include "sched/config.h"

namespace tidegate::gateway {
namespace {

std::string CheckKeys(const YAML::Node& node, const std::string& where,
                      const std::set<std::string>& allowed) {
  if (!node.IsMap()) return where + " must be a mapping";
  for (const auto& kv : node) {
    auto key = kv.first.as<std::string>();
    if (!allowed.count(key)) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      return "unknown key '" + key + "' in " + where + " (allowed: " + list + ")";
    }
  }
  return {};
}

std::string ReadDuration(const YAML::Node& n, const std::string& key, milliseconds* out) {
  if (!n[key]) return {};
  auto d = ParseDuration(n[key].as<std::string>());
  if (!d)
    return "bad duration for '" + key + "': '" + n[key].as<std::string>() +
           "' (use e.g. 500ms, 3s, 2m)";
  *out = *d;
  return {};
}

}  // namespace

std::string GatewayConfig::Validate() const {
  if (endpoints.empty() && discovery.type.empty())
    return "no endpoints: give --endpoints host:port[,host:port...], 'endpoints:' in --config, or "
           "a discovery source (--discovery file:PATH | dns:NAME:PORT | kubernetes:POOL)";
  if (!endpoints.empty() && !discovery.type.empty() && discovery.type != "static")
    return "--endpoints and --discovery " + discovery.type +
           " go separately: the discovery source decides the endpoints";
  if (threads < 0 || threads > 256) return "threads must be between 0 (= cores) and 256";
  if (max_body_bytes < 1024) return "max body size must be at least 1 KiB";
  if (connect_timeout.count() <= 0) return "connect timeout must be positive";
  if (ttfb_timeout.count() <= 0) return "time-to-first-byte timeout must be positive";
  if (stream_idle_timeout.count() <= 0) return "stream idle timeout must be positive";
  if (max_connections < 0) return "max_connections must be ≥ 0 (0 = from the open-files limit)";
  if (outlier.failures < 0) return "outlier_detection.failures must be ≥ 0 (0 = off)";
  if (outlier.window.count() <= 0 || outlier.base.count() <= 0 || outlier.max < outlier.base)
    return "outlier_detection: window and base_ejection must be positive, max_ejection ≥ base";
  if (header_timeout.count() <= 0 || client_idle_timeout.count() <= 0 ||
      keepalive_timeout.count() <= 0)
    return "client timeouts (header, client idle, keep-alive idle) must be positive";
  if (queue_threshold <= 0 || kv_threshold <= 0) return "saturation thresholds must be positive";
  if (max_in_flight_per_endpoint < 0) return "the in-flight bound per endpoint must be ≥ 0";
  if (flow.limits.max_requests == 0 || flow.limits.band_max_requests == 0)
    return "flow control queue bounds must be at least 1 request";
  if (flow.ttl.count() <= 0) return "flow control TTL must be positive";
  for (const auto& [p, ttl] : flow.band_ttl)
    if (ttl.count() <= 0)
      return "flow control TTL of band " + std::to_string(p) + " must be positive";
  if (!default_objective.empty() && !objectives.count(default_objective))
    return "default objective '" + default_objective + "' is not a configured objective";
  for (const auto& ep : endpoints) {
    const std::string& engine = ep.engine.empty() ? default_engine : ep.engine;
    if (!pool::IsAutoEngine(engine) && !pool::EngineFromName(engine)) {
      std::string names = "auto";
      for (const auto& n : pool::EngineNames()) names += ", " + n;
      return "endpoint " + ep.Address() + ": unknown engine '" + engine + "' (known: " + names +
             ")";
    }
  }
  return {};
}

pool::SaturationConfig GatewayConfig::SaturationSettings() const {
  pool::SaturationConfig c;
  c.queue_threshold = queue_threshold;
  c.kv_threshold = kv_threshold;
  c.stale_after = stale_after;
  c.max_in_flight_per_endpoint = max_in_flight_per_endpoint;
  return c;
}

std::string ParseFairness(const std::string& v, control::Fairness* out) {
  if (v == "round-robin") {
    *out = control::Fairness::kRoundRobin;
  } else if (v == "global-strict") {
    *out = control::Fairness::kGlobalStrict;
  } else {
    return "fairness must be round-robin or global-strict, not '" + v + "'";
  }
  return {};
}

std::string ParseOrdering(const std::string& v, control::Ordering* out) {
  if (v == "fcfs") {
    *out = control::Ordering::kFcfs;
  } else if (v == "edf") {
    *out = control::Ordering::kEdf;
  } else {
    return "order must be fcfs or edf, not '" + v + "'";
  }
  return {};
}

std::string AddObjective(const std::string& spec, GatewayConfig* cfg) {
  auto eq = spec.find('=');
  if (eq == std::string::npos || eq == 0) return "expected NAME=PRIORITY, e.g. batch=-1";
  std::string name = spec.substr(0, eq), value = spec.substr(eq + 1);
  int priority = 0;
  auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), priority);
  if (ec != std::errc() || p != value.data() + value.size())
    return "priority of objective '" + name + "' must be an integer";
  cfg->objectives[name] = priority;
  return {};
}

std::string LoadGatewayConfigYaml(const std::string& path, GatewayConfig* cfg) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    return "cannot read config file '" + path + "'";
  } catch (const YAML::Exception& e) {
    return "config file '" + path + "' is not valid YAML: " + e.what();
  }
  try {
    if (root.IsNull()) return {};
    if (auto err = CheckKeys(root, "the config file",
                             {"gateway", "endpoints", "discovery", "objectives",
                              "default_objective", "saturation", "scheduling", "flow_control"});
        !err.empty())
      return err;
    if (auto g = root["gateway"]) {
      if (auto err = CheckKeys(
              g, "'gateway'",
              {"host", "port", "threads", "policy", "max_body_bytes", "timeouts", "health_interval",
               "max_idle_upstream_conns", "log_level", "engine", "scrape_interval", "stale_after",
               "forward_priority", "max_connections", "ext_proc_port"});
          !err.empty())
        return err;
      if (g["host"]) cfg->host = g["host"].as<std::string>();
      if (g["port"]) {
        int p = g["port"].as<int>();
        if (p < 0 || p > 65535) return "gateway.port must be 0..65535";
        cfg->port = static_cast<uint16_t>(p);
      }
      if (g["ext_proc_port"]) {
        int p = g["ext_proc_port"].as<int>();
        if (p < 0 || p > 65535) return "gateway.ext_proc_port must be 0..65535 (0 = off)";
        cfg->ext_proc_port = static_cast<uint16_t>(p);
      }
      if (g["threads"]) cfg->threads = g["threads"].as<int>();
      if (g["policy"]) cfg->policy = g["policy"].as<std::string>();
      if (g["log_level"]) cfg->log_level = g["log_level"].as<std::string>();
      if (g["engine"]) cfg->default_engine = g["engine"].as<std::string>();
      if (g["forward_priority"]) cfg->forward_priority = g["forward_priority"].as<bool>();
      if (g["max_connections"]) cfg->max_connections = g["max_connections"].as<int>();
      if (g["admin_address"]) cfg->admin_address = g["admin_address"].as<std::string>();
      if (g["processor_metrics"]) cfg->processor_metrics = g["processor_metrics"].as<std::string>();
      if (g["api_keys"]) cfg->api_keys_file = g["api_keys"].as<std::string>();
      if (g["tls_cert"]) cfg->tls_cert = g["tls_cert"].as<std::string>();
      if (g["tls_key"]) cfg->tls_key = g["tls_key"].as<std::string>();
      if (g["ttfb_slo_factor"]) cfg->ttfb_slo_factor = g["ttfb_slo_factor"].as<double>();
      if (auto od = g["outlier_detection"]) {
        if (auto err = CheckKeys(od, "'gateway.outlier_detection'",
                                 {"failures", "window", "base_ejection", "max_ejection"});
            !err.empty())
          return err;
        if (od["failures"]) cfg->outlier.failures = od["failures"].as<int>();
        for (auto [key, field] : {std::pair{"window", &cfg->outlier.window},
                                  std::pair{"base_ejection", &cfg->outlier.base},
                                  std::pair{"max_ejection", &cfg->outlier.max}}) {
          std::chrono::milliseconds ms{0};
          if (!od[key]) continue;
          if (auto err = ReadDuration(od, key, &ms); !err.empty())
            return "gateway.outlier_detection: " + err;
          *field = ms;
        }
      }
      if (auto err = ReadDuration(g, "scrape_interval", &cfg->scrape_interval); !err.empty())
        return "gateway: " + err;
      if (auto err = ReadDuration(g, "stale_after", &cfg->stale_after); !err.empty())
        return "gateway: " + err;
      if (g["max_idle_upstream_conns"])
        cfg->max_idle_upstream_conns = g["max_idle_upstream_conns"].as<size_t>();
      if (g["max_body_bytes"]) {
        auto b = ParseBytes(g["max_body_bytes"].as<std::string>());
        if (!b) return "bad size for gateway.max_body_bytes (use e.g. 16MiB)";
        cfg->max_body_bytes = *b;
      }
      if (g["max_buffered_bytes"]) {
        auto b = ParseBytes(g["max_buffered_bytes"].as<std::string>());
        if (!b || *b < 1024) return "bad size for gateway.max_buffered_bytes (use e.g. 1GiB)";
        cfg->max_buffered_bytes = *b;
      }
      if (auto err = ReadDuration(g, "health_interval", &cfg->health_interval); !err.empty())
        return "gateway: " + err;
      if (auto t = g["timeouts"]) {
        if (auto err = CheckKeys(t, "'gateway.timeouts'",
                                 {"connect", "ttfb", "stream_idle", "client_idle", "header",
                                  "keepalive_idle", "drain"});
            !err.empty())
          return err;
        for (auto [key, field] :
             {std::pair{"connect", &cfg->connect_timeout}, std::pair{"ttfb", &cfg->ttfb_timeout},
              std::pair{"stream_idle", &cfg->stream_idle_timeout},
              std::pair{"client_idle", &cfg->client_idle_timeout},
              std::pair{"header", &cfg->header_timeout},
              std::pair{"keepalive_idle", &cfg->keepalive_timeout},
              std::pair{"drain", &cfg->drain_timeout}}) {
          if (auto err = ReadDuration(t, key, field); !err.empty())
            return "gateway.timeouts: " + err;
        }
      }
    }
    if (auto eps = root["endpoints"]) {
      if (auto err = discovery::ParseEndpointList(eps, &cfg->endpoints); !err.empty()) return err;
    }
    if (auto d = root["discovery"]) {
      if (!d.IsMap() || !d["type"])
        return "'discovery' must be a map with a 'type' (one of: static, file, dns, kubernetes) "
               "and that source's settings";
      discovery::SourceSpec spec;
      for (const auto& kv : d) {
        const std::string key = kv.first.as<std::string>();
        std::string value;
        if (kv.second.IsScalar()) {
          value = kv.second.as<std::string>();
        } else if (kv.second.IsSequence()) {
          for (const auto& item : kv.second) {
            if (!item.IsScalar()) return "discovery." + key + ": expected a list of strings";
            value += (value.empty() ? "" : ";") + item.as<std::string>();
          }
        } else {
          return "discovery." + key + ": expected a string or a list of strings";
        }
        if (key == "type") {
          spec.type = value;
        } else {
          spec.params[key] = value;
        }
      }
      cfg->discovery = std::move(spec);
    }
    if (auto objs = root["objectives"]) {
      if (!objs.IsSequence()) return "'objectives' must be a list of {name, priority}";
      for (const auto& o : objs) {
        if (auto err = CheckKeys(o, "an objective", {"name", "priority"}); !err.empty()) return err;
        if (!o["name"]) return "an objective needs a 'name'";
        cfg->objectives[o["name"].as<std::string>()] = o["priority"] ? o["priority"].as<int>() : 0;
      }
    }
    if (root["default_objective"])
      cfg->default_objective = root["default_objective"].as<std::string>();
    if (auto sat = root["saturation"]) {
      if (auto err = CheckKeys(sat, "'saturation'",
                               {"queue_threshold", "kv_threshold", "max_in_flight_per_endpoint"});
          !err.empty())
        return err;
      if (sat["queue_threshold"]) cfg->queue_threshold = sat["queue_threshold"].as<double>();
      if (sat["kv_threshold"]) cfg->kv_threshold = sat["kv_threshold"].as<double>();
      if (sat["max_in_flight_per_endpoint"])
        cfg->max_in_flight_per_endpoint = sat["max_in_flight_per_endpoint"].as<int>();
    }
    if (auto sched = root["scheduling"]) {
      sched::Profile profile;
      if (auto err = sched::ParseSchedulerProfile(sched, &profile); !err.empty())
        return "scheduling: " + err;
      // One detector: GIE's saturationDetector and our `saturation:` / `gateway.stale_after`
      // set the same figures, so two different values are a mistake worth stopping for.
      const auto& o = profile.saturation;
      auto agree = [&](const char* ours, double mine, const char* theirs,
                       const std::optional<double>& v, bool ours_set) -> std::string {
        if (!v) return {};
        if (ours_set && *v != mine)
          return std::string("saturation: ") + ours + " is " + std::to_string(mine) +
                 " but scheduling.saturationDetector." + theirs + " is " + std::to_string(*v) +
                 "; set it in one place";
        return {};
      };
      const auto sat = root["saturation"];
      if (auto e = agree("queue_threshold", cfg->queue_threshold, "queueDepthThreshold",
                         o.queue_threshold, sat && sat["queue_threshold"]);
          !e.empty())
        return e;
      if (auto e = agree("kv_threshold", cfg->kv_threshold, "kvCacheUtilThreshold", o.kv_threshold,
                         sat && sat["kv_threshold"]);
          !e.empty())
        return e;
      const auto g = root["gateway"];
      if (o.stale_after && g && g["stale_after"] && *o.stale_after != Nanos(cfg->stale_after))
        return "gateway.stale_after and scheduling.saturationDetector.metricsStalenessThreshold "
               "disagree; set it in one place";
      if (o.queue_threshold) cfg->queue_threshold = *o.queue_threshold;
      if (o.kv_threshold) cfg->kv_threshold = *o.kv_threshold;
      if (o.stale_after)
        cfg->stale_after = std::chrono::duration_cast<milliseconds>(*o.stale_after);
      std::ostringstream out;
      out << sched;
      cfg->scheduler_yaml = out.str();
    }
    if (auto fc = root["flow_control"]) {
      if (auto err = CheckKeys(fc, "'flow_control'",
                               {"enabled", "max_requests", "max_bytes", "band_max_requests",
                                "band_max_bytes", "ttl", "bands", "fairness", "order",
                                "max_in_flight_per_endpoint", "evict_sheddable_after"});
          !err.empty())
        return err;
      auto& f = cfg->flow;
      if (fc["enabled"]) f.enabled = fc["enabled"].as<bool>();
      auto bytes = [&](const char* key, uint64_t* out) -> std::string {
        if (!fc[key]) return {};
        auto b = ParseBytes(fc[key].as<std::string>());
        if (!b) return std::string("flow_control.") + key + ": expected a size such as 256MiB";
        *out = *b;
        return {};
      };
      if (fc["max_requests"]) f.limits.max_requests = fc["max_requests"].as<size_t>();
      if (fc["band_max_requests"])
        f.limits.band_max_requests = fc["band_max_requests"].as<size_t>();
      if (auto e = bytes("max_bytes", &f.limits.max_bytes); !e.empty()) return e;
      if (auto e = bytes("band_max_bytes", &f.limits.band_max_bytes); !e.empty()) return e;
      milliseconds ms{0};
      if (fc["ttl"]) {
        if (auto e = ReadDuration(fc, "ttl", &ms); !e.empty()) return "flow_control: " + e;
        f.ttl = ms;
      }
      if (fc["evict_sheddable_after"]) {
        if (auto e = ReadDuration(fc, "evict_sheddable_after", &ms); !e.empty())
          return "flow_control: " + e;
        f.evict_sheddable_after = ms;
      }
      if (fc["fairness"])
        if (auto e = ParseFairness(fc["fairness"].as<std::string>(), &f.fairness); !e.empty())
          return "flow_control: " + e;
      if (fc["order"])
        if (auto e = ParseOrdering(fc["order"].as<std::string>(), &f.ordering); !e.empty())
          return "flow_control: " + e;
      if (fc["max_in_flight_per_endpoint"])
        cfg->max_in_flight_per_endpoint = fc["max_in_flight_per_endpoint"].as<int>();
      if (auto bands = fc["bands"]) {
        if (!bands.IsSequence()) return "flow_control.bands must be a list of {priority, ttl}";
        for (const auto& b : bands) {
          if (auto err = CheckKeys(b, "a flow_control band", {"priority", "ttl"}); !err.empty())
            return err;
          if (!b["priority"] || !b["ttl"]) return "a flow_control band needs priority and ttl";
          if (auto e = ReadDuration(b, "ttl", &ms); !e.empty()) return "flow_control.bands: " + e;
          f.band_ttl[b["priority"].as<int>()] = ms;
        }
      }
    }
  } catch (const YAML::Exception& e) {
    return "config file '" + path + "': " + e.what();
  }
  return {};
}

}  // namespace tidegate::gateway
