// Replays the multipart fuzz corpus (fuzz/corpus/multipart) as an ordinary test, so every input
// the fuzzer ever kept keeps passing in CI: the same properties as fuzz/multipart_fuzz.cc,
// checked with gtest (first line = Content-Type, rest = body; rejections carry a message and no
// parts; views inside the body and in order; data followed by the delimiter; max_parts = 2 agrees;
// the canonical re-serialisation parses to the same parts).
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "batch/multipart.h"

namespace tidegate::batch {
namespace {

// The first property of CheckBody that does not hold, or "".
#define PROPERTY(cond) \
  if (!(cond)) return "property violated: " #cond

bool Inside(std::string_view body, std::string_view v) {
  const auto b = reinterpret_cast<uintptr_t>(body.data());
  const auto p = reinterpret_cast<uintptr_t>(v.data());
  return p >= b && p + v.size() <= b + body.size();
}

bool SameParts(const std::vector<FormPart>& a, const std::vector<FormPart>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].name != b[i].name || a[i].filename != b[i].filename ||
        a[i].has_filename != b[i].has_filename || a[i].content_type != b[i].content_type ||
        a[i].data != b[i].data) {
      return false;
    }
  }
  return true;
}

std::string ParamValue(std::string_view v) {
  bool bare = !v.empty();
  for (char c : v) {
    const auto u = static_cast<unsigned char>(c);
    if (c == ' ' || c == '\t' || c == ';' || c == '"' || u < 0x20 || u == 0x7f) bare = false;
  }
  return bare ? std::string(v) : "\"" + std::string(v) + "\"";
}

std::string Serialize(const std::vector<FormPart>& parts, std::string_view boundary) {
  const std::string dash = "--" + std::string(boundary);
  std::string out;
  for (const FormPart& p : parts) {
    out += dash + "\r\nContent-Disposition: form-data; name=" + ParamValue(p.name);
    if (p.has_filename) out += "; filename=" + ParamValue(p.filename);
    out += "\r\n";
    if (!p.content_type.empty()) out += "Content-Type: " + std::string(p.content_type) + "\r\n";
    out += "\r\n";
    out += p.data;
    out += "\r\n";
  }
  return out + dash + "--\r\n";
}

std::string CheckBody(std::string_view body, std::string_view boundary, bool* accepted) {
  constexpr size_t kMaxParts = 16;
  std::vector<FormPart> parts;
  std::string error;
  const bool ok = ParseMultipart(body, boundary, &parts, &error, kMaxParts);
  *accepted = ok;
  if (!ok) {
    PROPERTY(parts.empty() && error.rfind("multipart body: ", 0) == 0);
  } else {
    PROPERTY(error.empty() && parts.size() <= kMaxParts);
  }
  const std::string delim = "\r\n--" + std::string(boundary);
  const char* last_end = body.data();
  bool canonical = true;
  for (size_t i = 0; i < parts.size(); ++i) {
    const FormPart& p = parts[i];
    PROPERTY(Inside(body, p.name) && Inside(body, p.data));
    PROPERTY(p.has_filename ? Inside(body, p.filename) : p.filename.empty());
    PROPERTY(p.content_type.empty() || Inside(body, p.content_type));
    PROPERTY(p.name.data() >= last_end && p.name.data() + p.name.size() <= p.data.data());
    last_end = p.data.data() + p.data.size();
    PROPERTY(body.substr(static_cast<size_t>(last_end - body.data()), delim.size()) == delim);
    PROPERTY(p.data.find(delim + "\r\n") == std::string_view::npos);
    PROPERTY(p.data.find(delim + "\n") == std::string_view::npos);
    const FormPart* first = FindPart(parts, p.name);
    PROPERTY(first != nullptr && first <= &p && first->name == p.name);
    if (p.data.substr(0, delim.size() - 2) == std::string_view(delim).substr(2)) canonical = false;
    if (p.name.size() + p.filename.size() + p.content_type.size() > 8000) canonical = false;
  }

  std::vector<FormPart> two;
  std::string two_error;
  const bool two_ok = ParseMultipart(body, boundary, &two, &two_error, 2);
  if (!ok) {
    PROPERTY(!two_ok);
  } else if (parts.size() <= 2) {
    PROPERTY(two_ok && SameParts(parts, two));
  } else {
    PROPERTY(!two_ok && two_error == "multipart body: more than 2 parts (the limit)");
  }

  if (ok && canonical) {
    const std::string again = Serialize(parts, boundary);
    std::vector<FormPart> reparsed;
    std::string again_error;
    PROPERTY(ParseMultipart(again, boundary, &reparsed, &again_error, kMaxParts));
    PROPERTY(SameParts(parts, reparsed));
  }
  return {};
}

TEST(MultipartFuzzCorpus, EveryInputKeepsTheProperties) {
  const auto dir = std::filesystem::path(__FILE__).parent_path().parent_path().parent_path() /
                   "fuzz" / "corpus" / "multipart";
  ASSERT_TRUE(std::filesystem::is_directory(dir)) << dir;
  int files = 0, accepted_bodies = 0, rejected_bodies = 0, boundaries = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::ifstream f(entry.path(), std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    const std::string data = ss.str();
    ++files;
    const std::string_view in = data;
    const size_t nl = in.find('\n');
    std::string_view content_type = in.substr(0, nl);
    const std::string_view body =
        nl == std::string_view::npos ? std::string_view() : in.substr(nl + 1);
    if (!content_type.empty() && content_type.back() == '\r') content_type.remove_suffix(1);
    std::string error;
    const std::string boundary = ExtractBoundary(content_type, &error);
    bool accepted = false;
    if (boundary.empty()) {
      EXPECT_FALSE(error.empty()) << entry.path();
      EXPECT_EQ(CheckBody(body, content_type, &accepted), "") << entry.path();
    } else {
      ++boundaries;
      EXPECT_LE(boundary.size(), kMaxBoundaryLength);
      EXPECT_EQ(CheckBody(body, boundary, &accepted), "") << entry.path();
    }
    (accepted ? accepted_bodies : rejected_bodies)++;
  }
  EXPECT_GE(files, 5);
  EXPECT_GE(boundaries, 3);
  EXPECT_GE(accepted_bodies, 3);
  EXPECT_GE(rejected_bodies, 1);  // the corpus keeps malformed inputs too
}

#undef PROPERTY

}  // namespace
}  // namespace tidegate::batch
