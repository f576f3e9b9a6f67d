#include "discovery/endpoint_list.h"

#include <yaml-cpp/yaml.h>

#include <set>

namespace tidegate::discovery {
namespace {

std::string UnknownKey(const YAML::Node& map, const std::set<std::string>& known) {
  for (const auto& kv : map) {
    const std::string key = kv.first.as<std::string>();
    if (!known.count(key)) {
      std::string names;
      for (const auto& k : known) names += (names.empty() ? "" : ", ") + k;
      return "unknown key '" + key + "' in an endpoint (known: " + names + ")";
    }
  }
  return {};
}

}  // namespace

std::string ParseEndpointList(const YAML::Node& list, std::vector<pool::EndpointConfig>* out) {
  std::vector<pool::EndpointConfig> eps;
  if (list.IsNull()) {
    *out = {};
    return {};
  }
  if (!list.IsSequence()) return "'endpoints' must be a list";
  try {
    for (const auto& e : list) {
      std::string text, engine, metrics_path;
      int metrics_port = 0;
      if (e.IsScalar()) {
        text = e.as<std::string>();
      } else if (e.IsMap()) {
        if (auto err = UnknownKey(e, {"address", "engine", "metrics_port", "metrics_path"});
            !err.empty())
          return err;
        if (!e["address"]) return "an endpoint needs 'address: host:port'";
        text = e["address"].as<std::string>();
        if (e["engine"]) engine = e["engine"].as<std::string>();
        if (e["metrics_port"]) {
          metrics_port = e["metrics_port"].as<int>();
          if (metrics_port < 1 || metrics_port > 65535)
            return "endpoint '" + text + "': metrics_port must be 1..65535";
        }
        if (e["metrics_path"]) {
          metrics_path = e["metrics_path"].as<std::string>();
          if (metrics_path.empty() || metrics_path[0] != '/')
            return "endpoint '" + text + "': metrics_path must start with '/'";
        }
      } else {
        return "each endpoint must be 'host:port' or {address: host:port}";
      }
      pool::EndpointConfig ep;
      if (auto err = pool::ParseEndpoint(text, &ep); !err.empty())
        return "endpoint '" + text + "': " + err;
      ep.engine = engine;
      ep.metrics_port = static_cast<uint16_t>(metrics_port);
      ep.metrics_path = metrics_path;
      eps.push_back(std::move(ep));
    }
  } catch (const YAML::Exception& e) {
    return std::string("bad endpoint entry: ") + e.what();
  }
  *out = std::move(eps);
  return {};
}

std::string ParseEndpointText(const std::string& text, std::vector<pool::EndpointConfig>* out) {
  std::vector<pool::EndpointConfig> eps;
  std::string item;
  auto flush = [&]() -> std::string {
    if (item.empty()) return {};
    pool::EndpointConfig ep;
    if (auto err = pool::ParseEndpoint(item, &ep); !err.empty())
      return "endpoint '" + item + "': " + err;
    eps.push_back(std::move(ep));
    item.clear();
    return {};
  };
  for (char c : text) {
    if (c == ',' || c == ';' || c == ' ' || c == '\t' || c == '\n') {
      if (auto err = flush(); !err.empty()) return err;
    } else {
      item += c;
    }
  }
  if (auto err = flush(); !err.empty()) return err;
  *out = std::move(eps);
  return {};
}

std::string LoadEndpointFile(const std::string& path, std::vector<pool::EndpointConfig>* out) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    return "cannot read '" + path + "'";
  } catch (const YAML::Exception& e) {
    return "'" + path + "' is not valid YAML: " + e.what();
  }
  if (root.IsMap()) {
    for (const auto& kv : root)
      if (kv.first.as<std::string>() != "endpoints")
        return "'" + path + "': unknown key '" + kv.first.as<std::string>() +
               "' (expected a list of endpoints, or 'endpoints:')";
    root = root["endpoints"];
  }
  if (auto err = ParseEndpointList(root, out); !err.empty()) return "'" + path + "': " + err;
  return {};
}

std::vector<pool::EndpointConfig> EndpointsAt(
    const std::vector<std::pair<std::string, uint16_t>>& addresses, const std::string& engine,
    uint16_t metrics_port) {
  std::vector<pool::EndpointConfig> eps;
  eps.reserve(addresses.size());
  for (const auto& [host, port] : addresses) {
    pool::EndpointConfig ep;
    ep.host = host;
    ep.port = port;
    ep.engine = engine;
    ep.metrics_port = metrics_port;
    eps.push_back(std::move(ep));
  }
  return eps;
}

}  // namespace tidegate::discovery
