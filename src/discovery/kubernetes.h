// discovery/kubernetes.h — the Kubernetes API objects the `kubernetes` source reads, as pure
// functions kept apart from its HTTP I/O (discovery/kubernetes_source.cc).
//
// Contract: these functions turn API objects (already parsed JSON) and configuration files into
// plain values, and do no I/O except ReadKubeconfig/LoadInCluster, which read the named files.
//   - An InferencePool (group inference.networking.k8s.io, version v1) names its pods by
//     spec.selector.matchLabels (pods in its own namespace) and its ports by
//     spec.targetPorts[].number (1 to 8 of them).
//   - A pod is serving while it has no metadata.deletionTimestamp, has a status.podIP and its
//     condition Ready is "True". It is then one endpoint per target port, podIP:port; the
//     annotation llm-d.ai/active-ports (or the older inference.networking.k8s.io/active-ports),
//     a comma-separated list of port numbers, keeps only the target ports it lists.
//   - A watch stream is one JSON object a line: {"type": ADDED | MODIFIED | DELETED | BOOKMARK |
//     ERROR, "object": {...}}. An ERROR's object is a Status; code 410 (Gone) means the
//     resourceVersion asked for is older than the server keeps, and the client must list again.
//   - An InferenceObjective carries spec.priority (unset = 0) and spec.poolRef.name.
//   - A kubeconfig's current context (or the one named) gives the server URL, the CA, and the
//     user's token or client certificate; file paths in it are relative to the file's directory.
// Thread-safety: pure functions; safe from any thread.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tidegate::discovery::k8s {

// What an InferencePool says about its members.
struct PoolSpec {
  std::map<std::string, std::string> match_labels;
  std::vector<uint16_t> target_ports;
  bool operator==(const PoolSpec&) const = default;
};
// Reads `pool` (an InferencePool object). Returns "" or what is wrong with it.
std::string ParsePoolSpec(const nlohmann::json& pool, PoolSpec* out);

// The parts of a pod that decide its endpoints.
struct PodState {
  std::string name;
  std::string ip;                                     // status.podIP; "" while unassigned
  bool ready = false;                                 // condition Ready == "True"
  bool deleting = false;                              // metadata.deletionTimestamp is set
  std::optional<std::vector<uint16_t>> active_ports;  // the annotation, when present
  bool operator==(const PodState&) const = default;
};
PodState ParsePod(const nlohmann::json& pod);
// The pod's endpoints (ip, port) for `target_ports`, in target-port order; none unless serving.
std::vector<std::pair<std::string, uint16_t>> PodEndpoints(
    const PodState& pod, const std::vector<uint16_t>& target_ports);

// Label selector query value for matchLabels: "k1=v1,k2=v2" (not yet URL-escaped).
std::string LabelSelector(const std::map<std::string, std::string>& labels);

enum class EventType { kAdded, kModified, kDeleted, kBookmark, kError };
struct WatchEvent {
  EventType type = EventType::kAdded;
  nlohmann::json object;
  std::string resource_version;  // object.metadata.resourceVersion ("" for most errors)
  int error_code = 0;            // ERROR: the Status's code (410 = Gone)
  std::string error_message;     // ERROR: the Status's message
};
// Parses one line of a watch stream. Returns "" or why the line is not a watch event.
std::string ParseWatchEvent(std::string_view line, WatchEvent* out);

// Reads an InferenceObjective: its name and priority when spec.poolRef.name is `pool`.
std::optional<std::pair<std::string, int>> ObjectiveFor(const nlohmann::json& objective,
                                                        const std::string& pool);

// How to reach and authenticate to an API server.
struct ApiConfig {
  std::string server;  // "https://10.0.0.1:443" (no trailing '/')
  std::string ca_file;
  std::string ca_pem;     // certificate-authority-data, decoded
  bool insecure = false;  // insecure-skip-tls-verify
  std::string token;
  std::string token_file;  // re-read before each request (service-account tokens rotate)
  std::string client_cert_file, client_key_file;
  std::string client_cert_pem, client_key_pem;  // client-*-data, decoded
  std::string namespace_;                       // the context's namespace; "" when it names none
  std::string origin;  // "kubeconfig FILE (context C)" or "in-cluster", for logs
};

// Parses kubeconfig YAML text. `dir` resolves relative paths; `context` "" = current-context.
std::string ParseKubeconfig(const std::string& yaml_text, const std::string& dir,
                            const std::string& context, ApiConfig* out);
std::string ReadKubeconfig(const std::string& path, const std::string& context, ApiConfig* out);

// In-cluster credentials: KUBERNETES_SERVICE_HOST/PORT, the service account's token and CA under
// `sa_dir` (normally /var/run/secrets/kubernetes.io/serviceaccount). Returns "" or why not.
std::string LoadInCluster(const std::string& host, const std::string& port,
                          const std::string& sa_dir, ApiConfig* out);

// Standard base64 (with or without padding). Returns false on a character outside the alphabet.
bool Base64Decode(std::string_view in, std::string* out);

// Parses "8000,8001" into ports; items that are not a port number are skipped.
std::vector<uint16_t> ParsePortList(std::string_view text);

}  // namespace tidegate::discovery::k8s
