// Replays the tokenizer fuzz corpus (fuzz/corpus/tokenizer) through the fuzz target's own body
// (fuzz/tokenizer_fuzz.cc: Decode(Encode(x)) == x, cached and uncached tokenizers agree, every
// id is known, BOS comes first, a chat of the input encodes to the ids of its rendered string),
// so every input the fuzzer kept keeps its properties in CI (a violated property aborts).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#define TIDEGATE_FUZZ_ENTRY TokenizerFuzzOne
#include "../../fuzz/tokenizer_fuzz.cc"

namespace {

TEST(TokenizerFuzzCorpus, EveryInputKeepsTheProperties) {
  const auto dir = std::filesystem::path(__FILE__).parent_path().parent_path().parent_path() /
                   "fuzz" / "corpus" / "tokenizer";
  ASSERT_TRUE(std::filesystem::is_directory(dir)) << dir;
  int files = 0, chats = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::ifstream f(entry.path(), std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    const std::string data = ss.str();
    ++files;
    EXPECT_EQ(TokenizerFuzzOne(reinterpret_cast<const uint8_t*>(data.data()), data.size()), 0)
        << entry.path();
    if (!data.empty() && (data[0] & 1)) ++chats;
  }
  EXPECT_GE(files, 5);
  EXPECT_GE(chats, 2);  // the corpus covers the chat path too
}

}  // namespace
