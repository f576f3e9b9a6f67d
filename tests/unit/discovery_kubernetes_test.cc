// discovery/kubernetes.h: the kubernetes source's pure parts (pods → endpoints, watch events,
// InferencePools and InferenceObjectives, kubeconfig), and its parameters.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "discovery/kubernetes.h"
#include "discovery/source.h"

namespace tidegate::discovery::k8s {
namespace {

using nlohmann::json;
using Eps = std::vector<std::pair<std::string, uint16_t>>;

json Pod(const std::string& name, const std::string& ip, const std::string& ready,
         json annotations = nullptr, bool deleting = false) {
  json p = {{"metadata", {{"name", name}, {"namespace", "ns"}, {"resourceVersion", "7"}}},
            {"status", {{"phase", "Running"}}}};
  if (!ip.empty()) p["status"]["podIP"] = ip;
  if (!ready.empty())
    p["status"]["conditions"] = json::array(
        {{{"type", "PodScheduled"}, {"status", "True"}}, {{"type", "Ready"}, {"status", ready}}});
  if (!annotations.is_null()) p["metadata"]["annotations"] = annotations;
  if (deleting) p["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z";
  return p;
}

TEST(KubernetesPods, AReadyPodIsOneEndpointPerTargetPort) {
  const PodState s = ParsePod(Pod("a", "10.0.0.5", "True"));
  EXPECT_EQ(s.name, "a");
  EXPECT_TRUE(s.ready);
  EXPECT_FALSE(s.deleting);
  EXPECT_EQ(PodEndpoints(s, {8000, 8001}), (Eps{{"10.0.0.5", 8000}, {"10.0.0.5", 8001}}));
}

TEST(KubernetesPods, UnreadyUnscheduledAndTerminatingPodsAreNone) {
  EXPECT_TRUE(PodEndpoints(ParsePod(Pod("a", "10.0.0.5", "False")), {8000}).empty());
  EXPECT_TRUE(PodEndpoints(ParsePod(Pod("a", "10.0.0.5", "")), {8000}).empty());  // no condition
  EXPECT_TRUE(PodEndpoints(ParsePod(Pod("a", "", "True")), {8000}).empty());      // no IP yet
  const PodState del = ParsePod(Pod("a", "10.0.0.5", "True", nullptr, true));
  EXPECT_TRUE(del.deleting);
  EXPECT_TRUE(PodEndpoints(del, {8000}).empty());
  // A null deletionTimestamp is no deletion.
  json p = Pod("a", "10.0.0.5", "True");
  p["metadata"]["deletionTimestamp"] = nullptr;
  EXPECT_EQ(PodEndpoints(ParsePod(p), {8000}).size(), 1u);
}

TEST(KubernetesPods, ActivePortsNarrowTheTargetPorts) {
  const std::vector<uint16_t> ports = {8000, 8001, 8002};
  EXPECT_EQ(PodEndpoints(ParsePod(Pod("a", "10.0.0.5", "True",
                                      {{"llm-d.ai/active-ports", "8002, 8000,9999,x"}})),
                         ports),
            (Eps{{"10.0.0.5", 8000}, {"10.0.0.5", 8002}}));  // target-port order; 9999 is no target
  // The older annotation name too; the llm-d one wins when both are there.
  EXPECT_EQ(PodEndpoints(ParsePod(Pod("a", "10.0.0.5", "True",
                                      {{"inference.networking.k8s.io/active-ports", "8001"}})),
                         ports),
            (Eps{{"10.0.0.5", 8001}}));
  EXPECT_EQ(PodEndpoints(ParsePod(Pod("a", "10.0.0.5", "True",
                                      {{"inference.networking.k8s.io/active-ports", "8001"},
                                       {"llm-d.ai/active-ports", "8002"}})),
                         ports),
            (Eps{{"10.0.0.5", 8002}}));
  // Present but naming no target port: no endpoint (the pod says none is serving).
  EXPECT_TRUE(
      PodEndpoints(ParsePod(Pod("a", "10.0.0.5", "True", {{"llm-d.ai/active-ports", ""}})), ports)
          .empty());
  // Other annotations change nothing.
  EXPECT_EQ(PodEndpoints(ParsePod(Pod("a", "10.0.0.5", "True", {{"other", "1"}})), ports).size(),
            3u);
}

TEST(KubernetesPool, SelectorAndTargetPorts) {
  PoolSpec s;
  ASSERT_EQ(ParsePoolSpec(json::parse(R"({"spec": {"selector": {"matchLabels": {"app": "vllm",
      "tier": "gpu"}}, "targetPorts": [{"number": 8000}, {"number": 8001}, {"number": 8000}],
      "endpointPickerRef": {"name": "epp", "port": {"number": 9002}}}})"),
                          &s),
            "");
  EXPECT_EQ(s.match_labels, (std::map<std::string, std::string>{{"app", "vllm"}, {"tier", "gpu"}}));
  EXPECT_EQ(s.target_ports, (std::vector<uint16_t>{8000, 8001}));  // duplicates merged
  EXPECT_EQ(LabelSelector(s.match_labels), "app=vllm,tier=gpu");
  EXPECT_EQ(LabelSelector({}), "");
}

