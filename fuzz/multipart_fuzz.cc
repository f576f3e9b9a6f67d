// libFuzzer target: the multipart/form-data reader of the Files API (batch/multipart.h). Build
// with `make fuzz`; run e.g.
//   build-fuzz/multipart_fuzz -max_total_time=60 fuzz/corpus/multipart
// The first line of the input (a trailing CR dropped) is the Content-Type value, the rest is the
// body. When ExtractBoundary() rejects the line, the line itself is tried as the boundary.
// Properties checked (abort on violation): no crash or sanitizer report; a rejection comes with a
// "multipart body: " message and no parts; at most max_parts parts; every view lies inside the
// body, in order (name before data, one part after the other); each part's data is followed by
// CRLF "--" boundary and holds no delimiter line; the same body with max_parts = 2 gives the same
// parts or, past two parts, the part-limit error; the parts written back out in canonical form
// parse to the same parts.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "batch/multipart.h"

namespace {

using namespace tidegate::batch;

void Check(bool ok) {
  if (!ok) std::abort();
}

bool Inside(std::string_view body, std::string_view v) {
  const auto b = reinterpret_cast<uintptr_t>(body.data());
  const auto p = reinterpret_cast<uintptr_t>(v.data());
  return p >= b && p + v.size() <= b + body.size();
}

bool Same(const FormPart& a, const FormPart& b) {
  return a.name == b.name && a.filename == b.filename && a.has_filename == b.has_filename &&
         a.content_type == b.content_type && a.data == b.data;
}

bool SameParts(const std::vector<FormPart>& a, const std::vector<FormPart>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!Same(a[i], b[i])) return false;
  }
  return true;
}

// A parameter value as it reads back: bare when it can be, else quoted (a value that needs
// quotes came from a quoted-string, so its escapes are already well-formed).
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

void CheckBody(std::string_view body, std::string_view boundary) {
  constexpr size_t kMaxParts = 16;
  std::vector<FormPart> parts;
  std::string error;
  const bool ok = ParseMultipart(body, boundary, &parts, &error, kMaxParts);
  if (!ok) {
    Check(parts.empty() && error.rfind("multipart body: ", 0) == 0);
  } else {
    Check(error.empty() && parts.size() <= kMaxParts);
  }
  const std::string delim = "\r\n--" + std::string(boundary);
  const char* last_end = body.data();
  bool canonical = true;
  for (size_t i = 0; i < parts.size(); ++i) {
    const FormPart& p = parts[i];
    Check(Inside(body, p.name) && Inside(body, p.data));
    Check(p.has_filename ? Inside(body, p.filename) : p.filename.empty());
    Check(p.content_type.empty() || Inside(body, p.content_type));
    Check(p.name.data() >= last_end && p.name.data() + p.name.size() <= p.data.data());
    last_end = p.data.data() + p.data.size();
    Check(body.substr(static_cast<size_t>(last_end - body.data()), delim.size()) == delim);
    Check(p.data.find(delim + "\r\n") == std::string_view::npos);
    Check(p.data.find(delim + "\n") == std::string_view::npos);
    const FormPart* first = FindPart(parts, p.name);
    Check(first != nullptr && first <= &p && first->name == p.name);
    if (p.data.substr(0, delim.size() - 2) == std::string_view(delim).substr(2)) canonical = false;
    if (p.name.size() + p.filename.size() + p.content_type.size() > 8000) canonical = false;
  }

  std::vector<FormPart> two;
  std::string two_error;
  const bool two_ok = ParseMultipart(body, boundary, &two, &two_error, 2);
  if (!ok) {
    Check(!two_ok);
  } else if (parts.size() <= 2) {
    Check(two_ok && SameParts(parts, two));
  } else {
    Check(!two_ok && two_error == "multipart body: more than 2 parts (the limit)");
  }

  if (ok && canonical) {
    const std::string again = Serialize(parts, boundary);
    std::vector<FormPart> reparsed;
    std::string again_error;
    Check(ParseMultipart(again, boundary, &reparsed, &again_error, kMaxParts));
    Check(SameParts(parts, reparsed));
  }
}

}  // namespace

// The corpus replay test includes this file and calls the body under its own name.
#ifndef TIDEGATE_FUZZ_ENTRY
#define TIDEGATE_FUZZ_ENTRY LLVMFuzzerTestOneInput
#endif
extern "C" int TIDEGATE_FUZZ_ENTRY(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const size_t nl = in.find('\n');
  std::string_view content_type = in.substr(0, nl);
  const std::string_view body =
      nl == std::string_view::npos ? std::string_view() : in.substr(nl + 1);
  if (!content_type.empty() && content_type.back() == '\r') content_type.remove_suffix(1);
  std::string error;
  const std::string boundary = ExtractBoundary(content_type, &error);
  if (boundary.empty()) {
    Check(!error.empty());
    CheckBody(body, content_type);  // the line as a bare boundary (rejected when invalid)
  } else {
    Check(boundary.size() <= kMaxBoundaryLength);
    CheckBody(body, boundary);
  }
  return 0;
}
