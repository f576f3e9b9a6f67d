// batch/batch.h — the OpenAI Batch API's decisions, apart from storage and I/O.
//
// Contract (see ../shared/DESIGN.md, "OpenAI Batch API"):
// * ValidateInput() checks a batch input file: every line a JSON object
//   {custom_id, method: "POST", url, body} (async/message.h's rules for a Batch line), `url`
//   equal to the batch's endpoint, custom_ids unique, at most limits.max_lines lines and
//   limits.max_bytes bytes. Blank lines are skipped (they count for line numbers). Errors name
//   their 1-based line; at most kMaxReportedErrors are kept (the count of all is returned).
// * ParseWindow() reads a completion window: "24h" (OpenAI's only value) and, for tidegate,
//   any "<N>s|m|h|d" between 1 s and 30 days.
// * The batch object's JSON is OpenAI's: the field set of the official client's `Batch` type,
//   null for unset timestamps and files.
// * Output lines: {id, custom_id, response: {status_code, request_id, body} | null,
//   error: {code, message} | null}. A 2xx result goes to the output file, anything else to the
//   error file; a line unanswered when the batch expired or was cancelled gets error code
//   batch_expired / batch_cancelled and response null.
// * Ids: batches "batch_<24 hex>", files "file-<24 hex>", the request of line N of a batch
//   "batch_req_<batch hex>_<N>" (ParseLineRequestId() inverts it).
// Thread-safety: pure functions (NewId reads a thread-safe random source).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tidegate::batch {

inline constexpr size_t kMaxReportedErrors = 100;
inline constexpr std::string_view kBatchPurpose = "batch";
inline constexpr std::string_view kOutputPurpose = "batch_output";

struct InputLimits {
  size_t max_lines = 50'000;
  uint64_t max_bytes = 200ull * 1024 * 1024;
};

struct InputLine {
  int64_t line = 0;                 // 1-based line number in the file
  uint64_t offset = 0, length = 0;  // the line's bytes in the file (without the newline)
  std::string custom_id;
};

struct LineError {
  std::string code;  // OpenAI's: invalid_json, missing_required_parameter, invalid_url, ...
  std::string message;
  int64_t line = 0;   // 0 = the whole file
  std::string param;  // the offending field, when one
};

struct Validation {
  std::vector<InputLine> lines;  // complete only when errors are empty
  std::vector<LineError> errors;
  size_t error_count = 0;  // errors found (errors holds the first kMaxReportedErrors)
  bool ok() const { return error_count == 0; }
};

Validation ValidateInput(std::string_view content, std::string_view endpoint,
                         const InputLimits& limits);

// Seconds of a completion window, or nullopt (and *error) when it is not one.
std::optional<int64_t> ParseWindow(std::string_view window, std::string* error);

// The batch endpoints a batch may target (the async processor's paths).
bool SupportedEndpoint(std::string_view endpoint);

enum class Status {
  kValidating,
  kFailed,
  kInProgress,
  kFinalizing,
  kCompleted,
  kExpired,
  kCancelling,
  kCancelled
};
std::string_view StatusName(Status s);
bool ParseStatus(std::string_view name, Status* s);
// failed, completed, expired and cancelled: nothing happens to the batch any more.
bool IsTerminal(Status s);

struct BatchRecord {
  std::string id;
  std::string owner;  // the tenant that created it ("" without API keys)
  std::string endpoint, input_file_id, completion_window;
  Status status = Status::kValidating;
  std::string output_file_id, error_file_id;
  std::string errors_json;  // a JSON array of {code, message, param, line}, "" = none
  int64_t total = 0, completed = 0, failed = 0;
  int64_t published = 0;  // lines published so far
  int64_t created_at = 0, in_progress_at = 0, expires_at = 0, finalizing_at = 0, completed_at = 0,
          failed_at = 0, expired_at = 0, cancelling_at = 0, cancelled_at = 0;
  std::map<std::string, std::string> metadata;
};

struct FileRecord {
  std::string id;
  std::string owner;
  std::string filename, purpose;
  uint64_t bytes = 0;
  int64_t created_at = 0;
  bool deleted = false;
};

std::string BatchJson(const BatchRecord& b);
std::string FileJson(const FileRecord& f);
std::string ErrorsJson(const std::vector<LineError>& errors);

// A line's outcome, as stored once its result arrived (or the batch gave up on it).
struct LineOutcome {
  int64_t line = 0;
  std::string custom_id;
  std::string request_id;
  int status_code = 0;                    // 0 = no HTTP response
  std::string body;                       // the response body as received
  std::string error_code, error_message;  // "" = success
};
bool IsSuccess(const LineOutcome& o);
// One output/error file line (no newline).
std::string OutputLine(const LineOutcome& o);

// "batch_<24 hex>" / "file-<24 hex>".
std::string NewBatchId();
std::string NewFileId();
std::string LineRequestId(std::string_view batch_id, int64_t line);
// "batch_req_<hex>_<N>" → ("batch_<hex>", N); false for anything else.
bool ParseLineRequestId(std::string_view request_id, std::string* batch_id, int64_t* line);

// The async processor's error codes as OpenAI-style lower-case codes ("DEADLINE_EXCEEDED" →
// "deadline_exceeded").
std::string LowerCode(std::string_view code);

}  // namespace tidegate::batch
