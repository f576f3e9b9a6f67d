// Replays the KV-event fuzz corpus (fuzz/corpus/kv_events) through the fuzz target's own body
// (fuzz/kv_events_fuzz.cc: decoding, re-encoding in both encodings, applying to a block index),
// so every input the fuzzer kept keeps its properties in CI (a violated property aborts).
#include <gtest/gtest.h>

#include "corpus.h"

#define TIDEGATE_FUZZ_ENTRY KvEventsFuzzOne
#include "../../fuzz/kv_events_fuzz.cc"

namespace {

TEST(KvEventsFuzzCorpus, EveryInputKeepsTheProperties) {
  int accepted = 0;
  const int files = tidegate::testing::ForEachCorpusFile(
      "kv_events", [&](const std::filesystem::path& path, const std::string& data) {
        EXPECT_EQ(KvEventsFuzzOne(reinterpret_cast<const uint8_t*>(data.data()), data.size()), 0)
            << path;
        tidegate::kvevents::EventBatch b;
        std::string err;
        if (tidegate::kvevents::Decode(data, &b, &err)) ++accepted;
      });
  EXPECT_GE(files, 10);
  EXPECT_GE(accepted, 5);  // the corpus covers both outcomes
  EXPECT_LT(accepted, files);
}

}  // namespace
