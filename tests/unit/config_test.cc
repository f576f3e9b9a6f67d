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

}  // namespace
}  // namespace tidegate::gateway
