// Replays the tokenizer fuzz corpus (fuzz/corpus/tokenizer) through the fuzz target's own body
// (fuzz/tokenizer_fuzz.cc: Decode(Encode(x)) == x, cached and uncached tokenizers agree, every
// id is known, BOS comes first, a chat of the input encodes to the ids of its rendered string),
// so every input the fuzzer kept keeps its properties in CI (a violated property aborts).
#include <gtest/gtest.h>

#include "corpus.h"

#define TIDEGATE_FUZZ_ENTRY TokenizerFuzzOne
#include "../../fuzz/tokenizer_fuzz.cc"

namespace {

TEST(TokenizerFuzzCorpus, EveryInputKeepsTheProperties) {
  int chats = 0;
  const int files = tidegate::testing::ForEachCorpusFile(
      "tokenizer", [&](const std::filesystem::path& path, const std::string& data) {
        EXPECT_EQ(TokenizerFuzzOne(reinterpret_cast<const uint8_t*>(data.data()), data.size()), 0)
            << path;
        if (!data.empty() && (data[0] & 1)) ++chats;
      });
  EXPECT_GE(files, 5);
  EXPECT_GE(chats, 2);  // the corpus covers the chat path too
}

}  // namespace
