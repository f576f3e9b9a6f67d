// Replays the Batch API input fuzz corpus (fuzz/corpus/batch_input) through the fuzz target's own
// body, so every input the fuzzer kept keeps its properties in CI (a violated property aborts).
#include <gtest/gtest.h>

#include "corpus.h"

#define TIDEGATE_FUZZ_ENTRY BatchInputFuzzOne
#include "../../fuzz/batch_input_fuzz.cc"

namespace {

TEST(BatchInputFuzzCorpus, EveryInputKeepsTheProperties) {
  const int files = tidegate::testing::ForEachCorpusFile(
      "batch_input", [](const std::filesystem::path& path, const std::string& data) {
        EXPECT_EQ(BatchInputFuzzOne(reinterpret_cast<const uint8_t*>(data.data()), data.size()), 0)
            << path;
      });
  EXPECT_GE(files, 5);
  // The seeds cover both outcomes.
  const std::string good =
      tidegate::testing::ReadCorpusFile(tidegate::testing::CorpusDir("batch_input") / "good");
  EXPECT_TRUE(tidegate::batch::ValidateInput(good, "/v1/chat/completions", {}).ok());
}

}  // namespace
