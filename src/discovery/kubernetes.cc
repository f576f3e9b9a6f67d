// discovery/kubernetes.cc — the pure parts of the kubernetes source (see kubernetes.h).
#include "discovery/kubernetes.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <sstream>

namespace tidegate::discovery::k8s {
namespace {

using nlohmann::json;

const json* Find(const json& j, std::initializer_list<const char*> path) {
  const json* cur = &j;
  for (const char* key : path) {
    if (!cur->is_object()) return nullptr;
    auto it = cur->find(key);
    if (it == cur->end()) return nullptr;
    cur = &*it;
  }
  return cur;
}

std::string StringAt(const json& j, std::initializer_list<const char*> path) {
  const json* v = Find(j, path);
  return v && v->is_string() ? v->get<std::string>() : std::string();
}

bool ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return true;
}

std::string Resolve(const std::string& dir, const std::string& path) {
  if (path.empty() || path[0] == '/' || dir.empty()) return path;
  return dir + "/" + path;
}

// A named entry of a kubeconfig list (clusters, users, contexts): its inner map.
YAML::Node Named(const YAML::Node& list, const std::string& name, const char* inner) {
  if (!list || !list.IsSequence()) return YAML::Node();
  for (const auto& item : list) {
    if (item.IsMap() && item["name"] && item["name"].as<std::string>() == name) return item[inner];
  }
  return YAML::Node();
}

std::string Scalar(const YAML::Node& n, const char* key) {
  if (!n || !n.IsMap() || !n[key] || !n[key].IsScalar()) return {};
  return n[key].as<std::string>();
}

}  // namespace

