// Replays the Batch API input fuzz corpus (fuzz/corpus/batch_input) through the fuzz target's own
// body, so every input the fuzzer kept keeps its properties in CI (a violated property aborts).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#define TIDEGATE_FUZZ_ENTRY BatchInputFuzzOne
#include "../../fuzz/batch_input_fuzz.cc"

namespace {

TEST(BatchInputFuzzCorpus, EveryInputKeepsTheProperties) {
  const auto dir = std::filesystem::path(__FILE__).parent_path().parent_path().parent_path() /
                   "fuzz" / "corpus" / "batch_input";
  ASSERT_TRUE(std::filesystem::is_directory(dir)) << dir;
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::ifstream f(entry.path(), std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    const std::string data = ss.str();
    ++files;
    EXPECT_EQ(BatchInputFuzzOne(reinterpret_cast<const uint8_t*>(data.data()), data.size()), 0)
        << entry.path();
  }
  EXPECT_GE(files, 5);
  // The seeds cover both outcomes.
  const std::string good = [&] {
    std::ifstream f(dir / "good", std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }();
  EXPECT_TRUE(tidegate::batch::ValidateInput(good, "/v1/chat/completions", {}).ok());
}

}  // namespace
