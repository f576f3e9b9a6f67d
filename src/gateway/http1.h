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
// Thread-safety: pure functions; a ChunkDecoder belongs to one relay.
#pragma once

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

// Calls on_header(name, value) for every end-to-end header of a parsed head, in order.
template <typename OnHeader>
void ForEachEndToEndHeader(const ResponseHead& head, OnHeader&& on_header);

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
bool IEquals(std::string_view a, std::string_view b);
bool ListHasToken(std::string_view list, std::string_view token);  // comma-separated, any case
bool IsHopByHop(std::string_view name, std::string_view connection_value);
bool ParseDecimal(std::string_view v, uint64_t* out);
std::string_view Trim(std::string_view s);
}  // namespace detail

template <typename OnHeader>
void ForEachEndToEndHeader(const ResponseHead& head, OnHeader&& on_header) {
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