std::vector<uint16_t> ParsePortList(std::string_view text) {
  std::vector<uint16_t> out;
  while (!text.empty()) {
    const size_t comma = text.find(',');
    std::string_view item = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    unsigned v = 0;
    auto [p, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
    if (ec == std::errc() && p == item.data() + item.size() && v > 0 && v <= 65535)
      out.push_back(static_cast<uint16_t>(v));
  }
  return out;
}

std::string ParsePoolSpec(const json& pool, PoolSpec* out) {
  PoolSpec s;
  const json* labels = Find(pool, {"spec", "selector", "matchLabels"});
  if (labels && labels->is_object()) {
    for (const auto& [k, v] : labels->items()) {
      if (!v.is_string()) return "spec.selector.matchLabels." + k + " is not a string";
      s.match_labels[k] = v.get<std::string>();
    }
  } else if (labels && !labels->is_null()) {
    return "spec.selector.matchLabels is not a map";
  }
  const json* ports = Find(pool, {"spec", "targetPorts"});
  if (!ports || !ports->is_array() || ports->empty()) return "spec.targetPorts is missing or empty";
  for (const auto& p : *ports) {
    const json* n = Find(p, {"number"});
    if (!n || !n->is_number_integer() || n->get<long>() < 1 || n->get<long>() > 65535)
      return "spec.targetPorts[].number must be a port number (1-65535)";
    const auto port = static_cast<uint16_t>(n->get<long>());
    if (std::find(s.target_ports.begin(), s.target_ports.end(), port) == s.target_ports.end())
      s.target_ports.push_back(port);
  }
  *out = std::move(s);
  return {};
}

PodState ParsePod(const json& pod) {
  PodState s;
  s.name = StringAt(pod, {"metadata", "name"});
  s.ip = StringAt(pod, {"status", "podIP"});
  const json* del = Find(pod, {"metadata", "deletionTimestamp"});
  s.deleting = del && !del->is_null();
  if (const json* conds = Find(pod, {"status", "conditions"}); conds && conds->is_array()) {
    for (const auto& c : *conds) {
      if (StringAt(c, {"type"}) == "Ready") s.ready = StringAt(c, {"status"}) == "True";
    }
  }
  if (const json* ann = Find(pod, {"metadata", "annotations"}); ann && ann->is_object()) {
    for (const char* key : {"llm-d.ai/active-ports", "inference.networking.k8s.io/active-ports"}) {
      auto it = ann->find(key);
      if (it != ann->end() && it->is_string()) {
        s.active_ports = ParsePortList(it->get<std::string>());
        break;
      }
    }
  }
  return s;
}

std::vector<std::pair<std::string, uint16_t>> PodEndpoints(
    const PodState& pod, const std::vector<uint16_t>& target_ports) {
  std::vector<std::pair<std::string, uint16_t>> out;
  if (pod.deleting || !pod.ready || pod.ip.empty()) return out;
  for (uint16_t port : target_ports) {
    if (pod.active_ports && std::find(pod.active_ports->begin(), pod.active_ports->end(), port) ==
                                pod.active_ports->end())
      continue;
    out.emplace_back(pod.ip, port);
  }
  return out;
}

std::string LabelSelector(const std::map<std::string, std::string>& labels) {
  std::string out;
  for (const auto& [k, v] : labels) out += (out.empty() ? "" : ",") + k + "=" + v;
  return out;
}

std::string ParseWatchEvent(std::string_view line, WatchEvent* out) {
  json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return "not a JSON object";
  const std::string type = StringAt(j, {"type"});
  WatchEvent e;
  if (type == "ADDED") {
    e.type = EventType::kAdded;
  } else if (type == "MODIFIED") {
    e.type = EventType::kModified;
  } else if (type == "DELETED") {
    e.type = EventType::kDeleted;
  } else if (type == "BOOKMARK") {
    e.type = EventType::kBookmark;
  } else if (type == "ERROR") {
    e.type = EventType::kError;
  } else {
    return type.empty() ? "no event type" : "unknown event type '" + type + "'";
  }
  auto it = j.find("object");
  if (it == j.end() || !it->is_object()) return "event " + type + " without an object";
  e.object = std::move(*it);
  e.resource_version = StringAt(e.object, {"metadata", "resourceVersion"});
  if (e.type == EventType::kError) {
    const json* code = Find(e.object, {"code"});
    e.error_code = code && code->is_number_integer() ? code->get<int>() : 0;
    e.error_message = StringAt(e.object, {"message"});
  } else if (e.resource_version.empty()) {
    return "event " + type + " without metadata.resourceVersion";
  }
  *out = std::move(e);
  return {};
}

std::optional<std::pair<std::string, int>> ObjectiveFor(const json& objective,
                                                        const std::string& pool) {
  if (StringAt(objective, {"spec", "poolRef", "name"}) != pool) return std::nullopt;
  const std::string name = StringAt(objective, {"metadata", "name"});
  if (name.empty()) return std::nullopt;
  int priority = 0;
  if (const json* p = Find(objective, {"spec", "priority"}); p && p->is_number_integer())
    priority = p->get<int>();
  return std::make_pair(name, priority);
}

bool Base64Decode(std::string_view in, std::string* out) {
  out->clear();
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    int v;
    if (c >= 'A' && c <= 'Z') {
      v = c - 'A';
    } else if (c >= 'a' && c <= 'z') {
      v = c - 'a' + 26;
    } else if (c >= '0' && c <= '9') {
      v = c - '0' + 52;
    } else if (c == '+') {
      v = 62;
    } else if (c == '/') {
      v = 63;
    } else if (c == '=' || c == '\n' || c == '\r' || c == ' ') {
      continue;
    } else {
      return false;
    }
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out->push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return true;
}

std::string ParseKubeconfig(const std::string& yaml_text, const std::string& dir,
                            const std::string& context, ApiConfig* out) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    return std::string("not YAML: ") + e.what();
  }
  if (!root.IsMap()) return "not a kubeconfig (expected a map)";
  const std::string ctx_name = context.empty() ? Scalar(root, "current-context") : context;
  if (ctx_name.empty()) return "no current-context (give context=NAME)";
  const YAML::Node ctx = Named(root["contexts"], ctx_name, "context");
  if (!ctx || !ctx.IsMap()) return "no context named '" + ctx_name + "'";
  const std::string cluster_name = Scalar(ctx, "cluster");
  const YAML::Node cluster = Named(root["clusters"], cluster_name, "cluster");
  if (!cluster || !cluster.IsMap())
    return "context '" + ctx_name + "' names cluster '" + cluster_name + "', which is not listed";
  ApiConfig c;
  c.server = Scalar(cluster, "server");
  while (!c.server.empty() && c.server.back() == '/') c.server.pop_back();
  if (c.server.empty()) return "cluster '" + cluster_name + "' has no server";
  c.ca_file = Resolve(dir, Scalar(cluster, "certificate-authority"));
  if (auto data = Scalar(cluster, "certificate-authority-data"); !data.empty()) {
    if (!Base64Decode(data, &c.ca_pem))
      return "cluster '" + cluster_name + "': certificate-authority-data is not base64";
  }
  c.insecure = Scalar(cluster, "insecure-skip-tls-verify") == "true";
  c.namespace_ = Scalar(ctx, "namespace");
  const std::string user_name = Scalar(ctx, "user");
  if (!user_name.empty()) {
    const YAML::Node user = Named(root["users"], user_name, "user");
    if (!user || !user.IsMap())
      return "context '" + ctx_name + "' names user '" + user_name + "', which is not listed";
    if (user["exec"] || user["auth-provider"])
      return "user '" + user_name +
             "': exec and auth-provider credential plugins are not supported (use a token or a "
             "client certificate)";
    c.token = Scalar(user, "token");
    c.token_file = Resolve(dir, Scalar(user, "tokenFile"));
    c.client_cert_file = Resolve(dir, Scalar(user, "client-certificate"));
    c.client_key_file = Resolve(dir, Scalar(user, "client-key"));
    for (auto [key, dest] : {std::pair{"client-certificate-data", &c.client_cert_pem},
                             std::pair{"client-key-data", &c.client_key_pem}}) {
      if (auto data = Scalar(user, key); !data.empty() && !Base64Decode(data, dest))
        return "user '" + user_name + "': " + key + " is not base64";
    }
  }
  c.origin = "context " + ctx_name;
  *out = std::move(c);
  return {};
}

std::string ReadKubeconfig(const std::string& path, const std::string& context, ApiConfig* out) {
  std::string text;
  if (!ReadFile(path, &text)) return "cannot read kubeconfig " + path;
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash);
  if (auto err = ParseKubeconfig(text, dir, context, out); !err.empty())
    return "kubeconfig " + path + ": " + err;
  out->origin = "kubeconfig " + path + " (" + out->origin + ")";
  return {};
}

std::string LoadInCluster(const std::string& host, const std::string& port,
                          const std::string& sa_dir, ApiConfig* out) {
  if (host.empty() || port.empty()) return "KUBERNETES_SERVICE_HOST/PORT are not set";
  ApiConfig c;
  const bool v6 = host.find(':') != std::string::npos;
  c.server = "https://" + (v6 ? "[" + host + "]" : host) + ":" + port;
  c.token_file = sa_dir + "/token";
  c.ca_file = sa_dir + "/ca.crt";
  std::string probe;
  if (!ReadFile(c.token_file, &probe))
    return "cannot read the service-account token " + c.token_file;
  std::string ns;
  if (ReadFile(sa_dir + "/namespace", &ns)) {
    while (!ns.empty() && (ns.back() == '\n' || ns.back() == ' ')) ns.pop_back();
    c.namespace_ = ns;
  }
  c.origin = "in-cluster service account";
  *out = std::move(c);
  return {};
}

}  // namespace tidegate::discovery::k8s