TEST(KubernetesPool, BadPoolsSayWhy) {
  PoolSpec s;
  EXPECT_EQ(
      ParsePoolSpec(json::parse(R"({"spec": {"selector": {"matchLabels": {"a": "b"}}}})"), &s),
      "spec.targetPorts is missing or empty");
  EXPECT_EQ(ParsePoolSpec(json::parse(R"({"spec": {"targetPorts": [{"number": 70000}]}})"), &s),
            "spec.targetPorts[].number must be a port number (1-65535)");
  EXPECT_EQ(ParsePoolSpec(json::parse(R"({"spec": {"targetPorts": [{"number": "8000"}]}})"), &s),
            "spec.targetPorts[].number must be a port number (1-65535)");
  EXPECT_EQ(ParsePoolSpec(json::parse(R"({"spec": {"selector": {"matchLabels": {"a": 1}},
      "targetPorts": [{"number": 1}]}})"),
                          &s),
            "spec.selector.matchLabels.a is not a string");
}

TEST(KubernetesWatch, EventLines) {
  WatchEvent e;
  ASSERT_EQ(
      ParseWatchEvent(
          R"({"type":"MODIFIED","object":{"kind":"Pod","metadata":{"name":"a","resourceVersion":"42"}}})",
          &e),
      "");
  EXPECT_EQ(e.type, EventType::kModified);
  EXPECT_EQ(e.resource_version, "42");
  EXPECT_EQ(e.object["metadata"]["name"], "a");

  ASSERT_EQ(
      ParseWatchEvent(
          R"({"type":"BOOKMARK","object":{"kind":"Pod","metadata":{"resourceVersion":"99"}}})", &e),
      "");
  EXPECT_EQ(e.type, EventType::kBookmark);
  EXPECT_EQ(e.resource_version, "99");

  ASSERT_EQ(ParseWatchEvent(R"j({"type":"ERROR","object":{"kind":"Status","apiVersion":"v1",
      "status":"Failure","message":"too old resource version: 5 (10)","reason":"Expired",
      "code":410}})j",
                            &e),
            "");
  EXPECT_EQ(e.type, EventType::kError);
  EXPECT_EQ(e.error_code, 410);
  EXPECT_EQ(e.error_message, "too old resource version: 5 (10)");

  for (const char* t : {"ADDED", "DELETED"}) {
    ASSERT_EQ(ParseWatchEvent(std::string(R"({"type":")") + t +
                                  R"(","object":{"metadata":{"resourceVersion":"1"}}})",
                              &e),
              "")
        << t;
  }
  EXPECT_EQ(e.type, EventType::kDeleted);
}

TEST(KubernetesWatch, MalformedLinesAreErrors) {
  WatchEvent e;
  EXPECT_EQ(ParseWatchEvent("{not json", &e), "not a JSON object");
  EXPECT_EQ(ParseWatchEvent("[1]", &e), "not a JSON object");
  EXPECT_EQ(ParseWatchEvent(R"({"object":{}})", &e), "no event type");
  EXPECT_EQ(ParseWatchEvent(R"({"type":"SYNC","object":{}})", &e), "unknown event type 'SYNC'");
  EXPECT_EQ(ParseWatchEvent(R"({"type":"ADDED"})", &e), "event ADDED without an object");
  EXPECT_EQ(ParseWatchEvent(R"({"type":"ADDED","object":{"metadata":{}}})", &e),
            "event ADDED without metadata.resourceVersion");
}

