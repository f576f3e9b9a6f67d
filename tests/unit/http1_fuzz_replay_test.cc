// Replays the HTTP/1.1 parser fuzz corpus (fuzz/corpus/http1) as an ordinary test, with the
// fuzz target's own properties, so every input the fuzzer ever kept keeps passing in CI.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "gateway/http1.h"

namespace tidegate::gateway::http1 {
namespace {

std::filesystem::path CorpusDir() {
  return std::filesystem::path(__FILE__).parent_path().parent_path().parent_path() / "fuzz" /
         "corpus" / "http1";
}

TEST(Http1FuzzCorpus, EveryInputIsHandled) {
  ASSERT_TRUE(std::filesystem::is_directory(CorpusDir())) << CorpusDir();
  int files = 0, parsed = 0, decoded_done = 0;
  for (const auto& entry : std::filesystem::directory_iterator(CorpusDir())) {
    std::ifstream f(entry.path(), std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    const std::string data = ss.str();
    ++files;
    if (data.size() < 2) continue;
    const int mode = static_cast<unsigned char>(data[0]) % 3;
    std::string in = data.substr(2);
    if (mode == 0) {
      RequestHead h;
      if (ParseRequestHead(in, &h) == HeadStatus::kOk) {
        ++parsed;
        EXPECT_LE(h.head_bytes, in.size()) << entry.path();
        EXPECT_FALSE(h.method.empty()) << entry.path();
      } else if (ParseRequestHead(in, &h) == HeadStatus::kInvalid) {
        EXPECT_NE(h.error, nullptr) << entry.path();
      }
    } else if (mode == 1) {
      ResponseHead h;
      if (ParseResponseHead(in, data[1] & 1, &h) == HeadStatus::kOk) {
        ++parsed;
        EXPECT_LE(h.head_bytes, in.size()) << entry.path();
        EXPECT_GE(h.status, 100) << entry.path();
      }
    } else {
      const size_t step = 1 + static_cast<unsigned char>(data[1]) % 64;
      ChunkDecoder d;
      size_t total = 0;
      for (size_t pos = 0; pos < in.size() && !d.done() && !d.failed(); pos += step) {
        std::string piece = in.substr(pos, step);
        size_t extra = 0;
        const size_t got = d.Decode(piece.data(), piece.size(), &extra);
        EXPECT_LE(got + extra, piece.size()) << entry.path();
        total += got;
      }
      EXPECT_LE(total, in.size()) << entry.path();
      decoded_done += d.done();
    }
  }
  EXPECT_GE(files, 12);
  EXPECT_GE(parsed, 5);  // the valid seeds stay valid
  EXPECT_GE(decoded_done, 1);
}

}  // namespace
}  // namespace tidegate::gateway::http1
