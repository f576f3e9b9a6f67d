// Replays the discovery-spec fuzz corpus (fuzz/corpus/discovery_spec) through the fuzz target's
// own body (fuzz/discovery_spec_fuzz.cc: --discovery specs and endpoint lists; rejections leave
// the output untouched, accepted ones name a registered source and survive being written back
// out), so every input the fuzzer kept keeps its properties in CI (a violated property aborts).
#include <gtest/gtest.h>

#include "corpus.h"

#define TIDEGATE_FUZZ_ENTRY DiscoverySpecFuzzOne
#include "../../fuzz/discovery_spec_fuzz.cc"

namespace {

TEST(DiscoverySpecFuzzCorpus, EveryInputKeepsTheProperties) {
  int accepted = 0;
  const int files = tidegate::testing::ForEachCorpusFile(
      "discovery_spec", [&](const std::filesystem::path& path, const std::string& data) {
        EXPECT_EQ(DiscoverySpecFuzzOne(reinterpret_cast<const uint8_t*>(data.data()), data.size()),
                  0)
            << path;
        tidegate::discovery::SourceSpec spec;
        if (tidegate::discovery::ParseSourceSpec(data, &spec).empty()) ++accepted;
      });
  EXPECT_GE(files, 10);
  EXPECT_GE(accepted, 5);  // the corpus covers both outcomes
  EXPECT_LT(accepted, files);
}

}  // namespace
