// Replays the SSE framing fuzz corpus (fuzz/corpus/sse) with the fuzz target's property: any
// split of an input gives the scanner the same answer as the input in one piece.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "gateway/sse.h"

namespace tidegate::gateway {
namespace {

TEST(SseFuzzCorpus, EverySplitAgrees) {
  const auto dir = std::filesystem::path(__FILE__).parent_path().parent_path().parent_path() /
                   "fuzz" / "corpus" / "sse";
  ASSERT_TRUE(std::filesystem::is_directory(dir)) << dir;
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::ifstream f(entry.path(), std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    const std::string data = ss.str();
    ++files;
    if (data.size() < 2) continue;
    const std::string_view in = std::string_view(data).substr(2);
    SseScanner whole;
    whole.Feed(in);
    for (size_t a = 0; a <= in.size(); ++a) {
      SseScanner split;
      split.Feed(in.substr(0, a));
      split.Feed(in.substr(a));
      ASSERT_EQ(split.DataEvents(), whole.DataEvents()) << entry.path() << " at " << a;
      ASSERT_EQ(split.TrailingNewlines(), whole.TrailingNewlines()) << entry.path() << " at " << a;
    }
  }
  EXPECT_GE(files, 3);
}

}  // namespace
}  // namespace tidegate::gateway
