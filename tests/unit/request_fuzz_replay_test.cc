// Replays the request-body fuzz corpus (fuzz/corpus/request_body) as an ordinary test, so every
// input the fuzzer ever kept keeps passing in CI.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "gateway/request.h"

namespace tidegate::gateway {
namespace {

std::filesystem::path CorpusDir() {
  return std::filesystem::path(__FILE__).parent_path().parent_path().parent_path() / "fuzz" /
         "corpus" / "request_body";
}

TEST(RequestBodyFuzzCorpus, EveryInputIsHandled) {
  ASSERT_TRUE(std::filesystem::is_directory(CorpusDir())) << CorpusDir();
  int files = 0, accepted = 0;
  for (const auto& entry : std::filesystem::directory_iterator(CorpusDir())) {
    std::ifstream in(entry.path(), std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    std::string body = ss.str();
    const std::string original = body;
    auto info = InspectBody(body);
    EXPECT_EQ(body, original) << entry.path();
    if (info.error.empty()) {
      EXPECT_FALSE(info.model.empty()) << entry.path();
      ++accepted;
    } else {
      EXPECT_FALSE(info.code.empty()) << entry.path();
    }
    ++files;
  }
  EXPECT_GE(files, 8);
  EXPECT_GE(accepted, 2);  // the valid seeds stay valid
}

}  // namespace
}  // namespace tidegate::gateway
