// batch/multipart.cc — see multipart.h for the contract.
#include "batch/multipart.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <functional>
#include <utility>

namespace tidegate::batch {
namespace {

constexpr size_t kNpos = std::string_view::npos;

bool IsLwsp(char c) { return c == ' ' || c == '\t'; }

bool IsCtl(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u < 0x20 || u == 0x7f;
}

// RFC 9110 tchar.
bool IsTokenChar(char c) {
  const auto u = static_cast<unsigned char>(c);
  if (u <= 0x20 || u >= 0x7f) return false;
  return std::strchr("()<>@,;:\\\"/[]?={}", c) == nullptr;
}

// RFC 2046 bchars.
bool IsBchar(char c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  return c != '\0' && std::strchr("'()+_,-./:=? ", c) != nullptr;
}

char Lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (Lower(a[i]) != Lower(b[i])) return false;
  }
  return true;
}

std::string_view TrimLwsp(std::string_view s) {
  while (!s.empty() && IsLwsp(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsLwsp(s.back())) s.remove_suffix(1);
  return s;
}

// Untrusted bytes made fit for an error message: quoted, at most 64 bytes, bytes outside
// printable ASCII shown as '?'.
std::string Quoted(std::string_view s) {
  constexpr size_t kMax = 64;
  std::string out = "\"";
  for (size_t i = 0; i < s.size() && i < kMax; ++i) {
    const auto u = static_cast<unsigned char>(s[i]);
    out += (u >= 0x20 && u < 0x7f) ? s[i] : '?';
  }
  out += s.size() > kMax ? "\"..." : "\"";
  return out;
}

bool Fail(std::string* error, std::string message) {
  if (error != nullptr) *error = std::move(message);
  return false;
}

// What is wrong with a boundary, or "" when it is valid.
std::string BoundaryProblem(std::string_view b) {
  if (b.empty()) return "the boundary is empty";
  if (b.size() > kMaxBoundaryLength) {
    return "the boundary is " + std::to_string(b.size()) +
           " characters long; RFC 2046 allows at most 70";
  }
  for (char c : b) {
    if (!IsBchar(c)) {
      static constexpr char kHex[] = "0123456789abcdef";
      const auto u = static_cast<unsigned char>(c);
      std::string shown = (u >= 0x20 && u < 0x7f) ? std::string("'") + c + "' " : std::string();
      return "the boundary contains the character " + shown + "(0x" + kHex[u >> 4] + kHex[u & 15] +
             "), which RFC 2046 does not allow";
    }
  }
  if (b.back() == ' ') return "the boundary ends with a space, which RFC 2046 does not allow";
  return {};
}

struct Param {
  std::string_view name;
  std::string_view value;  // raw: between the quotes for a quoted-string, escapes left in
  bool quoted = false;
};

enum class ParamResult { kParam, kEnd, kError };

// Reads the next `OWS ";" OWS name OWS "=" OWS value` of a header value from *pos. Empty
// parameters (";;") are skipped. On kError, *problem says what is wrong.
ParamResult NextParam(std::string_view s, size_t* pos, Param* param, std::string* problem) {
  size_t i = *pos;
  for (;;) {
    while (i < s.size() && IsLwsp(s[i])) ++i;
    if (i == s.size()) {
      *pos = i;
      return ParamResult::kEnd;
    }
    if (s[i] != ';') {
      *problem = "expected ';' before " + Quoted(s.substr(i));
      return ParamResult::kError;
    }
    ++i;
    while (i < s.size() && IsLwsp(s[i])) ++i;
    if (i < s.size() && s[i] != ';') break;
  }
  const size_t name_start = i;
  while (i < s.size() && IsTokenChar(s[i])) ++i;
  if (i == name_start) {
    *problem = "a parameter has no name before " + Quoted(s.substr(i));
    return ParamResult::kError;
  }
  param->name = s.substr(name_start, i - name_start);
  while (i < s.size() && IsLwsp(s[i])) ++i;
  if (i == s.size() || s[i] != '=') {
    *problem = "parameter " + Quoted(param->name) + " has no '=' and value";
    return ParamResult::kError;
  }
  ++i;
  while (i < s.size() && IsLwsp(s[i])) ++i;
  if (i < s.size() && s[i] == '"') {
    const size_t value_start = ++i;
    for (;;) {
      if (i == s.size()) {
        *problem = "the quoted value of parameter " + Quoted(param->name) + " has no closing quote";
        return ParamResult::kError;
      }
      const char c = s[i];
      if (c == '"') break;
      if (IsCtl(c) && c != '\t') {
        *problem =
            "the value of parameter " + Quoted(param->name) + " contains a control character";
        return ParamResult::kError;
      }
      if (c == '\\' && i + 1 < s.size()) {
        if (IsCtl(s[i + 1]) && s[i + 1] != '\t') {
          *problem =
              "the value of parameter " + Quoted(param->name) + " contains a control character";
          return ParamResult::kError;
        }
        ++i;  // a quoted-pair: the next byte cannot end the string
      }
      ++i;
    }
    param->value = s.substr(value_start, i - value_start);
    param->quoted = true;
    *pos = i + 1;
    return ParamResult::kParam;
  }
  const size_t value_start = i;
  while (i < s.size() && !IsLwsp(s[i]) && s[i] != ';' && s[i] != '"' && !IsCtl(s[i])) ++i;
  if (i == value_start) {
    *problem = "parameter " + Quoted(param->name) + " has an empty value";
    return ParamResult::kError;
  }
  param->value = s.substr(value_start, i - value_start);
  param->quoted = false;
  *pos = i;
  return ParamResult::kParam;
}

// The part of a header value before its first ';' or whitespace (a media type, a disposition
// type), and the index where the parameters start.
std::string_view LeadingWord(std::string_view s, size_t* rest) {
  size_t i = 0;
  while (i < s.size() && s[i] != ';' && !IsLwsp(s[i])) ++i;
  *rest = i;
  return s.substr(0, i);
}

enum class Tail { kNone, kPart, kClose };

class Parser {
 public:
  Parser(std::string_view body, std::string_view boundary, std::vector<FormPart>* parts,
         std::string* error, size_t max_parts)
      : body_(body), parts_(parts), error_(error), max_parts_(max_parts) {
    // Callers validate the boundary first, so it fits: "\r\n--" + at most 70 bytes.
    delim_buf_[0] = '\r';
    delim_buf_[1] = '\n';
    delim_buf_[2] = '-';
    delim_buf_[3] = '-';
    const size_t len = std::min(boundary.size(), kMaxBoundaryLength);
    std::memcpy(delim_buf_.data() + 4, boundary.data(), len);
    delim_ = std::string_view(delim_buf_.data(), 4 + len);
    dash_ = delim_.substr(2);
  }

  bool Run() {
    Tail tail = Tail::kNone;
    size_t next = 0;
    // The first delimiter may open the body without a CRLF before it.
    if (body_.substr(0, dash_.size()) == dash_) tail = Classify(dash_.size(), &next);
    if (tail == Tail::kNone) {
      if (FindDelimiter(0, &tail, &next) == kNpos) {
        return Err(body_.empty()
                       ? "the body is empty (expected the boundary " + std::string(dash_) + ")"
                       : "the opening boundary " + std::string(dash_) + " is missing");
      }
    }
    while (tail == Tail::kPart) {
      if (parts_->size() >= max_parts_) {
        return Err("more than " + std::to_string(max_parts_) + " parts (the limit)");
      }
      const size_t number = parts_->size() + 1;
      if (next == body_.size()) return Err(ClosingMissing());
      FormPart part;
      size_t blank = 0, data_start = 0;
      if (!ReadHeaders(next, number, &part, &blank, &data_start)) return false;
      // An empty line of CRLF may be the CRLF of the next delimiter too (RFC 2046 body-part :=
      // headers [CRLF *OCTET]): a part with no data at all.
      const bool crlf_blank = data_start - blank == 2;
      const size_t at = FindDelimiter(crlf_blank ? blank : data_start, &tail, &next);
      if (at == kNpos) return Err(ClosingMissing());
      part.data = at < data_start ? body_.substr(at, 0) : body_.substr(data_start, at - data_start);
      parts_->push_back(part);
    }
    return true;
  }

 private:
  bool Err(std::string message) {
    parts_->clear();
    return Fail(error_, "multipart body: " + message);
  }

  std::string ClosingMissing() const {
    return "the closing boundary " + std::string(dash_) + "-- is missing";
  }

  std::string RunsIntoBoundary(size_t number) const {
    return PartPrefix(number) + "has no empty line between its headers and the boundary " +
           std::string(dash_);
  }

  std::string PartPrefix(size_t number) const { return "part " + std::to_string(number) + " "; }

  // What follows a dash-boundary ending at `e`: the start of a part (its header section begins
  // at *next), the closing delimiter, or nothing (then the bytes are data).
  Tail Classify(size_t e, size_t* next) const {
    const size_t n = body_.size();
    size_t k = e;
    const bool close = body_.substr(e, 2) == "--";
    if (close) k += 2;
    while (k < n && IsLwsp(body_[k])) ++k;
    if (close) {
      if (k == n || body_[k] == '\n' || (body_[k] == '\r' && k + 1 < n && body_[k + 1] == '\n')) {
        return Tail::kClose;
      }
      return Tail::kNone;
    }
    if (k < n && body_[k] == '\n') {
      *next = k + 1;
      return Tail::kPart;
    }
    if (k + 1 < n && body_[k] == '\r' && body_[k + 1] == '\n') {
      *next = k + 2;
      return Tail::kPart;
    }
    return Tail::kNone;
  }

  // The position of the first real delimiter (CRLF "--" boundary + a valid tail) at or after
  // `from`, or kNpos. Candidates never overlap (a boundary holds no CR or LF), so the search goes
  // on after a false one: each byte is looked at a bounded number of times.
  size_t FindDelimiter(size_t from, Tail* tail, size_t* next) const {
    const std::boyer_moore_horspool_searcher searcher(delim_.begin(), delim_.end());
    while (from <= body_.size()) {
      const auto [it, end] = searcher(body_.begin() + from, body_.end());
      if (it == body_.end()) return kNpos;
      const size_t at = static_cast<size_t>(it - body_.begin());
      *tail = Classify(at + delim_.size(), next);
      if (*tail != Tail::kNone) return at;
      from = at + delim_.size();
    }
    return kNpos;
  }

  // Reads the header section starting at `start` up to and including its empty line: *blank is
  // where the empty line starts, *data_start where it ends.
  bool ReadHeaders(size_t start, size_t number, FormPart* part, size_t* blank, size_t* data_start) {
    const size_t n = body_.size();
    const size_t cap = std::min(n, start + kMaxPartHeaderBytes + 2);  // room for a final CRLF
    bool have_disposition = false, have_type = false;
    std::string_view disposition;
    size_t pos = start;
    for (;;) {
      const void* found = pos < cap ? std::memchr(body_.data() + pos, '\n', cap - pos) : nullptr;
      if (found == nullptr) {
        if (cap == n) {
          if (body_.substr(pos, dash_.size()) == dash_) return Err(RunsIntoBoundary(number));
          return Err(PartPrefix(number) +
                     "has no empty line after its headers (the body ends inside them)");
        }
        return Err(PartPrefix(number) + "has more than 8 KiB of headers");
      }
      const size_t nl = static_cast<size_t>(static_cast<const char*>(found) - body_.data());
      std::string_view line = body_.substr(pos, nl - pos);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.empty()) {
        if (pos - start > kMaxPartHeaderBytes) {
          return Err(PartPrefix(number) + "has more than 8 KiB of headers");
        }
        *blank = pos;
        *data_start = nl + 1;
        break;
      }
      if (nl + 1 - start > kMaxPartHeaderBytes) {
        return Err(PartPrefix(number) + "has more than 8 KiB of headers");
      }
      if (IsLwsp(line.front())) {
        return Err(PartPrefix(number) +
                   "has a folded header line (continuation lines are not supported)");
      }
      if (line.substr(0, dash_.size()) == dash_) return Err(RunsIntoBoundary(number));
      const size_t colon = line.find(':');
      std::string_view name = colon == kNpos ? std::string_view() : line.substr(0, colon);
      if (name.empty() || !std::all_of(name.begin(), name.end(), IsTokenChar)) {
        return Err(PartPrefix(number) + "has a malformed header line " + Quoted(line));
      }
      const std::string_view value = TrimLwsp(line.substr(colon + 1));
      if (std::any_of(value.begin(), value.end(), [](char c) { return IsCtl(c) && c != '\t'; })) {
        return Err(PartPrefix(number) + "has a control character in its header " + Quoted(name));
      }
      if (EqualsIgnoreCase(name, "Content-Disposition")) {
        if (have_disposition) {
          return Err(PartPrefix(number) + "has more than one Content-Disposition header");
        }
        have_disposition = true;
        disposition = value;  // read once the header section is known to be well-formed
      } else if (EqualsIgnoreCase(name, "Content-Type")) {
        if (have_type) return Err(PartPrefix(number) + "has more than one Content-Type header");
        have_type = true;
        part->content_type = value;
      }
      pos = nl + 1;
    }
    if (!have_disposition) return Err(PartPrefix(number) + "has no Content-Disposition header");
    return ReadDisposition(disposition, number, part);
  }

  bool ReadDisposition(std::string_view value, size_t number, FormPart* part) {
    // Built only on failure: the success path allocates nothing.
    auto fail = [&](const std::string& what) {
      return Err("part " + std::to_string(number) + ": Content-Disposition " + what);
    };
    size_t pos = 0;
    const std::string_view type = LeadingWord(value, &pos);
    if (!EqualsIgnoreCase(type, "form-data")) {
      return fail("is " + Quoted(type) + ", not form-data");
    }
    bool have_name = false;
    Param param;
    std::string problem;
    for (;;) {
      const ParamResult r = NextParam(value, &pos, &param, &problem);
      if (r == ParamResult::kEnd) break;
      if (r == ParamResult::kError) return fail("is malformed: " + problem);
      if (EqualsIgnoreCase(param.name, "name")) {
        if (have_name) return fail("has more than one name parameter");
        have_name = true;
        part->name = param.value;
      } else if (EqualsIgnoreCase(param.name, "filename")) {
        if (part->has_filename) return fail("has more than one filename parameter");
        part->has_filename = true;
        part->filename = param.value;
      }
    }
    if (!have_name) return fail("has no name parameter");
    return true;
  }

  std::string_view body_;
  std::vector<FormPart>* parts_;
  std::string* error_;
  size_t max_parts_;
  std::array<char, 4 + kMaxBoundaryLength> delim_buf_{};
  std::string_view delim_;  // CRLF "--" boundary
  std::string_view dash_;   // "--" boundary
};

}  // namespace

