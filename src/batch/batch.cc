// batch/batch.cc — see batch.h.
#include "batch/batch.h"

#include <charconv>
#include <nlohmann/json.hpp>
#include <random>
#include <unordered_set>

#include "async/message.h"

namespace tidegate::batch {

using nlohmann::json;

namespace {

void AddError(Validation* v, std::string code, std::string message, int64_t line,
              std::string param = "") {
  ++v->error_count;
  if (v->errors.size() < kMaxReportedErrors)
    v->errors.push_back({std::move(code), std::move(message), line, std::move(param)});
}

std::string Hex(uint64_t a, uint32_t b) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string s(24, '0');
  for (int i = 0; i < 16; ++i) s[i] = kDigits[(a >> (60 - 4 * i)) & 15];
  for (int i = 0; i < 8; ++i) s[16 + i] = kDigits[(b >> (28 - 4 * i)) & 15];
  return s;
}

std::string RandomHex() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return Hex(rng(), static_cast<uint32_t>(rng()));
}

json NullOr(int64_t t) { return t ? json(t) : json(nullptr); }
json NullOr(const std::string& s) { return s.empty() ? json(nullptr) : json(s); }

}  // namespace

Validation ValidateInput(std::string_view content, std::string_view endpoint,
                         const InputLimits& limits) {
  Validation v;
  if (content.size() > limits.max_bytes) {
    AddError(&v, "file_too_large",
             "the input file has " + std::to_string(content.size()) + " bytes; the limit is " +
                 std::to_string(limits.max_bytes),
             0);
    return v;
  }
  std::unordered_set<std::string> ids;
  size_t lines_seen = 0;
  int64_t line_no = 0;
  size_t at = 0;
  while (at < content.size()) {
    size_t end = content.find('\n', at);
    if (end == std::string_view::npos) end = content.size();
    ++line_no;
    std::string_view text = content.substr(at, end - at);
    const uint64_t offset = at;
    at = end + 1;
    if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
    if (text.find_first_not_of(" \t") == std::string_view::npos) continue;  // blank
    if (++lines_seen > limits.max_lines) {
      AddError(&v, "too_many_requests",
               "the input file has more than " + std::to_string(limits.max_lines) +
                   " requests (line " + std::to_string(line_no) + " is over the limit)",
               line_no);
      break;
    }
    json j = json::parse(text, nullptr, false);
    if (j.is_discarded()) {
      AddError(&v, "invalid_json", "the line is not valid JSON", line_no);
      continue;
    }
    if (!j.is_object()) {
      AddError(&v, "invalid_request",
               "a batch line is a JSON object {\"custom_id\", \"method\", \"url\", \"body\"}",
               line_no);
      continue;
    }
    const char* missing = nullptr;
    for (const char* key : {"custom_id", "method", "url", "body"}) {
      if (!j.contains(key)) {
        missing = key;
        break;
      }
    }
    if (missing != nullptr) {
      AddError(&v, "missing_required_parameter",
               std::string("the line has no ") + missing +
                   " (a batch line is {\"custom_id\", "
                   "\"method\", \"url\", \"body\"})",
               line_no, missing);
      continue;
    }
    if (!j["url"].is_string() || j["url"].get_ref<const std::string&>() != endpoint) {
      AddError(&v, "mismatched_url",
               "the line's url " + j["url"].dump() + " is not the batch's endpoint " +
                   std::string(endpoint),
               line_no, "url");
      continue;
    }
    // The remaining rules (custom_id, method, body) are the async processor's own.
    async::ParsedRequest parsed = async::ParseRequestMessage(text, "");
    if (!parsed.ok()) {
      AddError(&v, "invalid_request", parsed.error_message, line_no);
      continue;
    }
    const std::string& id = parsed.request.id;
    if (!ids.insert(id).second) {
      AddError(&v, "duplicate_custom_id",
               "custom_id '" + id + "' appears more than once (custom_ids must be unique)", line_no,
               "custom_id");
      continue;
    }
    v.lines.push_back({line_no, offset, text.size(), id});
  }
  if (v.error_count == 0 && v.lines.empty())
    AddError(&v, "empty_file", "the input file has no requests", 0);
  if (v.error_count > 0) v.lines.clear();
  return v;
}

std::optional<int64_t> ParseWindow(std::string_view window, std::string* error) {
  int64_t n = 0;
  auto [p, ec] = std::from_chars(window.data(), window.data() + window.size(), n);
  const size_t digits = static_cast<size_t>(p - window.data());
  if (ec != std::errc() || digits == 0 || digits + 1 != window.size() || n <= 0) {
    *error = "completion_window must be like \"24h\" (a positive number then s, m, h or d), not '" +
             std::string(window) + "'";
    return std::nullopt;
  }
  int64_t unit = 0;
  switch (window.back()) {
    case 's':
      unit = 1;
      break;
    case 'm':
      unit = 60;
      break;
    case 'h':
      unit = 3600;
      break;
    case 'd':
      unit = 86400;
      break;
    default:
      *error = "completion_window must end in s, m, h or d (e.g. \"24h\"), not '" +
               std::string(window) + "'";
      return std::nullopt;
  }
  if (n > 30 * 86400 / unit) {
    *error = "completion_window may be at most 30 days, not '" + std::string(window) + "'";
    return std::nullopt;
  }
  return n * unit;
}

