// Replays the multipart fuzz corpus (fuzz/corpus/multipart) through the fuzz target's own body
// (fuzz/multipart_fuzz.cc: first line = Content-Type, rest = body; rejections carry a message and
// no parts; views inside the body and in order; data followed by the delimiter; max_parts = 2
// agrees; the canonical re-serialisation parses to the same parts), so every input the fuzzer
// kept keeps its properties in CI (a violated property aborts).
#include <gtest/gtest.h>

#include "corpus.h"

#define TIDEGATE_FUZZ_ENTRY MultipartFuzzOne
#include "../../fuzz/multipart_fuzz.cc"

namespace {

TEST(MultipartFuzzCorpus, EveryInputKeepsTheProperties) {
  int with_parts = 0;
  const int files = tidegate::testing::ForEachCorpusFile(
      "multipart", [&](const std::filesystem::path& path, const std::string& data) {
        EXPECT_EQ(MultipartFuzzOne(reinterpret_cast<const uint8_t*>(data.data()), data.size()), 0)
            << path;
        // How many seeds are accepted uploads (the corpus must cover both outcomes).
        const size_t nl = data.find('\n');
        std::string_view ct = std::string_view(data).substr(0, nl);
        if (!ct.empty() && ct.back() == '\r') ct.remove_suffix(1);
        std::string err;
        const std::string boundary = tidegate::batch::ExtractBoundary(ct, &err);
        std::vector<tidegate::batch::FormPart> parts;
        if (!boundary.empty() && nl != std::string::npos &&
            tidegate::batch::ParseMultipart(std::string_view(data).substr(nl + 1), boundary, &parts,
                                            &err) &&
            !parts.empty())
          ++with_parts;
      });
  EXPECT_GE(files, 10);
  EXPECT_GE(with_parts, 3);
  EXPECT_LT(with_parts, files);
}

}  // namespace