std::string ExtractBoundary(std::string_view content_type, std::string* error) {
  const std::string_view value = TrimLwsp(content_type);
  size_t pos = 0;
  const std::string_view type = LeadingWord(value, &pos);
  if (!EqualsIgnoreCase(type, "multipart/form-data")) {
    Fail(error, "Content-Type: expected multipart/form-data, got " + Quoted(type));
    return {};
  }
  bool found = false;
  std::string boundary;
  Param param;
  std::string problem;
  for (;;) {
    const ParamResult r = NextParam(value, &pos, &param, &problem);
    if (r == ParamResult::kEnd) break;
    if (r == ParamResult::kError) {
      Fail(error, "Content-Type: malformed parameters: " + problem);
      return {};
    }
    if (!EqualsIgnoreCase(param.name, "boundary")) continue;
    if (found) {
      Fail(error, "Content-Type: more than one boundary parameter");
      return {};
    }
    found = true;
    if (!param.quoted) {
      boundary.assign(param.value);
      continue;
    }
    for (size_t i = 0; i < param.value.size(); ++i) {
      if (param.value[i] == '\\' && i + 1 < param.value.size()) ++i;
      boundary += param.value[i];
    }
  }
  if (!found) {
    Fail(error, "Content-Type: multipart/form-data without a boundary parameter");
    return {};
  }
  if (std::string problem_b = BoundaryProblem(boundary); !problem_b.empty()) {
    Fail(error, "Content-Type: " + problem_b);
    return {};
  }
  return boundary;
}

bool ParseMultipart(std::string_view body, std::string_view boundary, std::vector<FormPart>* parts,
                    std::string* error, size_t max_parts) {
  parts->clear();
  if (std::string problem = BoundaryProblem(boundary); !problem.empty()) {
    return Fail(error, "multipart body: " + problem);
  }
  return Parser(body, boundary, parts, error, max_parts).Run();
}

const FormPart* FindPart(const std::vector<FormPart>& parts, std::string_view name) {
  for (const FormPart& part : parts) {
    if (part.name == name) return &part;
  }
  return nullptr;
}

}  // namespace tidegate::batch
