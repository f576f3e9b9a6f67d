#include "gateway/config.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

namespace tidegate::gateway {
namespace {

std::string WriteTemp(const std::string& text) {
  char name[] = "/tmp/tidegate-config-XXXXXX";
  int fd = mkstemp(name);
  close(fd);
  std::ofstream(name) << text;
  return name;
}

TEST(Config, LoadsFullFile) {
  auto path = WriteTemp(R"(
gateway:
  port: 9090
  threads: 3
  max_body_bytes: 1MiB
  timeouts: {connect: 500ms, ttfb: 10s, stream_idle: 5s, drain: 2s}
  health_interval: 250ms
endpoints:
  - 127.0.0.1:8000
  - address: 127.0.0.1:8001
)");
  GatewayConfig cfg;
  EXPECT_EQ(LoadGatewayConfigYaml(path, &cfg), "");
  EXPECT_EQ(cfg.port, 9090);
  EXPECT_EQ(cfg.threads, 3);
  EXPECT_EQ(cfg.max_body_bytes, 1024u * 1024);
  EXPECT_EQ(cfg.connect_timeout.count(), 500);
  EXPECT_EQ(cfg.ttfb_timeout.count(), 10000);
  EXPECT_EQ(cfg.drain_timeout.count(), 2000);
  EXPECT_EQ(cfg.health_interval.count(), 250);
  ASSERT_EQ(cfg.endpoints.size(), 2u);
  EXPECT_EQ(cfg.endpoints[1].port, 8001);
  EXPECT_EQ(cfg.Validate(), "");
  std::remove(path.c_str());
}

TEST(Config, UnknownKeysAreErrorsNotDefaults) {
  auto path = WriteTemp("gateway:\n  prot: 9090\n");
  GatewayConfig cfg;
  auto err = LoadGatewayConfigYaml(path, &cfg);
  EXPECT_NE(err.find("unknown key 'prot'"), std::string::npos) << err;
  std::remove(path.c_str());
}

TEST(Config, BadValuesNameTheKey) {
  auto path = WriteTemp("gateway:\n  timeouts: {ttfb: soon}\n");
  GatewayConfig cfg;
  auto err = LoadGatewayConfigYaml(path, &cfg);
  EXPECT_NE(err.find("ttfb"), std::string::npos) << err;
  std::remove(path.c_str());
  GatewayConfig none;
  EXPECT_EQ(LoadGatewayConfigYaml("/nonexistent/x.yaml", &none).rfind("cannot read", 0), 0u);
}

TEST(Config, ValidateNeedsEndpoints) {
  GatewayConfig cfg;
  EXPECT_NE(cfg.Validate().find("no endpoints"), std::string::npos);
}

TEST(Config, ADiscoverySectionReplacesTheEndpointList) {
  auto path = WriteTemp(R"(
discovery:
  type: kubernetes
  pool: vllm-llama3
  namespace: serving
  objectives: true
)");
  GatewayConfig cfg;
  ASSERT_EQ(LoadGatewayConfigYaml(path, &cfg), "");
  EXPECT_EQ(cfg.discovery.type, "kubernetes");
  EXPECT_EQ(cfg.discovery.params.at("pool"), "vllm-llama3");
  EXPECT_EQ(cfg.discovery.params.at("objectives"), "true");
  EXPECT_EQ(cfg.Validate(), "");  // no endpoints needed
  cfg.endpoints.push_back({"h", 1});
  EXPECT_NE(cfg.Validate().find("go separately"), std::string::npos);
  std::remove(path.c_str());
  auto bad = WriteTemp("discovery: [file]\n");
  GatewayConfig c2;
  EXPECT_NE(LoadGatewayConfigYaml(bad, &c2).find("'discovery' must be a map with a 'type'"),
            std::string::npos);
  std::remove(bad.c_str());
}

}  // namespace
}  // namespace tidegate::gateway