TEST(KubernetesObjectives, PriorityOfThoseNamingThePool) {
  auto o = ObjectiveFor(json::parse(R"({"metadata":{"name":"interactive"},
      "spec":{"priority":10,"poolRef":{"group":"inference.networking.k8s.io","name":"pool-a"}}})"),
                        "pool-a");
  ASSERT_TRUE(o);
  EXPECT_EQ(*o, (std::pair<std::string, int>{"interactive", 10}));
  o = ObjectiveFor(
      json::parse(R"({"metadata":{"name":"batch"},"spec":{"poolRef":{"name":"pool-a"}}})"),
      "pool-a");
  ASSERT_TRUE(o);
  EXPECT_EQ(o->second, 0);  // unset = 0
  EXPECT_FALSE(ObjectiveFor(
      json::parse(R"({"metadata":{"name":"x"},"spec":{"priority":1,"poolRef":{"name":"other"}}})"),
      "pool-a"));
}

TEST(KubernetesCredentials, Base64) {
  std::string out;
  ASSERT_TRUE(Base64Decode("aGVsbG8gd29ybGQ=", &out));
  EXPECT_EQ(out, "hello world");
  ASSERT_TRUE(Base64Decode("aGk\n", &out));
  EXPECT_EQ(out, "hi");
  EXPECT_FALSE(Base64Decode("a*b", &out));
}

constexpr const char* kKubeconfig = R"(apiVersion: v1
kind: Config
current-context: dev
clusters:
- name: c-dev
  cluster:
    server: https://10.1.2.3:6443/
    certificate-authority-data: Q0EtUEVN
- name: c-prod
  cluster:
    server: https://prod.example:443
    certificate-authority: certs/ca.crt
    insecure-skip-tls-verify: true
users:
- name: u-token
  user:
    token: abc123
- name: u-cert
  user:
    client-certificate: /abs/client.crt
    client-key-data: S0VZ
contexts:
- name: dev
  context: {cluster: c-dev, user: u-token, namespace: llm}
- name: prod
  context: {cluster: c-prod, user: u-cert}
- name: broken
  context: {cluster: nowhere, user: u-token}
- name: plugin
  context: {cluster: c-dev, user: u-exec}
)";

TEST(KubernetesCredentials, KubeconfigCurrentContext) {
  ApiConfig c;
  ASSERT_EQ(ParseKubeconfig(kKubeconfig, "/home/me/.kube", "", &c), "");
  EXPECT_EQ(c.server, "https://10.1.2.3:6443");  // the trailing '/' dropped
  EXPECT_EQ(c.ca_pem, "CA-PEM");
  EXPECT_EQ(c.token, "abc123");
  EXPECT_EQ(c.namespace_, "llm");
  EXPECT_FALSE(c.insecure);
}

TEST(KubernetesCredentials, KubeconfigNamedContextWithFilesAndCertificates) {
  ApiConfig c;
  ASSERT_EQ(ParseKubeconfig(kKubeconfig, "/home/me/.kube", "prod", &c), "");
  EXPECT_EQ(c.server, "https://prod.example:443");
  EXPECT_EQ(c.ca_file, "/home/me/.kube/certs/ca.crt");  // relative to the file's directory
  EXPECT_TRUE(c.insecure);
  EXPECT_EQ(c.client_cert_file, "/abs/client.crt");
  EXPECT_EQ(c.client_key_pem, "KEY");
  EXPECT_EQ(c.token, "");
  EXPECT_EQ(c.namespace_, "");
}

TEST(KubernetesCredentials, KubeconfigErrors) {
  ApiConfig c;
  EXPECT_EQ(ParseKubeconfig(kKubeconfig, "", "nope", &c), "no context named 'nope'");
  EXPECT_EQ(ParseKubeconfig(kKubeconfig, "", "broken", &c),
            "context 'broken' names cluster 'nowhere', which is not listed");
  EXPECT_EQ(ParseKubeconfig(kKubeconfig, "", "plugin", &c),
            "context 'plugin' names user 'u-exec', which is not listed");
  EXPECT_EQ(ParseKubeconfig("users: []\n", "", "", &c), "no current-context (give context=NAME)");
  EXPECT_EQ(ParseKubeconfig("- a\n", "", "", &c), "not a kubeconfig (expected a map)");
  EXPECT_EQ(ParseKubeconfig(R"(current-context: x
contexts: [{name: x, context: {cluster: c, user: u}}]
clusters: [{name: c, cluster: {server: "https://h"}}]
users: [{name: u, user: {exec: {command: gke-gcloud-auth-plugin}}}]
)",
                            "", "", &c),
            "user 'u': exec and auth-provider credential plugins are not supported (use a token "
            "or a client certificate)");
}