bool SupportedEndpoint(std::string_view endpoint) {
  for (const auto& p : async::SupportedPaths())
    if (p == endpoint) return true;
  return false;
}

namespace {
constexpr std::string_view kStatusNames[] = {"validating", "failed",  "in_progress", "finalizing",
                                             "completed",  "expired", "cancelling",  "cancelled"};
}

std::string_view StatusName(Status s) { return kStatusNames[static_cast<int>(s)]; }

bool ParseStatus(std::string_view name, Status* s) {
  for (size_t i = 0; i < std::size(kStatusNames); ++i) {
    if (kStatusNames[i] == name) {
      *s = static_cast<Status>(i);
      return true;
    }
  }
  return false;
}

bool IsTerminal(Status s) {
  return s == Status::kFailed || s == Status::kCompleted || s == Status::kExpired ||
         s == Status::kCancelled;
}

std::string BatchJson(const BatchRecord& b) {
  json j = {
      {"id", b.id},
      {"object", "batch"},
      {"endpoint", b.endpoint},
      {"errors", nullptr},
      {"input_file_id", b.input_file_id},
      {"completion_window", b.completion_window},
      {"status", StatusName(b.status)},
      {"output_file_id", NullOr(b.output_file_id)},
      {"error_file_id", NullOr(b.error_file_id)},
      {"created_at", b.created_at},
      {"in_progress_at", NullOr(b.in_progress_at)},
      {"expires_at", NullOr(b.expires_at)},
      {"finalizing_at", NullOr(b.finalizing_at)},
      {"completed_at", NullOr(b.completed_at)},
      {"failed_at", NullOr(b.failed_at)},
      {"expired_at", NullOr(b.expired_at)},
      {"cancelling_at", NullOr(b.cancelling_at)},
      {"cancelled_at", NullOr(b.cancelled_at)},
      {"request_counts", {{"total", b.total}, {"completed", b.completed}, {"failed", b.failed}}},
      {"metadata", b.metadata.empty() ? json(nullptr) : json(b.metadata)},
  };
  if (!b.errors_json.empty()) {
    json data = json::parse(b.errors_json, nullptr, false);
    if (!data.is_discarded()) j["errors"] = {{"object", "list"}, {"data", std::move(data)}};
  }
  return j.dump();
}

std::string FileJson(const FileRecord& f) {
  return json{{"id", f.id},
              {"object", "file"},
              {"bytes", f.bytes},
              {"created_at", f.created_at},
              {"filename", f.filename},
              {"purpose", f.purpose},
              {"status", "processed"},
              {"status_details", nullptr},
              {"expires_at", nullptr}}
      .dump();
}

std::string ErrorsJson(const std::vector<LineError>& errors) {
  json a = json::array();
  for (const auto& e : errors) {
    a.push_back({{"code", e.code},
                 {"message", e.message},
                 {"param", e.param.empty() ? json(nullptr) : json(e.param)},
                 {"line", e.line ? json(e.line) : json(nullptr)}});
  }
  return a.dump(-1, ' ', false, json::error_handler_t::replace);
}

bool IsSuccess(const LineOutcome& o) {
  return o.error_code.empty() && o.status_code >= 200 && o.status_code < 300;
}

std::string OutputLine(const LineOutcome& o) {
  json j = {{"id", o.request_id}, {"custom_id", o.custom_id}};
  if (o.status_code > 0) {
    // The body as JSON when it is JSON (it is, from an OpenAI server), else as a string.
    json body = json::parse(o.body, nullptr, false);
    if (body.is_discarded()) body = o.body;
    j["response"] = {
        {"status_code", o.status_code}, {"request_id", o.request_id}, {"body", std::move(body)}};
  } else {
    j["response"] = nullptr;
  }
  if (IsSuccess(o)) {
    j["error"] = nullptr;
  } else {
    std::string code = o.error_code.empty() ? "http_error" : o.error_code;
    std::string msg = o.error_message.empty()
                          ? "the server answered " + std::to_string(o.status_code)
                          : o.error_message;
    j["error"] = {{"code", code}, {"message", msg}};
  }
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string NewBatchId() { return "batch_" + RandomHex(); }
std::string NewFileId() { return "file-" + RandomHex(); }

std::string LineRequestId(std::string_view batch_id, int64_t line) {
  std::string id = "batch_req_";
  id += batch_id.substr(batch_id.find('_') + 1);
  id += '_';
  id += std::to_string(line);
  return id;
}

bool ParseLineRequestId(std::string_view request_id, std::string* batch_id, int64_t* line) {
  constexpr std::string_view kPrefix = "batch_req_";
  if (request_id.substr(0, kPrefix.size()) != kPrefix) return false;
  std::string_view rest = request_id.substr(kPrefix.size());
  const size_t us = rest.rfind('_');
  if (us == std::string_view::npos || us == 0) return false;
  std::string_view num = rest.substr(us + 1);
  int64_t n = 0;
  auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), n);
  if (ec != std::errc() || p != num.data() + num.size() || num.empty() || n <= 0) return false;
  *batch_id = "batch_" + std::string(rest.substr(0, us));
  *line = n;
  return true;
}

std::string LowerCode(std::string_view code) {
  std::string s(code);
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return s;
}

}  // namespace tidegate::batch
