// fleet/fleet.h with real child processes (sh, sleep): start-up failures are named with their
// log, a signal interrupts a start, children stop in reverse order; and the argv of each role.
#include "fleet/fleet.h"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace tidegate::fleet {
namespace {

namespace fs = std::filesystem;

struct TempDir {
  TempDir() {
    path = (fs::temp_directory_path() /
            ("tg-fleet-" + std::to_string(::getpid()) + "-" + std::to_string(counter++)))
               .string();
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string path;
  static inline int counter = 0;
};

bool Has(const std::vector<std::string>& argv, const std::string& flag, const std::string& v) {
  for (size_t i = 0; i + 1 < argv.size(); ++i)
    if (argv[i] == flag && argv[i + 1] == v) return true;
  return false;
}

TEST(Fleet, ArgvOfEachRole) {
  SimSpec s;
  s.ports = {8001, 8002};
  s.max_num_seqs = 8;
  s.priority_scheduling = true;
  s.time_scale = 2.5;
  auto a = SimArgv(s, s.ports);
  EXPECT_EQ(a[1], "sim");
  EXPECT_TRUE(Has(a, "--ports", "8001,8002"));
  EXPECT_TRUE(Has(a, "--max-num-seqs", "8"));
  EXPECT_TRUE(Has(a, "--scheduling-policy", "priority"));
  EXPECT_TRUE(Has(a, "--time-scale", "2.5"));
  GatewaySpec g;
  g.port = 9000;
  g.sim_ports = {8001, 8002};
  g.admin_address = "127.0.0.1:9091";
  g.processor_metrics = "http://127.0.0.1:9464/metrics";
  g.extra = {"--queue-threshold", "2"};
  auto b = GatewayArgv(g);
  EXPECT_EQ(b[1], "serve");
  EXPECT_TRUE(Has(b, "--endpoints", "127.0.0.1:8001,127.0.0.1:8002"));
  EXPECT_TRUE(Has(b, "--admin-address", "127.0.0.1:9091"));
  EXPECT_TRUE(Has(b, "--processor-metrics", "http://127.0.0.1:9464/metrics"));
  EXPECT_TRUE(Has(b, "--queue-threshold", "2"));
  ProcessorSpec p;
  p.gateway_url = "http://127.0.0.1:9000";
  p.requests_uri = "sqlite:///x?queue=requests";
  p.metrics_port = 9464;
  auto c = ProcessorArgv(p);
  EXPECT_EQ(c[1], "async");
  EXPECT_TRUE(Has(c, "--requests", "sqlite:///x?queue=requests"));
  EXPECT_TRUE(Has(c, "--metrics-port", "9464"));
}

TEST(Fleet, AChildThatExitsDuringStartUpIsNamedWithItsLog) {
  TempDir d;
  Fleet f(d.path);
  std::string err;
  auto r = f.Start("the widget", "widget.log", {"/bin/sh", "-c", "echo boom; exit 3"},
                   {{FreeTcpPort(), "/health"}}, std::chrono::seconds(10), &err);
  EXPECT_EQ(r, Fleet::Started::kFailed);
  EXPECT_NE(err.find("the widget exited during start-up (status 3)"), std::string::npos) << err;
  EXPECT_NE(err.find(d.path + "/widget.log"), std::string::npos) << err;
  std::ifstream log(d.path + "/widget.log");
  std::stringstream text;
  text << log.rdbuf();
  EXPECT_NE(text.str().find("boom"), std::string::npos);
}

TEST(Fleet, NotReadyInTimeAndCannotExec) {
  TempDir d;
  Fleet f(d.path);
  std::string err;
  auto r = f.Start("the sleeper", "sleeper.log", {"/bin/sleep", "30"}, {{FreeTcpPort(), "/x"}},
                   std::chrono::milliseconds(300), &err);
  EXPECT_EQ(r, Fleet::Started::kFailed);
  EXPECT_NE(err.find("the sleeper not ready after 300 ms"), std::string::npos) << err;
  r = f.Start("the ghost", "ghost.log", {"/no/such/program"}, {}, std::chrono::seconds(1), &err);
  EXPECT_EQ(r, Fleet::Started::kFailed);
  EXPECT_NE(err.find("cannot start the ghost"), std::string::npos) << err;
  f.StopAll(std::chrono::milliseconds(2000));
  EXPECT_EQ(f.Exited(), &f.components()[0]);  // the sleeper, stopped
}

TEST(Fleet, ASignalInterruptsAStart) {
  TempDir d;
  std::atomic<int> signals{0};
  Fleet f(d.path, [&] { return signals.fetch_add(1) >= 3 ? 1 : 0; });
  std::string err;
  auto r = f.Start("the sleeper", "s.log", {"/bin/sleep", "30"}, {{FreeTcpPort(), "/x"}},
                   std::chrono::seconds(20), &err);
  EXPECT_EQ(r, Fleet::Started::kInterrupted);
}

TEST(Fleet, StopsInReverseStartOrder) {
  TempDir d;
  Fleet f(d.path);
  std::string err;
  ASSERT_EQ(f.Start("first", "1.log", {"/bin/sleep", "30"}, {}, std::chrono::seconds(1), &err),
            Fleet::Started::kReady);
  ASSERT_EQ(f.Start("second", "2.log", {"/bin/sleep", "30"}, {}, std::chrono::seconds(1), &err),
            Fleet::Started::kReady);
  EXPECT_EQ(f.Exited(), nullptr);
  std::vector<std::string> order;
  f.StopAll(std::chrono::milliseconds(2000), [&](const Component& c) { order.push_back(c.what); });
  EXPECT_EQ(order, (std::vector<std::string>{"second", "first"}));
  for (auto& c : f.components()) EXPECT_FALSE(c.child->Running());
}

}  // namespace
}  // namespace tidegate::fleet
