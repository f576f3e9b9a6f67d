// gateway/http1.h — the upstream side of the relay: an HTTP/1.1 response-head parser and an
// incremental chunked-body decoder, without allocation and without Beast.
//
// Contract:
//  * ParseResponseHead() looks for a complete head ("...\r\n\r\n", bare "\n\n" tolerated) at
//    the start of `in`. kIncomplete: read more (at most kMaxHeadBytes). kInvalid: not an
//    HTTP/1.x response head (`error` says why). kOk fills ResponseHead: the status, the body
//    framing (content-length, chunked, until the connection closes, or none for HEAD, 1xx, 204
//    and 304), whether the server keeps the connection, the content type, and the head's own
//    size, and the header lines. ForEachEndToEndHeader() then hands each end-to-end header, as its
//    name and value, to a callback; hop-by-hop headers (Connection and the ones it names,
//    Keep-Alive, Transfer-Encoding, Content-Length, TE, Trailer, Upgrade, Proxy-Connection) are
//    left out. A Content-Length that is not a number, or two different ones, a header name with
//    spaces or control characters, or a folded line, is kInvalid; Transfer-Encoding wins over
//    Content-Length.
//  * ChunkDecoder takes the raw bytes of a chunked body as they arrive and compacts the chunk
//    data in place (framing, extensions and trailers are dropped): Decode() returns how many
//    data bytes now start at `p`, and sets done() once the last chunk and the trailers have
//    been read; `extra` reports bytes after the end of the body. A malformed body sets failed().
//  * ParseRequestHead() is the client side: a request line and headers, at most kMaxHeadBytes.
//    It finds the body's framing (Content-Length, or chunked. A Transfer-Encoding whose final
//    coding is not chunked, or two Transfer-Encoding lines, is kInvalid with 400, as RFC 9112
//    §6.3 says — the session then closes, so no body is ever read as a next request; chunked
//    after another coding is 501), requires exactly one Host in HTTP/1.1 (400 otherwise), whether
//    the client keeps the connection (HTTP/1.1 unless "Connection: close"; HTTP/1.0 only with
//    "keep-alive"), Expect: 100-continue, and picks out the headers the gateway reads (Known) in
//    the same pass. Malformed input is kInvalid with the status to answer (400, 431 for a head over
//    the limit, 501) and a message.
// Thread-safety: pure functions; a ChunkDecoder belongs to one relay.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace tidegate::gateway::http1 {

inline constexpr size_t kMaxHeadBytes = 64 * 1024;

enum class BodyKind { kNone, kLength, kChunked, kUntilClose };
enum class HeadStatus { kOk, kIncomplete, kInvalid };

struct ResponseHead {
  int status = 0;
  std::string_view reason;
  BodyKind body = BodyKind::kNone;
  uint64_t content_length = 0;
  bool keep_alive = true;
  std::string_view content_type;
  size_t head_bytes = 0;        // the head's size, terminator included
  std::string_view fields;      // the header lines (after the status line)
  std::string_view connection;  // the Connection header's value
  const char* error = nullptr;
};

HeadStatus ParseResponseHead(std::string_view in, bool request_was_head, ResponseHead* out);

// The request headers the gateway reads (ours and llm-d's aliases).
enum class Known : uint8_t {
  kHost,
  kExpect,
  kRequestId,
  kSessionId,
  kObjective,
  kObjectiveAlias,
  kFairnessId,
  kFairnessIdAlias,
  kSloTtftMs,
  kSloTtftMsAlias,
  kSloTpotMs,
  kSloTpotMsAlias,
  kTtlMs,
  kAuthorization,
  kCount
};

struct RequestHead {
  std::string_view method, target;
  bool http10 = false;
  bool keep_alive = true;
  BodyKind body = BodyKind::kNone;  // kNone, kLength or kChunked
  uint64_t content_length = 0;
  bool expect_continue = false;
  size_t head_bytes = 0;
  std::string_view fields;      // the header lines (after the request line)
  std::string_view connection;  // the Connection header's value
  std::array<std::string_view, static_cast<size_t>(Known::kCount)> known{};
  std::string_view Get(Known k) const { return known[static_cast<size_t>(k)]; }
  int error_status = 400;
  const char* error = nullptr;
};

HeadStatus ParseRequestHead(std::string_view in, RequestHead* out);

// Calls on_header(name, value) for every end-to-end header of a parsed head (request or
// response), in order.
template <typename Head, typename OnHeader>
void ForEachEndToEndHeader(const Head& head, OnHeader&& on_header);

class ChunkDecoder {
 public:
  // Decodes [p, p+n) in place; returns the number of data bytes now at [p, p+result). Bytes
  // after the end of the body are left in place after them: *extra counts them.
  size_t Decode(char* p, size_t n, size_t* extra);
  bool done() const { return state_ == State::kDone; }
  bool failed() const { return state_ == State::kFailed; }
  // At a chunk boundary (no chunk partly read): an appended chunk would be well-formed.
  bool at_boundary() const { return state_ == State::kSize && digits_ == 0 && !in_ext_; }

 private:
  enum class State {
    kSize,
    kSizeLf,
    kData,
    kDataCr,
    kDataLf,
    kTrailer,
    kTrailerLf,
    kDone,
    kFailed
  };
  State state_ = State::kSize;
  uint64_t size_ = 0;
  int digits_ = 0;
  bool in_ext_ = false;
  bool trailer_line_empty_ = true;
};

// ---------------------------------------------------------------------------------------------
// Implementation (a template, for the header callback).

namespace detail {
// ASCII case-insensitive equality (`b` is typically a lowercase literal).
inline bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    const unsigned char x = static_cast<unsigned char>(a[i]), y = static_cast<unsigned char>(b[i]);
    if (x == y) continue;
    const unsigned char lx = x | 0x20;
    if (lx != (y | 0x20) || lx < 'a' || lx > 'z') return false;
  }
  return true;
}
bool ListHasToken(std::string_view list, std::string_view token);  // comma-separated, any case
bool IsHopByHop(std::string_view name, std::string_view connection_value);
bool ParseDecimal(std::string_view v, uint64_t* out);
std::string_view Trim(std::string_view s);
}  // namespace detail

template <typename Head, typename OnHeader>
void ForEachEndToEndHeader(const Head& head, OnHeader&& on_header) {
  std::string_view rest = head.fields;
  while (!rest.empty()) {
    const size_t nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const size_t colon = line.find(':');
    std::string_view name = line.substr(0, colon);
    if (detail::IsHopByHop(name, head.connection)) continue;
    on_header(name, detail::Trim(line.substr(colon + 1)));
  }
}

}  // namespace tidegate::gateway::http1