TEST(KubernetesCredentials, InClusterReadsTheServiceAccount) {
  const auto dir =
      std::filesystem::temp_directory_path() /
      ("tidegate-sa-" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()));
  std::filesystem::create_directories(dir);
  ApiConfig c;
  EXPECT_EQ(LoadInCluster("10.96.0.1", "443", dir.string(), &c),
            "cannot read the service-account token " + (dir / "token").string());
  std::ofstream(dir / "token") << "tok";
  std::ofstream(dir / "namespace") << "serving\n";
  ASSERT_EQ(LoadInCluster("10.96.0.1", "443", dir.string(), &c), "");
  EXPECT_EQ(c.server, "https://10.96.0.1:443");
  EXPECT_EQ(c.token_file, (dir / "token").string());  // read per request: the token rotates
  EXPECT_EQ(c.ca_file, (dir / "ca.crt").string());
  EXPECT_EQ(c.namespace_, "serving");
  ASSERT_EQ(LoadInCluster("fd00::1", "443", dir.string(), &c), "");
  EXPECT_EQ(c.server, "https://[fd00::1]:443");
  EXPECT_EQ(LoadInCluster("", "", dir.string(), &c), "KUBERNETES_SERVICE_HOST/PORT are not set");
  std::filesystem::remove_all(dir);
}

// The factory's parameters (through the registry, as the gateway builds it).
std::string MakeError(const std::string& text) {
  SourceSpec spec;
  if (auto err = ParseSourceSpec(text, &spec); !err.empty()) return err;
  std::string error;
  auto source = MakeSource(spec, &error);
  return source ? "" : error;
}

TEST(KubernetesParams, MainParameterIsThePool) {
  SourceSpec spec;
  ASSERT_EQ(ParseSourceSpec("kubernetes:vllm-pool,namespace=llm,objectives=false", &spec), "");
  EXPECT_EQ(spec.params.at("pool"), "vllm-pool");
  EXPECT_EQ(spec.params.at("namespace"), "llm");
  EXPECT_EQ(MakeError("kubernetes:vllm-pool,api=http://127.0.0.1:1"), "");
  EXPECT_EQ(MakeError("kubernetes:p,api=https://h,watch_timeout=30s,backoff_max=2s,engine=vllm,"
                      "metrics_port=9000,objectives_api=inference.networking.x-k8s.io/v1alpha2,"
                      "kubeconfig=/nonexistent,context=c"),
            "");  // credentials are read at Start()
}

TEST(KubernetesParams, ErrorsNameTheKey) {
  EXPECT_EQ(MakeError("kubernetes"),
            "discovery kubernetes: needs pool=NAME (an InferencePool), e.g. --discovery "
            "kubernetes:vllm-pool");
  EXPECT_EQ(MakeError("kubernetes:p,objectives=maybe"),
            "discovery kubernetes: objectives: 'maybe' is not true or false");
  EXPECT_EQ(MakeError("kubernetes:p,metrics_port=70000"),
            "discovery kubernetes: metrics_port: '70000' is not an integer from 0 to 65535");
  EXPECT_EQ(MakeError("kubernetes:p,api=127.0.0.1:6443"),
            "discovery kubernetes: api: '127.0.0.1:6443' must be an http:// or https:// URL");
  EXPECT_EQ(MakeError("kubernetes:p,objectives_api=llm-d.ai"),
            "discovery kubernetes: objectives_api: 'llm-d.ai' must be GROUP/VERSION");
  EXPECT_EQ(MakeError("kubernetes:p,watch_timeout=0.5s"),
            "discovery kubernetes: watch_timeout: must be at least 1s");
  EXPECT_EQ(MakeError("kubernetes:p,selector=app=x"),
            "discovery kubernetes: unknown key 'selector' for discovery source 'kubernetes' "
            "(known: pool, namespace, objectives, objectives_api, kubeconfig, context, api, "
            "engine, metrics_port, watch_timeout, backoff_max)");
}

TEST(KubernetesParams, StartFailsWithoutCredentials) {
  SourceSpec spec;
  ASSERT_EQ(ParseSourceSpec("kubernetes:p,kubeconfig=/nonexistent/kubeconfig", &spec), "");
  std::string error;
  auto source = MakeSource(spec, &error);
  ASSERT_TRUE(source);
  struct NullSink : Sink {
    void SetEndpoints(const std::vector<pool::EndpointConfig>&) override {}
    void SetHealthy(bool, const std::string&) override {}
  } sink;
  EXPECT_EQ(source->Start(&sink), "cannot read kubeconfig /nonexistent/kubeconfig");
  source->Stop();
}

}  // namespace
}  // namespace tidegate::discovery::k8s
