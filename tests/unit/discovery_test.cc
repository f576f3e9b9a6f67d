// Endpoint discovery (discovery/source.h): spec parsing, parameter errors, the YAML endpoint
// lists, and the file source against a real file.
#include <gtest/gtest.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>

#include "discovery/endpoint_list.h"
#include "discovery/source.h"

namespace tidegate::discovery {
namespace {

using std::chrono::seconds;

TEST(DiscoverySpec, ABareFirstItemIsTheSourcesMainParameter) {
  SourceSpec s;
  ASSERT_EQ(ParseSourceSpec("file:/etc/tidegate/eps.yaml,interval=2s", &s), "");
  EXPECT_EQ(s.type, "file");
  EXPECT_EQ(s.params.at("path"), "/etc/tidegate/eps.yaml");
  EXPECT_EQ(s.params.at("interval"), "2s");
  ASSERT_EQ(ParseSourceSpec("dns:vllm.default.svc:8000", &s), "");
  EXPECT_EQ(s.params.at("name"), "vllm.default.svc:8000");
  ASSERT_EQ(ParseSourceSpec("dns", &s), "");
  EXPECT_TRUE(s.params.empty());
  ASSERT_EQ(ParseSourceSpec("dns:name=a.b, port = 80", &s), "");
  EXPECT_EQ(s.params.at("port"), "80");
}

TEST(DiscoverySpec, MistakesAreNamed) {
  SourceSpec s;
  EXPECT_NE(ParseSourceSpec("consul:x", &s).find("unknown discovery source 'consul'"),
            std::string::npos);
  EXPECT_NE(ParseSourceSpec("consul:x", &s).find("file"), std::string::npos);  // lists the known
  EXPECT_NE(ParseSourceSpec("file:a,b", &s).find("'b' should be key=value"), std::string::npos);
  EXPECT_NE(ParseSourceSpec("file:path=a,path=b", &s).find("given twice"), std::string::npos);
  EXPECT_NE(ParseSourceSpec("file:a,,interval=1s", &s).find("empty item"), std::string::npos);
  EXPECT_NE(ParseSourceSpec(":a", &s).find("empty discovery source"), std::string::npos);
}

std::string MakeError(const std::string& spec_text) {
  SourceSpec s;
  std::string err = ParseSourceSpec(spec_text, &s);
  if (!err.empty()) return err;
  auto src = MakeSource(s, &err);
  return src ? "" : err;
}

TEST(DiscoverySpec, FactoriesRejectBadSettingsWithTheKey) {
  EXPECT_NE(MakeError("file").find("needs path=FILE"), std::string::npos);
  EXPECT_NE(MakeError("file:/x,interval=soon").find("interval: 'soon'"), std::string::npos);
  EXPECT_NE(MakeError("file:/x,every=1s").find("unknown key 'every'"), std::string::npos);
  EXPECT_NE(MakeError("dns:vllm").find("give port=PORT"), std::string::npos);
  EXPECT_NE(MakeError("dns:vllm:99999").find("1..65535"), std::string::npos);
  EXPECT_NE(MakeError("dns:vllm:80,type=AAAA").find("must be A or SRV"), std::string::npos);
  EXPECT_NE(MakeError("dns:vllm:80,server=localhost").find("IPv4"), std::string::npos);
  EXPECT_NE(MakeError("static:endpoints=nohost").find("expected host:port"), std::string::npos);
  EXPECT_EQ(MakeError("dns:_http._tcp.vllm"), "");  // SRV carries its ports
  EXPECT_EQ(MakeError("dns:vllm:8000,server=127.0.0.1:5353,interval=500ms"), "");
}

TEST(EndpointList, TextListsAndYamlFilesInBothShapes) {
  std::vector<pool::EndpointConfig> eps;
  ASSERT_EQ(ParseEndpointText("a:1, b:2;https://c:3", &eps), "");
  ASSERT_EQ(eps.size(), 3u);
  EXPECT_TRUE(eps[2].tls);
  const auto dir =
      std::filesystem::temp_directory_path() / ("tg_eplist_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir / name) << text;
    return (dir / name).string();
  };
  ASSERT_EQ(LoadEndpointFile(write("list.yaml",
                                   "- 10.0.0.1:8000\n- {address: 10.0.0.2:8000, "
                                   "engine: sglang, metrics_port: 9000}\n"),
                             &eps),
            "");
  ASSERT_EQ(eps.size(), 2u);
  EXPECT_EQ(eps[1].engine, "sglang");
  EXPECT_EQ(eps[1].metrics_port, 9000);
  ASSERT_EQ(LoadEndpointFile(write("map.yaml", "endpoints:\n  - 10.0.0.3:1\n"), &eps), "");
  ASSERT_EQ(eps.size(), 1u);
  ASSERT_EQ(LoadEndpointFile(write("empty.yaml", ""), &eps), "");
  EXPECT_TRUE(eps.empty());
  eps.assign(1, {});
  EXPECT_NE(LoadEndpointFile(write("bad.yaml", "- {address: a:1, weight: 2}\n"), &eps)
                .find("unknown key 'weight'"),
            std::string::npos);
  EXPECT_EQ(eps.size(), 1u);  // untouched on error
  EXPECT_NE(LoadEndpointFile(write("port.yaml", "- a:0\n"), &eps).find("port must be 1..65535"),
            std::string::npos);
  EXPECT_NE(LoadEndpointFile(write("key.yaml", "servers: []\n"), &eps).find("unknown key"),
            std::string::npos);
  EXPECT_NE(LoadEndpointFile((dir / "missing.yaml").string(), &eps).find("cannot read"),
            std::string::npos);
  std::filesystem::remove_all(dir);
}

// Records what a source reports and lets the test wait for the next report.
class RecordingSink final : public Sink {
 public:
  void SetEndpoints(const std::vector<pool::EndpointConfig>& eps) override {
    std::lock_guard lock(mu_);
    sets_.push_back(eps);
    cv_.notify_all();
  }
  void SetHealthy(bool healthy, const std::string& reason) override {
    std::lock_guard lock(mu_);
    health_.emplace_back(healthy, reason);
    cv_.notify_all();
  }
  // Waits (at most 10 s) until `n` sets / health reports have arrived.
  bool WaitSets(size_t n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, seconds(10), [&] { return sets_.size() >= n; });
  }
  bool WaitHealth(size_t n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, seconds(10), [&] { return health_.size() >= n; });
  }
  std::vector<std::vector<pool::EndpointConfig>> Sets() {
    std::lock_guard lock(mu_);
    return sets_;
  }
  std::vector<std::pair<bool, std::string>> Health() {
    std::lock_guard lock(mu_);
    return health_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::vector<pool::EndpointConfig>> sets_;
  std::vector<std::pair<bool, std::string>> health_;
};

TEST(FileSource, ReportsAtStartOnRefreshAndKeepsTheLastSetWhenTheFileBreaks) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("tg_file_source_" + std::to_string(::getpid()) + ".yaml");
  std::ofstream(path) << "- 10.0.0.1:8000\n";
  SourceSpec spec;
  // A long interval: every re-read below is asked for with Refresh() (as SIGHUP does).
  ASSERT_EQ(ParseSourceSpec("file:" + path.string() + ",interval=1h", &spec), "");
  std::string err;
  auto src = MakeSource(spec, &err);
  ASSERT_TRUE(src) << err;
  EXPECT_EQ(src->Type(), "file");
  RecordingSink sink;
  ASSERT_EQ(src->Start(&sink), "");
  ASSERT_TRUE(sink.WaitSets(1));  // synchronous: before Start() returned
  EXPECT_EQ(sink.Sets()[0].size(), 1u);

