// Replays the libFuzzer seed corpus (fuzz/corpus/prom_text) through the parser and every engine
// mapping, so the corpus — including crashers added after a fuzzing run — runs as a unit test.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "pool/engine_metrics.h"
#include "pool/prom_text.h"

namespace tidegate::pool {
namespace {

std::filesystem::path CorpusDir() {
  std::filesystem::path here(__FILE__);  // <repo>/tests/unit/this_file.cc
  return here.parent_path().parent_path().parent_path() / "fuzz" / "corpus" / "prom_text";
}

struct Counter final : PromVisitor {
  size_t n = 0;
  bool OnSample(const PromSample& s) override {
    n += s.labels.size() + 1;
    return true;
  }
};

TEST(PromFuzzReplay, EveryCorpusFileParsesOrFailsCleanly) {
  auto dir = CorpusDir();
  ASSERT_TRUE(std::filesystem::is_directory(dir)) << dir;
  size_t files = 0, ok = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str();
    Counter c;
    PromParseError err = ParsePromText(text, c);
    if (err.ok()) {
      ++ok;
    } else {
      EXPECT_GT(err.line, 0u) << entry.path();
      EXPECT_FALSE(err.reason.empty()) << entry.path();
    }
    for (const auto& engine : EngineNames()) {
      EndpointMetrics m;
      std::string e = ParseEngineMetrics(engine, text, Nanos{0}, &m);
      if (e.empty()) {
        EXPECT_GE(m.kv_usage, 0.0);
        EXPECT_LE(m.kv_usage, 1.0);
        EXPECT_GE(m.waiting, 0.0);
      }
    }
    ++files;
  }
  EXPECT_GE(files, 5u);
  EXPECT_GE(ok, 5u);  // the realistic engine samples parse
}

}  // namespace
}  // namespace tidegate::pool
