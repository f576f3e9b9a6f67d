// Replays the async-message fuzz corpus (fuzz/corpus/async_message) as an ordinary test, so
// every input the fuzzer ever kept keeps passing in CI: the same properties as
// fuzz/async_message_fuzz.cc, checked with gtest.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "async/message.h"

namespace tidegate::async {
namespace {

std::filesystem::path CorpusDir() {
  return std::filesystem::path(__FILE__).parent_path().parent_path().parent_path() / "fuzz" /
         "corpus" / "async_message";
}

TEST(AsyncMessageFuzzCorpus, EveryInputIsHandled) {
  ASSERT_TRUE(std::filesystem::is_directory(CorpusDir())) << CorpusDir();
  int files = 0, accepted = 0, results = 0;
  const auto now = std::chrono::system_clock::time_point(std::chrono::seconds(1700000000));
  for (const auto& entry : std::filesystem::directory_iterator(CorpusDir())) {
    std::ifstream in(entry.path(), std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string data = ss.str();
    ++files;

    ParsedRequest p = ParseRequestMessage(data, "fallback-id");
    if (p.ok()) {
      ++accepted;
      const auto& paths = SupportedPaths();
      EXPECT_NE(std::find(paths.begin(), paths.end(), p.request.path), paths.end()) << entry.path();
      EXPECT_FALSE(p.request.id.empty()) << entry.path();
      ParsedRequest again = ParseRequestMessage(RenderRequestMessage(p.request), "other");
      ASSERT_TRUE(again.ok()) << entry.path() << ": " << again.error_message;
      EXPECT_EQ(again.request.id, p.request.id) << entry.path();
      EXPECT_EQ(again.request.payload, p.request.payload) << entry.path();
      EXPECT_EQ(again.request.headers, p.request.headers) << entry.path();
      EXPECT_EQ(again.request.metadata, p.request.metadata) << entry.path();
    } else {
      EXPECT_EQ(p.error, ErrorCode::kInvalidRequest) << entry.path();
      EXPECT_FALSE(p.error_message.empty()) << entry.path();
      EXPECT_FALSE(p.request.id.empty()) << entry.path();
    }

    Result r;
    std::string error;
    if (ParseResultMessage(data, &r, &error)) {
      ++results;
      Result again;
      ASSERT_TRUE(ParseResultMessage(RenderResultMessage(r), &again, &error)) << entry.path();
      EXPECT_EQ(again.id, r.id) << entry.path();
      EXPECT_EQ(again.payload, r.payload) << entry.path();
      EXPECT_EQ(again.error_code, r.error_code) << entry.path();
    } else {
      EXPECT_FALSE(error.empty()) << entry.path();
    }

    std::string message, id;
    error.clear();
    if (BuildRequestMessage(data, now, std::chrono::hours(1), "line", &message, &id, &error)) {
      ParsedRequest built = ParseRequestMessage(message, "other");
      EXPECT_TRUE(built.ok()) << entry.path() << ": " << built.error_message;
      EXPECT_EQ(built.request.id, id) << entry.path();
    } else {
      EXPECT_FALSE(error.empty()) << entry.path();
    }
  }
  EXPECT_GE(files, 15);
  EXPECT_GE(accepted, 5);  // the valid seeds stay valid
  EXPECT_GE(results, 3);
}

}  // namespace
}  // namespace tidegate::async
