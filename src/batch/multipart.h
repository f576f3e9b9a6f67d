// batch/multipart.h — the multipart/form-data reader for OpenAI `POST /v1/files` uploads.
//
// Contract (RFC 7578 on top of RFC 2046 §5.1.1):
// * ExtractBoundary() takes the request's Content-Type value. The type must be
//   multipart/form-data (case-insensitive), the boundary parameter (name case-insensitive) must
//   be present exactly once, as a token or a quoted-string (quoted-pairs are unescaped), and be
//   1..70 characters of RFC 2046 bchars (letters, digits, '()+_,-./:=? and space, not last).
//   Whitespace around ';' and '=' is allowed; other parameters are ignored. On failure it
//   returns "" and sets *error.
// * ParseMultipart() splits a whole, buffered body. The delimiter is CRLF "--" boundary; the
//   first one may also start the body. A delimiter counts only when followed by optional
//   spaces/tabs and a line end (CRLF or LF) — the start of a part — or by "--", optional
//   spaces/tabs and then the end of the body or a line end — the closing one. Anything else
//   ("--Xabc", "--X" not after CRLF) is data. Text before the first delimiter (preamble) and after
//   the closing one (epilogue) is ignored; a body with the closing delimiter only has no parts.
//   Part headers end at an empty line; lines end in CRLF or bare LF; header names are
//   case-insensitive; folded (continuation) lines, control characters and a repeated
//   Content-Disposition or Content-Type are errors; other headers are ignored. Each part needs
//   `Content-Disposition: form-data` with a name parameter (token or quoted-string; a repeated
//   parameter is an error). FormPart views are raw bytes of the body: a quoted value is what lies
//   between the quotes, with any quoted-pair (\") recognised but left as written, and
//   percent-escapes (undici's %22) not decoded. filename* is ignored. A part's data is the bytes
//   between the end of its headers (after the empty line) and the CRLF of the next delimiter,
//   untouched (binary-safe). Limits: at most max_parts parts, at most 8 KiB of headers per part
//   (kMaxPartHeaderBytes, the empty line not counted). On failure it returns false, leaves
//   *parts empty and sets *error to a user-facing message starting with "multipart body: ".
//   Linear in the body size (one Boyer–Moore–Horspool search per delimiter, no rescans); it
//   allocates only the parts vector and error strings.
// Thread-safety: pure functions, safe from any thread. The views in FormPart point into the body
// and live as long as it does.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace tidegate::batch {

inline constexpr size_t kMaxBoundaryLength = 70;     // RFC 2046 §5.1.1
inline constexpr size_t kMaxPartHeaderBytes = 8192;  // per part, the empty line not counted

struct FormPart {
  std::string_view name;      // the Content-Disposition name parameter
  std::string_view filename;  // empty when absent (has_filename tells apart filename="")
  bool has_filename = false;
  std::string_view content_type;  // the part's Content-Type, empty when absent
  std::string_view data;          // the part's bytes, a view into the body
};

// Extracts the boundary from a Content-Type header value such as
// `multipart/form-data; boundary=----abc` (case-insensitive type and parameter name, optional
// quotes, optional whitespace, other parameters allowed). Empty + *error set when the type is not
// multipart/form-data or the boundary is missing/invalid (1..70 chars per RFC 2046).
std::string ExtractBoundary(std::string_view content_type, std::string* error);

// Parses `body` into parts (views into body). Returns false and sets *error to a user-facing
// message on malformed input (see the contract above). `error` may be null.
bool ParseMultipart(std::string_view body, std::string_view boundary, std::vector<FormPart>* parts,
                    std::string* error, size_t max_parts = 64);

// The first part named `name` (compared byte for byte with the raw name view), or nullptr.
const FormPart* FindPart(const std::vector<FormPart>& parts, std::string_view name);

}  // namespace tidegate::batch