  std::ofstream(path) << "- 10.0.0.1:8000\n- 10.0.0.2:8000\n";
  src->Refresh();
  ASSERT_TRUE(sink.WaitSets(2));
  EXPECT_EQ(sink.Sets()[1].size(), 2u);
  ASSERT_TRUE(sink.WaitHealth(2));

  const size_t health_before = sink.Health().size();
  std::ofstream(path) << "- [unclosed\n";
  src->Refresh();
  ASSERT_TRUE(sink.WaitHealth(health_before + 1));
  auto h = sink.Health().back();
  EXPECT_FALSE(h.first);
  EXPECT_NE(h.second.find("not valid YAML"), std::string::npos);
  EXPECT_EQ(sink.Sets().size(), 2u);  // no empty report because of the error

  const size_t health_broken = sink.Health().size();
  std::ofstream(path) << "[]\n";  // a real empty list is reported
  src->Refresh();
  ASSERT_TRUE(sink.WaitSets(3));
  ASSERT_TRUE(sink.WaitHealth(health_broken + 1));  // the set comes first, then the health
  EXPECT_TRUE(sink.Sets()[2].empty());
  EXPECT_TRUE(sink.Health().back().first);
  src->Stop();
  std::filesystem::remove(path);
}

TEST(FileSource, AMissingFileStopsStartUpWithTheReason) {
  SourceSpec spec;
  ASSERT_EQ(ParseSourceSpec("file:/nonexistent/tidegate/eps.yaml", &spec), "");
  std::string err;
  auto src = MakeSource(spec, &err);
  ASSERT_TRUE(src);
  RecordingSink sink;
  EXPECT_NE(src->Start(&sink).find("cannot read '/nonexistent/tidegate/eps.yaml'"),
            std::string::npos);
  EXPECT_TRUE(sink.Sets().empty());
}

}  // namespace
}  // namespace tidegate::discovery