namespace tidegate::gateway {
namespace {

TEST(Config, ObjectivesSaturationAndScheduling) {
  auto path = WriteTemp(R"(
gateway: {engine: sglang, scrape_interval: 100ms, stale_after: 1s, forward_priority: true}
endpoints:
  - 127.0.0.1:8000
  - {address: 127.0.0.1:8001, engine: vllm}
objectives:
  - {name: interactive, priority: 10}
  - {name: batch, priority: -1}
default_objective: interactive
saturation: {queue_threshold: 3, kv_threshold: 0.9}
scheduling:
  plugins: [{type: queue-scorer}]
  schedulingProfiles: [{name: p, plugins: [{pluginRef: queue-scorer, weight: 2}]}]
)");
  GatewayConfig cfg;
  ASSERT_EQ(LoadGatewayConfigYaml(path, &cfg), "");
  EXPECT_EQ(cfg.default_engine, "sglang");
  EXPECT_EQ(cfg.endpoints[0].engine, "");  // = the default engine
  EXPECT_EQ(cfg.endpoints[1].engine, "vllm");
  EXPECT_EQ(cfg.scrape_interval.count(), 100);
  EXPECT_EQ(cfg.stale_after.count(), 1000);
  EXPECT_TRUE(cfg.forward_priority);
  EXPECT_EQ(cfg.objectives.at("batch"), -1);
  EXPECT_EQ(cfg.objectives.at("interactive"), 10);
  EXPECT_EQ(cfg.default_objective, "interactive");
  EXPECT_EQ(cfg.queue_threshold, 3);
  EXPECT_EQ(cfg.kv_threshold, 0.9);
  EXPECT_NE(cfg.scheduler_yaml.find("queue-scorer"), std::string::npos);
  EXPECT_EQ(cfg.Validate(), "");
  std::remove(path.c_str());
}

TEST(Config, BadSchedulingAndObjectivesAreClearErrors) {
  auto path = WriteTemp("scheduling:\n  plugins: [{type: no-such-scorer}]\n");
  GatewayConfig cfg;
  auto err = LoadGatewayConfigYaml(path, &cfg);
  EXPECT_NE(err.find("no-such-scorer"), std::string::npos) << err;
  std::remove(path.c_str());

  GatewayConfig c2;
  EXPECT_NE(AddObjective("batch", &c2), "");
  EXPECT_NE(AddObjective("batch=low", &c2), "");
  EXPECT_EQ(AddObjective("batch=-2", &c2), "");
  EXPECT_EQ(c2.objectives.at("batch"), -2);
  c2.endpoints.push_back({"h", 1});
  c2.default_objective = "missing";
  EXPECT_NE(c2.Validate().find("default objective"), std::string::npos);
  c2.default_objective.clear();
  c2.endpoints[0].engine = "nope";
  EXPECT_NE(c2.Validate().find("unknown engine"), std::string::npos);
}

TEST(Config, FlowControlSection) {
  auto path = WriteTemp(R"(
endpoints: [127.0.0.1:8000]
saturation: {max_in_flight_per_endpoint: 6}
flow_control:
  enabled: true
  max_requests: 100
  band_max_requests: 40
  max_bytes: 8MiB
  band_max_bytes: 2MiB
  ttl: 5s
  bands: [{priority: 10, ttl: 500ms}]
  fairness: global-strict
  order: edf
  evict_sheddable_after: 250ms
)");
  GatewayConfig cfg;
  ASSERT_EQ(LoadGatewayConfigYaml(path, &cfg), "");
  EXPECT_TRUE(cfg.flow.enabled);
  EXPECT_EQ(cfg.flow.limits.max_requests, 100u);
  EXPECT_EQ(cfg.flow.limits.band_max_requests, 40u);
  EXPECT_EQ(cfg.flow.limits.max_bytes, 8u << 20);
  EXPECT_EQ(cfg.flow.limits.band_max_bytes, 2u << 20);
  EXPECT_EQ(cfg.flow.ttl, std::chrono::seconds(5));
  EXPECT_EQ(cfg.flow.band_ttl.at(10), std::chrono::milliseconds(500));
  EXPECT_EQ(cfg.flow.fairness, control::Fairness::kGlobalStrict);
  EXPECT_EQ(cfg.flow.ordering, control::Ordering::kEdf);
  EXPECT_EQ(cfg.flow.evict_sheddable_after, std::chrono::milliseconds(250));
  EXPECT_EQ(cfg.SaturationSettings().max_in_flight_per_endpoint, 6);
  EXPECT_EQ(cfg.Validate(), "");

  GatewayConfig bad;
  EXPECT_NE(LoadGatewayConfigYaml(WriteTemp("flow_control: {fairnes: round-robin}\n"), &bad)
                .find("unknown key 'fairnes' in 'flow_control'"),
            std::string::npos);
  EXPECT_NE(LoadGatewayConfigYaml(WriteTemp("flow_control: {order: lifo}\n"), &bad)
                .find("order must be fcfs or edf"),
            std::string::npos);
  EXPECT_NE(LoadGatewayConfigYaml(WriteTemp("flow_control: {ttl: soon}\n"), &bad)
                .find("flow_control: bad duration for 'ttl'"),
            std::string::npos);
}

TEST(Config, OneSaturationDetectorForBothSections) {
  const char* sched = R"(
scheduling:
  plugins: [{type: queue-scorer}]
  schedulingProfiles: [{name: a, plugins: [{pluginRef: queue-scorer}]}]
  saturationDetector: {queueDepthThreshold: 8, kvCacheUtilThreshold: 0.9}
)";
  // GIE's section alone sets the one detector.
  GatewayConfig cfg;
  ASSERT_EQ(LoadGatewayConfigYaml(WriteTemp(sched), &cfg), "");
  EXPECT_EQ(cfg.SaturationSettings().queue_threshold, 8);
  EXPECT_EQ(cfg.SaturationSettings().kv_threshold, 0.9);
  // Both sections naming the same figure with the same value: fine.
  GatewayConfig same;
  EXPECT_EQ(LoadGatewayConfigYaml(
                WriteTemp(std::string("saturation: {queue_threshold: 8}\n") + sched), &same),
            "");
  // ... with different values: refused, naming both.
  GatewayConfig clash;
  std::string err = LoadGatewayConfigYaml(
      WriteTemp(std::string("saturation: {queue_threshold: 5}\n") + sched), &clash);
  EXPECT_NE(err.find("queue_threshold"), std::string::npos) << err;
  EXPECT_NE(err.find("queueDepthThreshold"), std::string::npos) << err;
  EXPECT_NE(err.find("set it in one place"), std::string::npos) << err;
}

}  // namespace
}  // namespace tidegate::gateway
