// async/message.h — the async processor's wire format: request messages in, result messages out.
//
// Contract (see ../shared/DESIGN.md, "Async message format"):
// * ParseRequestMessage() accepts either
//     llm-d-async:  {"id","created","deadline","payload":{OpenAI body},"metadata","headers","path"}
//     OpenAI Batch: {"custom_id","method":"POST","url","body":{OpenAI body}}
//   A message is a Batch line when it has "custom_id", or has "body" and no "payload".
//   Rules: id / custom_id is a non-empty string of at most 512 bytes without control characters
//   (it becomes x-request-id). created / deadline are Unix seconds (integer, fractional number
//   — floored — or a decimal string), absent = 0 (unknown / no deadline), each in
//   0..kMaxUnixSeconds; deadline < created (both set) is an error. soft_deadline (same form) is
//   the time by which the answer is wanted; soft_deadline > deadline (both set) is an error. A
//   deadline that has passed is NOT a parse error (the processor turns it into DEADLINE_EXCEEDED).
//   payload / body must be an object. path / url must be one of SupportedPaths(); when absent it
//   follows the payload: "messages" → /v1/chat/completions, else "prompt" → /v1/completions, else
//   "input" → /v1/embeddings, else error. method, when present, must be "POST". headers must be an
//   object of strings (valid token names, values without CR/LF/NUL). metadata must be an object;
//   its string values are kept verbatim, other values as their compact JSON text. Unknown top-level
//   fields are ignored. Any failure yields error == INVALID_REQUEST with a message; request.id
//   then holds the id if one could be recovered (a valid id / custom_id), else the fallback id
//   (the queue message id), so the INVALID_REQUEST result can still be correlated.
// * Result messages: {"id","status_code","payload":"<response body as a string>",
//   "error_code","error_message"}. On success (ErrorCode::kNone) error_code and error_message
//   are omitted; on error both are present. ParseResultMessage() treats a missing, null or ""
//   error_code as success. Invalid UTF-8 in the payload is replaced by U+FFFD when rendering.
// * BuildRequestMessage() turns one JSONL line (either format, or a bare OpenAI body) into a
//   normalized llm-d-async request message for `tidegate submit`.
// Not a hot path: uses nlohmann::json. Thread-safety: pure functions, safe from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tidegate::async {

enum class ErrorCode {
  kNone,  // success
  kDeadlineExceeded,
  kCancelled,
  kInvalidRequest,
  kInferenceError,
  kShedExhausted,
};
// "DEADLINE_EXCEEDED", ...; "" for kNone.
std::string_view ErrorCodeName(ErrorCode code);
// Inverse of ErrorCodeName ("" → kNone). False for an unknown name.
bool ParseErrorCode(std::string_view name, ErrorCode* code);

inline constexpr int64_t kMaxUnixSeconds = 253402300799;  // 9999-12-31T23:59:59Z
inline constexpr size_t kMaxIdBytes = 512;
// The metadata key naming the OpenAI Batch API batch a request message belongs to (set by the
// gateway's batch runner; the processor publishes such results on its batch results queue).
inline constexpr std::string_view kBatchIdMetadata = "tidegate.batch_id";

// The paths a request may target, in the order of the payload-shape inference above.
const std::vector<std::string>& SupportedPaths();

enum class RequestFormat { kLlmdAsync, kOpenAIBatch };

struct Request {
  std::string id;
  int64_t created = 0;   // Unix seconds; 0 = unknown
  int64_t deadline = 0;  // Unix seconds; 0 = none
  // Unix seconds by which the user would like the answer (the hard deadline stays the time
  // after which it is useless); 0 = none. Never after `deadline` when both are set.
  int64_t soft_deadline = 0;
  std::string path;     // one of SupportedPaths()
  std::string payload;  // the OpenAI request body, compact JSON
  std::map<std::string, std::string> metadata;
  std::vector<std::pair<std::string, std::string>> headers;  // in message order
  RequestFormat format = RequestFormat::kLlmdAsync;
};

struct ParsedRequest {
  Request request;                     // complete when ok(); else only request.id is set
  ErrorCode error = ErrorCode::kNone;  // kNone or kInvalidRequest
  std::string error_message;
  bool ok() const { return error == ErrorCode::kNone; }
};

// `fallback_id` (the queue's message id) is used as request.id only on failure without a
// recoverable id.
ParsedRequest ParseRequestMessage(std::string_view data, std::string_view fallback_id);

// Renders a request in the llm-d-async format (always with id, created, deadline, path,
// payload; metadata and headers only when non-empty). request.payload must be valid JSON.
std::string RenderRequestMessage(const Request& request);

struct Result {
  std::string id;
  int status_code = 0;  // the gateway's HTTP status; 0 when no response was received
  std::string payload;  // the response body, verbatim
  ErrorCode error_code = ErrorCode::kNone;
  std::string error_message;
};

std::string RenderResultMessage(const Result& result);
// False (and *error) when data is not a result message: not a JSON object, id missing or not a
// string, status_code not an integer, payload not a string, unknown error_code.
bool ParseResultMessage(std::string_view data, Result* out, std::string* error);

// For `tidegate submit`: one JSONL line → a normalized llm-d-async request message. The line
// may be an llm-d-async message, a Batch API line, or a bare OpenAI body (an object with none of
// id/custom_id/payload/body, wrapped as the payload). A missing id becomes `fallback_id`, a
// missing created becomes `now`, a missing deadline becomes now + default_deadline. Returns
// false and sets *error (the same validation as ParseRequestMessage) when the line is invalid.
bool BuildRequestMessage(std::string_view line, std::chrono::system_clock::time_point now,
                         std::chrono::seconds default_deadline, std::string_view fallback_id,
                         std::string* message, std::string* id, std::string* error);

// ASCII lower case (header names).
std::string LowerAscii(std::string s);

}  // namespace tidegate::async
