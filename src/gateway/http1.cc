#include "gateway/http1.h"

#include <algorithm>
#include <cstring>

namespace tidegate::gateway::http1 {

namespace detail {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool ListHasToken(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    const size_t comma = list.find(',');
    std::string_view item = Trim(list.substr(0, comma));
    if (IEquals(item, token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

bool IsHopByHop(std::string_view name, std::string_view connection_value) {
  switch (name.size()) {
    case 2:
      if (IEquals(name, "te")) return true;
      break;
    case 7:
      if (IEquals(name, "trailer") || IEquals(name, "upgrade")) return true;
      break;
    case 10:
      if (IEquals(name, "connection") || IEquals(name, "keep-alive")) return true;
      break;
    case 14:
      if (IEquals(name, "content-length")) return true;
      break;
    case 16:
      if (IEquals(name, "proxy-connection")) return true;
      break;
    case 17:
      if (IEquals(name, "transfer-encoding")) return true;
      break;
    default:
      break;
  }
  return !connection_value.empty() && ListHasToken(connection_value, name);
}

bool ParseDecimal(std::string_view v, uint64_t* out) {
  if (v.empty() || v.size() > 18) return false;
  uint64_t x = 0;
  for (char c : v) {
    if (c < '0' || c > '9') return false;
    x = x * 10 + static_cast<uint64_t>(c - '0');
  }
  *out = x;
  return true;
}

}  // namespace detail

namespace {

// The end of a head in `in` (the first "\n\n" or "\n\r\n"): *end is where the last line
// ends (its '\n' included), *bytes the head's size with the terminator. False: not yet.
bool FindHeadEnd(std::string_view in, size_t* end, size_t* bytes) {
  const size_t limit = std::min(in.size(), kMaxHeadBytes);
  const char* base = in.data();
  for (size_t i = 0; i + 1 < limit;) {
    const void* hit = std::memchr(base + i, '\n', limit - i - 1);
    if (!hit) return false;
    i = static_cast<size_t>(static_cast<const char*>(hit) - base);
    if (base[i + 1] == '\n') {
      *end = i + 1;
      *bytes = i + 2;
      return true;
    }
    if (base[i + 1] == '\r' && i + 2 < limit && base[i + 2] == '\n') {
      *end = i + 1;
      *bytes = i + 3;
      return true;
    }
    ++i;
  }
  return false;
}

struct KnownName {
  std::string_view name;
  Known id;
};
constexpr KnownName kKnownNames[] = {
    {"host", Known::kHost},
    {"expect", Known::kExpect},
    {"x-request-id", Known::kRequestId},
    {"x-session-id", Known::kSessionId},
    {"x-gateway-inference-objective", Known::kObjective},
    {"x-llm-d-inference-objective", Known::kObjectiveAlias},
    {"x-gateway-inference-fairness-id", Known::kFairnessId},
    {"x-llm-d-inference-fairness-id", Known::kFairnessIdAlias},
    {"x-slo-ttft-ms", Known::kSloTtftMs},
    {"x-llm-d-slo-ttft-ms", Known::kSloTtftMsAlias},
    {"x-slo-tpot-ms", Known::kSloTpotMs},
    {"x-llm-d-slo-tpot-ms", Known::kSloTpotMsAlias},
    {"x-llm-d-inference-ttl", Known::kTtlMs},
    {"authorization", Known::kAuthorization},
};

// Character classes, by table: tchar (RFC 9110 token characters) and field-value characters.
struct CharTables {
  bool token[256] = {};
  bool value[256] = {};
  constexpr CharTables() {
    for (int c = 0x21; c < 0x7f; ++c) token[c] = true;
    for (char c : std::string_view("()<>@,;:\\\"/[]?={}"))
      token[static_cast<unsigned char>(c)] = false;
    for (int c = 0x20; c < 0x100; ++c) value[c] = c != 0x7f;
    value[static_cast<unsigned char>('\t')] = true;
  }
};
constexpr CharTables kChars;

bool IsTokenChar(char c) { return kChars.token[static_cast<unsigned char>(c)]; }

}  // namespace

// The framing headers of a head, collected while its lines are checked.
struct Framing {
  std::string_view connection, te, cl, content_type;
  bool two_lengths = false;
  bool two_te = false;  // more than one Transfer-Encoding line
};

// Checks every header line of `fields` (a token name, a colon, a value without control
// characters) and collects the framing headers; `on_field(name, value)` sees every field.
// Returns an error message, or nullptr.
template <typename OnField>
const char* ScanFields(std::string_view fields, Framing* f, OnField&& on_field) {
  using detail::IEquals;
  while (!fields.empty()) {
    const size_t nl = fields.find('\n');
    std::string_view line = fields.substr(0, nl);
    fields.remove_prefix(nl == std::string_view::npos ? fields.size() : nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return "malformed header line";
    std::string_view name = line.substr(0, colon);
    for (char c : name)
      if (!IsTokenChar(c)) return "malformed header name";
    std::string_view value = detail::Trim(line.substr(colon + 1));
    for (char c : value)
      if (!kChars.value[static_cast<unsigned char>(c)]) return "malformed header value";
    switch (name.size()) {
      case 10:
        if (IEquals(name, "connection")) f->connection = value;
        break;
      case 12:
        if (IEquals(name, "content-type")) f->content_type = value;
        break;
      case 14:
        if (IEquals(name, "content-length")) {
          if (!f->cl.empty() && f->cl != value) f->two_lengths = true;
          f->cl = value;
        }
        break;
      case 17:
        if (IEquals(name, "transfer-encoding")) {
          if (!f->te.empty()) f->two_te = true;
          f->te = value;
        }
        break;
      default:
        break;
    }
    on_field(name, value);
  }
  return nullptr;
}

HeadStatus ParseResponseHead(std::string_view in, bool request_was_head, ResponseHead* out) {
  using detail::IEquals;
  size_t end = 0;
  if (!FindHeadEnd(in, &end, &out->head_bytes)) {
    if (in.size() >= kMaxHeadBytes) {
      out->error = "the response head exceeds 64 KiB";
      return HeadStatus::kInvalid;
    }
    return HeadStatus::kIncomplete;
  }
  std::string_view head = in.substr(0, end);
  const size_t nl = head.find('\n');
  std::string_view status_line = head.substr(0, nl);
  if (!status_line.empty() && status_line.back() == '\r') status_line.remove_suffix(1);
  head.remove_prefix(nl + 1);
  if (status_line.size() < 12 || !status_line.starts_with("HTTP/1.") ||
      (status_line[7] != '0' && status_line[7] != '1') || status_line[8] != ' ') {
    out->error = "not an HTTP/1.x status line";
    return HeadStatus::kInvalid;
  }
  const bool http10 = status_line[7] == '0';
  int status = 0;
  for (int k = 9; k < 12; ++k) {
    const char c = status_line[k];
    if (c < '0' || c > '9') {
      out->error = "the status code is not three digits";
      return HeadStatus::kInvalid;
    }
    status = status * 10 + (c - '0');
  }
  if (status < 100 || (status_line.size() > 12 && status_line[12] != ' ')) {
    out->error = "malformed status line";
    return HeadStatus::kInvalid;
  }
  out->status = status;
  out->reason = status_line.size() > 13 ? status_line.substr(13) : std::string_view{};
  out->fields = head;

  Framing f;
  if (const char* err = ScanFields(head, &f, [](std::string_view, std::string_view) {})) {
    out->error = err;
    return HeadStatus::kInvalid;
  }
  out->connection = f.connection;
  out->content_type = f.content_type;
  const std::string_view te = f.te, cl = f.cl;
  const bool two_lengths = f.two_lengths;
  out->keep_alive = http10 ? detail::ListHasToken(out->connection, "keep-alive")
                           : !detail::ListHasToken(out->connection, "close");
  if (request_was_head || (status >= 100 && status < 200) || status == 204 || status == 304) {
    out->body = BodyKind::kNone;
  } else if (!te.empty()) {
    // Chunked must be the last coding; anything else is read until the connection closes.
    const size_t comma = te.rfind(',');
    std::string_view last =
        detail::Trim(comma == std::string_view::npos ? te : te.substr(comma + 1));
    if (IEquals(last, "chunked")) {
      out->body = BodyKind::kChunked;
    } else {
      out->body = BodyKind::kUntilClose;
      out->keep_alive = false;
    }
  } else if (!cl.empty()) {
    if (two_lengths || !detail::ParseDecimal(cl, &out->content_length)) {
      out->error = "invalid Content-Length";
      return HeadStatus::kInvalid;
    }
    out->body = BodyKind::kLength;
  } else {
    out->body = BodyKind::kUntilClose;
    out->keep_alive = false;
  }
  return HeadStatus::kOk;
}

HeadStatus ParseRequestHead(std::string_view in, RequestHead* out) {
  using detail::IEquals;
  size_t end = 0;
  if (!FindHeadEnd(in, &end, &out->head_bytes)) {
    if (in.size() >= kMaxHeadBytes) {
      out->error_status = 431;
      out->error = "request headers exceed 64 KiB";
      return HeadStatus::kInvalid;
    }
    // Leading empty lines before a request line are allowed (RFC 9112 2.2) only as "\r\n".
    return HeadStatus::kIncomplete;
  }
  std::string_view head = in.substr(0, end);
  const size_t nl = head.find('\n');
  std::string_view line = head.substr(0, nl);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  head.remove_prefix(nl + 1);
  // METHOD SP target SP HTTP/1.x
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp1 == std::string_view::npos || sp2 == std::string_view::npos || sp1 == 0 ||
      sp2 == sp1 + 1) {
    out->error = "malformed request line";
    return HeadStatus::kInvalid;
  }
  out->method = line.substr(0, sp1);
  for (char c : out->method) {
    if (!IsTokenChar(c)) {
      out->error = "malformed request method";
      return HeadStatus::kInvalid;
    }
  }
  out->target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  for (char c : out->target) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u <= ' ' || u == 0x7f) {
      out->error = "malformed request target";
      return HeadStatus::kInvalid;
    }
  }
  std::string_view version = line.substr(sp2 + 1);
  if (version == "HTTP/1.1") {
    out->http10 = false;
  } else if (version == "HTTP/1.0") {
    out->http10 = true;
  } else {
    out->error_status = version.starts_with("HTTP/") ? 505 : 400;
    out->error = "unsupported HTTP version (HTTP/1.0 and HTTP/1.1 are served)";
    return HeadStatus::kInvalid;
  }
  out->fields = head;
  Framing f;
  bool has_host = false, dup_host = false;
  const char* err = ScanFields(head, &f, [&](std::string_view name, std::string_view value) {
    // The headers the gateway reads: dispatch on the first letter, then the table.
    const char c0 = static_cast<char>(name[0] | 0x20);
    if (name.size() < 4 || (c0 != 'x' && c0 != 'h' && c0 != 'e' && c0 != 'a')) return;
    for (const KnownName& k : kKnownNames) {
      if (k.name.size() == name.size() && detail::IEquals(name, k.name)) {
        auto& slot = out->known[static_cast<size_t>(k.id)];
        if (k.id == Known::kHost) {
          dup_host |= has_host;
          has_host = true;
        }
        if (slot.empty()) slot = value;  // the first one counts
        return;
      }
    }
  });
  if (err) {
    out->error = err;
    return HeadStatus::kInvalid;
  }
  out->connection = f.connection;
  const std::string_view te = f.te, cl = f.cl;
  const bool two_lengths = f.two_lengths;
  out->keep_alive = out->http10 ? detail::ListHasToken(out->connection, "keep-alive")
                                : !detail::ListHasToken(out->connection, "close");
  out->expect_continue = IEquals(out->Get(Known::kExpect), "100-continue");
  // RFC 9112 §3.2: an HTTP/1.1 request has exactly one Host.
  if (dup_host) {
    out->error = "more than one Host header";
    return HeadStatus::kInvalid;
  }
  if (!out->http10 && !has_host) {
    out->error = "missing Host header (required in HTTP/1.1)";
    return HeadStatus::kInvalid;
  }
  if (!te.empty()) {
    // RFC 9112 §6.3: unless chunked is the final coding the body's length is unknown: 400 (and
    // the session closes). A known length with other codings in front is 501.
    const size_t comma = te.rfind(',');
    const std::string_view last =
        detail::Trim(comma == std::string_view::npos ? te : te.substr(comma + 1));
    if (f.two_te || !IEquals(last, "chunked")) {
      out->error = "Transfer-Encoding without chunked as its final coding";
      return HeadStatus::kInvalid;
    }
    if (comma != std::string_view::npos) {
      out->error_status = 501;
      out->error = "unsupported Transfer-Encoding (only chunked is accepted)";
      return HeadStatus::kInvalid;
    }
    if (!cl.empty()) {
      out->error = "both Content-Length and Transfer-Encoding";
      return HeadStatus::kInvalid;
    }
    out->body = BodyKind::kChunked;
  } else if (!cl.empty()) {
    if (two_lengths || !detail::ParseDecimal(cl, &out->content_length)) {
      out->error = "invalid Content-Length";
      return HeadStatus::kInvalid;
    }
    out->body = out->content_length > 0 ? BodyKind::kLength : BodyKind::kNone;
  }
  return HeadStatus::kOk;
}

size_t ChunkDecoder::Decode(char* p, size_t n, size_t* extra) {
  size_t in = 0, out = 0;
  while (in < n && state_ != State::kDone && state_ != State::kFailed) {
    const char c = p[in];
    switch (state_) {
      case State::kSize:
        ++in;
        if (in_ext_) {
          if (c == '\r') {
            state_ = State::kSizeLf;
          } else if (c == '\n') {
            goto size_done;
          }
          break;
        }
        if (c >= '0' && c <= '9') {
          size_ = size_ * 16 + static_cast<uint64_t>(c - '0');
        } else if (c >= 'a' && c <= 'f') {
          size_ = size_ * 16 + static_cast<uint64_t>(c - 'a' + 10);
        } else if (c >= 'A' && c <= 'F') {
          size_ = size_ * 16 + static_cast<uint64_t>(c - 'A' + 10);
        } else if (c == ';' || c == ' ' || c == '\t') {
          if (digits_ == 0) state_ = State::kFailed;
          in_ext_ = true;
          break;
        } else if (c == '\r' && digits_ > 0) {
          state_ = State::kSizeLf;
          break;
        } else if (c == '\n' && digits_ > 0) {
          goto size_done;
        } else {
          state_ = State::kFailed;
          break;
        }
        if (++digits_ > 15) state_ = State::kFailed;
        break;
      case State::kSizeLf:
        ++in;
        if (c != '\n') {
          state_ = State::kFailed;
          break;
        }
      size_done:
        digits_ = 0;
        in_ext_ = false;
        if (size_ == 0) {
          state_ = State::kTrailer;
          trailer_line_empty_ = true;
        } else {
          state_ = State::kData;
        }
        break;
      case State::kData: {
        const size_t take = static_cast<size_t>(std::min<uint64_t>(size_, n - in));
        if (out != in) std::memmove(p + out, p + in, take);
        out += take;
        in += take;
        size_ -= take;
        if (size_ == 0) state_ = State::kDataCr;
        break;
      }
      case State::kDataCr:
        ++in;
        if (c == '\r') {
          state_ = State::kDataLf;
        } else if (c == '\n') {
          state_ = State::kSize;
        } else {
          state_ = State::kFailed;
        }
        break;
      case State::kDataLf:
        ++in;
        state_ = c == '\n' ? State::kSize : State::kFailed;
        break;
      case State::kTrailer:
        ++in;
        if (c == '\r') {
          state_ = State::kTrailerLf;
        } else if (c == '\n') {
          if (trailer_line_empty_) {
            state_ = State::kDone;
          } else {
            trailer_line_empty_ = true;
          }
        } else {
          trailer_line_empty_ = false;
        }
        break;
      case State::kTrailerLf:
        ++in;
        if (c != '\n') {
          state_ = State::kFailed;
        } else if (trailer_line_empty_) {
          state_ = State::kDone;
        } else {
          trailer_line_empty_ = true;
          state_ = State::kTrailer;
        }
        break;
      case State::kDone:
      case State::kFailed:
        break;
    }
  }
  *extra = state_ == State::kDone ? n - in : 0;
  if (*extra > 0 && out != in) std::memmove(p + out, p + in, *extra);
  return out;
}

}  // namespace tidegate::gateway::http1
