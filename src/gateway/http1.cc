#include "gateway/http1.h"

#include <algorithm>
#include <cstring>

namespace tidegate::gateway::http1 {

namespace detail {

bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x + 32);
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y + 32);
    if (x != y) return false;
  }
  return true;
}

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

HeadStatus ParseResponseHead(std::string_view in, bool request_was_head, ResponseHead* out) {
  using detail::IEquals;
  // Find the end of the head.
  size_t end = std::string_view::npos, term = 0;
  const size_t limit = std::min(in.size(), kMaxHeadBytes);
  for (size_t i = 0; i + 1 < limit; ++i) {
    if (in[i] != '\n') continue;
    if (in[i + 1] == '\n') {
      end = i + 1;
      term = 1;
      break;
    }
    if (in[i + 1] == '\r' && i + 2 < limit && in[i + 2] == '\n') {
      end = i + 1;
      term = 2;
      break;
    }
  }
  if (end == std::string_view::npos) {
    if (in.size() >= kMaxHeadBytes) {
      out->error = "the response head exceeds 64 KiB";
      return HeadStatus::kInvalid;
    }
    return HeadStatus::kIncomplete;
  }
  out->head_bytes = end + term;
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

  std::string_view te, cl;
  bool two_lengths = false;
  std::string_view rest = head;
  while (!rest.empty()) {
    const size_t lnl = rest.find('\n');
    std::string_view line = rest.substr(0, lnl);
    rest.remove_prefix(lnl == std::string_view::npos ? rest.size() : lnl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) {
      out->error = "malformed header line";
      return HeadStatus::kInvalid;
    }
    std::string_view name = line.substr(0, colon);
    for (char c : name) {
      if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f) {
        out->error = "malformed header name";
        return HeadStatus::kInvalid;
      }
    }
    std::string_view value = detail::Trim(line.substr(colon + 1));
    if (IEquals(name, "connection")) {
      out->connection = value;
    } else if (IEquals(name, "transfer-encoding")) {
      te = value;
    } else if (IEquals(name, "content-length")) {
      if (!cl.empty() && cl != value) two_lengths = true;
      cl = value;
    } else if (IEquals(name, "content-type")) {
      out->content_type = value;
    }
  }
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
