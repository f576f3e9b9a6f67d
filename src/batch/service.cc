// batch/service.cc — see service.h.
#include "batch/service.h"

#include <spdlog/spdlog.h>

#include <array>
#include <atomic>
#include <charconv>
#include <condition_variable>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <shared_mutex>
#include <thread>
#include <unordered_set>

#include "async/message.h"
#include "batch/multipart.h"
#include "batch/store.h"
#include "queue/queue.h"
#include "wire/errors.h"

namespace tidegate::batch {

using nlohmann::json;

namespace {

int64_t SystemSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

ApiReply Error(int status, std::string_view message, std::string_view code = "",
               std::string_view type = "invalid_request_error") {
  ApiReply r;
  r.status = status;
  r.body = wire::ErrorBody(message, type, code);
  return r;
}

ApiReply Json(std::string body) {
  ApiReply r;
  r.body = std::move(body);
  return r;
}

ApiReply NotAllowed(std::string_view method, std::string_view path, std::string allow) {
  ApiReply r = Error(
      405,
      std::string(method) + " is not allowed on " + std::string(path) + " (allowed: " + allow + ")",
      "method_not_allowed");
  r.allow = std::move(allow);
  return r;
}

// The value of `key` in a query string ("" when absent).
std::string_view QueryParam(std::string_view query, std::string_view key) {
  while (!query.empty()) {
    std::string_view pair = query.substr(0, query.find('&'));
    query.remove_prefix(std::min(query.size(), pair.size() + 1));
    if (pair.substr(0, pair.find('=')) == key && pair.size() > key.size())
      return pair.substr(key.size() + 1);
  }
  return {};
}

// Splits "/v1/files/ID/content" after the prefix into ("ID", "content").
std::pair<std::string_view, std::string_view> Tail(std::string_view path, std::string_view prefix) {
  std::string_view rest = path.substr(prefix.size());
  if (!rest.empty() && rest.front() == '/') rest.remove_prefix(1);
  const size_t slash = rest.find('/');
  if (slash == std::string_view::npos) return {rest, {}};
  return {rest.substr(0, slash), rest.substr(slash + 1)};
}

std::string ListJson(const std::vector<std::string>& items, const std::string& first,
                     const std::string& last, bool has_more) {
  std::string out = "{\"object\":\"list\",\"data\":[";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += ',';
    out += items[i];
  }
  out += "],\"first_id\":";
  out += first.empty() ? "null" : json(first).dump();
  out += ",\"last_id\":";
  out += last.empty() ? "null" : json(last).dump();
  out += ",\"has_more\":";
  out += has_more ? "true" : "false";
  out += '}';
  return out;
}

}  // namespace

struct Service::Impl {
  ServiceOptions opts;
  std::unique_ptr<Store> store;
  std::unique_ptr<queue::Queue> requests, results;
  // Serializes every change of a batch record (the runner's and a cancel's).
  std::mutex state_mu;
  // Batches whose lines the gateway refuses (cancelling, cancelled, expired).
  mutable std::shared_mutex refused_mu;
  std::unordered_set<std::string> refused;
  std::atomic<bool> any_refused{false};
  // Metrics.
  std::atomic<uint64_t> lines_published{0};
  std::array<std::atomic<uint64_t>, 4> lines_answered{};  // completed, failed, expired, cancelled
  mutable std::mutex counts_mu;
  std::map<std::string, int64_t> by_status;

  void CountAnswered(const std::vector<Store::Recorded>& outcomes, const std::vector<char>& fresh) {
    for (size_t i = 0; i < outcomes.size() && i < fresh.size(); ++i) {
      if (!fresh[i]) continue;
      const LineOutcome& o = outcomes[i].outcome;
      const size_t k = IsSuccess(o)                        ? 0
                       : o.error_code == "batch_expired"   ? 2
                       : o.error_code == "batch_cancelled" ? 3
                                                           : 1;
      lines_answered[k].fetch_add(1, std::memory_order_relaxed);
    }
  }
  std::thread runner;
  std::mutex wake_mu;
  std::condition_variable wake_cv;
  bool stop = false;
  bool kicked = false;
  std::chrono::steady_clock::time_point last_result = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_warned{};

  int64_t NowSeconds() const { return opts.now ? opts.now() : SystemSeconds(); }

  void Kick() {
    {
      std::lock_guard lock(wake_mu);
      kicked = true;
    }
    wake_cv.notify_all();
  }

  void Refuse(const std::string& batch_id) {
    std::unique_lock lock(refused_mu);
    refused.insert(batch_id);
    any_refused.store(true);
  }

  // --------------------------------------------------------------------------------------
  // Files

  ApiReply UploadFile(const ApiRequest& req) {
    std::string err;
    const std::string boundary = ExtractBoundary(req.content_type, &err);
    if (boundary.empty())
      return Error(400,
                   "POST /v1/files takes multipart/form-data with the parts 'purpose' and "
                   "'file': " +
                       err);
    std::vector<FormPart> parts;
    if (!ParseMultipart(req.body, boundary, &parts, &err)) return Error(400, err);
    const FormPart* purpose = FindPart(parts, "purpose");
    const FormPart* file = FindPart(parts, "file");
    if (purpose == nullptr)
      return Error(400, "the upload has no 'purpose' part (use purpose=batch)",
                   "missing_required_parameter");
    if (file == nullptr)
      return Error(400, "the upload has no 'file' part", "missing_required_parameter");
    if (purpose->data != kBatchPurpose)
      return Error(400, "purpose must be \"batch\": tidegate stores files for the Batch API only",
                   "invalid_value");
    if (file->data.size() > opts.limits.max_bytes)
      return Error(413,
                   "the file has " + std::to_string(file->data.size()) +
                       " bytes; a batch input file may have at most " +
                       std::to_string(opts.limits.max_bytes),
                   "file_too_large");
    FileRecord f;
    f.id = NewFileId();
    f.owner = std::string(req.owner);
    f.filename = file->has_filename ? std::string(file->filename) : "upload.jsonl";
    f.purpose = std::string(kBatchPurpose);
    f.created_at = NowSeconds();
    if (!store->CreateFile(&f, file->data, &err)) {
      spdlog::error("batch: storing an upload failed: {}", err);
      return Error(500, "the file could not be stored: " + err, "server_error", "server_error");
    }
    spdlog::info("batch: file {} ({}, {} bytes) uploaded", f.id, f.filename, f.bytes);
    return Json(FileJson(f));
  }

  ApiReply Files(const ApiRequest& req) {
    auto [id, rest] = Tail(req.path, "/v1/files");
    if (id.empty()) {
      if (req.method == "POST") return UploadFile(req);
      if (req.method != "GET") return NotAllowed(req.method, req.path, "GET, POST");
      std::vector<std::string> items;
      std::string purpose(QueryParam(req.query, "purpose"));
      auto files = store->ListFiles(req.owner, purpose);
      for (const auto& f : files) items.push_back(FileJson(f));
      return Json(ListJson(items, files.empty() ? "" : files.front().id,
                           files.empty() ? "" : files.back().id, false));
    }
    auto f = store->GetFile(id, req.owner);
    if (!f) return Error(404, "No such File object: " + std::string(id), "file_not_found");
    if (rest == "content") {
      if (req.method != "GET") return NotAllowed(req.method, req.path, "GET");
      ApiReply r;
      std::string err;
      if (!store->ReadFile(id, &r.body, &err))
        return Error(500, "the file could not be read: " + err, "server_error", "server_error");
      r.content_type = "application/octet-stream";
      return r;
    }
    if (!rest.empty()) return Error(404, "no route for " + std::string(req.path), "not_found");
    if (req.method == "GET") return Json(FileJson(*f));
    if (req.method == "DELETE") {
      std::string err;
      if (!store->DeleteFile(id, req.owner, &err)) {
        if (!err.empty())
          return Error(500, "the file could not be deleted: " + err, "server_error",
                       "server_error");
        return Error(404, "No such File object: " + std::string(id), "file_not_found");
      }
      spdlog::info("batch: file {} deleted", id);
      return Json(json{{"id", id}, {"object", "file"}, {"deleted", true}}.dump());
    }
    return NotAllowed(req.method, req.path, "GET, DELETE");
  }

  // --------------------------------------------------------------------------------------
  // Batches

  ApiReply CreateBatch(const ApiRequest& req) {
    json j = json::parse(req.body, nullptr, false);
    if (j.is_discarded() || !j.is_object())
      return Error(400,
                   "the request body must be a JSON object {input_file_id, endpoint, "
                   "completion_window, metadata}");
    for (const char* key : {"input_file_id", "endpoint", "completion_window"}) {
      if (!j.contains(key) || !j[key].is_string())
        return Error(400, std::string("'") + key + "' is required (a string)",
                     "missing_required_parameter");
    }
    BatchRecord b;
    b.input_file_id = j["input_file_id"].get<std::string>();
    b.endpoint = j["endpoint"].get<std::string>();
    b.completion_window = j["completion_window"].get<std::string>();
    if (!SupportedEndpoint(b.endpoint))
      return Error(400,
                   "endpoint must be /v1/chat/completions, /v1/completions or /v1/embeddings, "
                   "not '" +
                       b.endpoint + "'",
                   "invalid_value");
    std::string err;
    auto window = ParseWindow(b.completion_window, &err);
    if (!window) return Error(400, err, "invalid_value");
    if (j.contains("metadata") && !j["metadata"].is_null()) {
      const json& m = j["metadata"];
      if (!m.is_object() || m.size() > 16)
        return Error(400, "metadata must be an object of at most 16 string values",
                     "invalid_value");
      for (const auto& [k, v] : m.items()) {
        if (!v.is_string() || k.size() > 64 || v.get_ref<const std::string&>().size() > 512)
          return Error(400,
                       "metadata values must be strings (keys up to 64 characters, values up "
                       "to 512); '" +
                           k + "' is not",
                       "invalid_value");
        b.metadata[k] = v.get<std::string>();
      }
    }
    auto f = store->GetFile(b.input_file_id, req.owner);
    if (!f) return Error(404, "No such File object: " + b.input_file_id, "file_not_found");
    if (f->purpose != kBatchPurpose)
      return Error(400, "the input file must have purpose \"batch\", not \"" + f->purpose + "\"",
                   "invalid_value");
    b.id = NewBatchId();
    b.owner = std::string(req.owner);
    b.status = Status::kValidating;
    b.created_at = NowSeconds();
    b.expires_at = b.created_at + *window;
    if (!store->CreateBatch(b, &err))
      return Error(500, "the batch could not be stored: " + err, "server_error", "server_error");
    spdlog::info("batch: {} created on {} ({}, window {})", b.id, b.input_file_id, b.endpoint,
                 b.completion_window);
    Kick();
    return Json(BatchJson(b));
  }

  ApiReply Batches(const ApiRequest& req) {
    auto [id, rest] = Tail(req.path, "/v1/batches");
    if (id.empty()) {
      if (req.method == "POST") return CreateBatch(req);
      if (req.method != "GET") return NotAllowed(req.method, req.path, "GET, POST");
      int limit = 20;
      if (std::string_view l = QueryParam(req.query, "limit"); !l.empty()) {
        auto [p, ec] = std::from_chars(l.data(), l.data() + l.size(), limit);
        if (ec != std::errc() || p != l.data() + l.size() || limit < 1 || limit > 100)
          return Error(400, "limit must be an integer from 1 to 100", "invalid_value");
      }
      bool has_more = false;
      auto list = store->ListBatches(req.owner, QueryParam(req.query, "after"), limit, &has_more);
      std::vector<std::string> items;
      for (const auto& b : list) items.push_back(BatchJson(b));
      return Json(ListJson(items, list.empty() ? "" : list.front().id,
                           list.empty() ? "" : list.back().id, has_more));
    }
    auto b = store->GetBatch(id);
    if (!b || b->owner != req.owner)
      return Error(404, "No such Batch object: " + std::string(id), "batch_not_found");
    if (rest.empty()) {
      if (req.method != "GET") return NotAllowed(req.method, req.path, "GET");
      return Json(BatchJson(*b));
    }
    if (rest != "cancel") return Error(404, "no route for " + std::string(req.path), "not_found");
    if (req.method != "POST") return NotAllowed(req.method, req.path, "POST");
    std::lock_guard lock(state_mu);
    b = store->GetBatch(id);
    if (!b) return Error(404, "No such Batch object: " + std::string(id), "batch_not_found");
    if (b->status == Status::kCancelling) return Json(BatchJson(*b));
    if (IsTerminal(b->status) || b->status == Status::kFinalizing)
      return Error(409,
                   "the batch is " + std::string(StatusName(b->status)) +
                       "; only a validating or in_progress batch can be cancelled",
                   "batch_not_cancellable");
    b->status = Status::kCancelling;
    b->cancelling_at = NowSeconds();
    std::string err;
    if (!store->UpdateBatch(*b, &err))
      return Error(500, "the batch could not be updated: " + err, "server_error", "server_error");
    Refuse(b->id);
    spdlog::info("batch: {} cancelling ({} of {} lines answered)", b->id, b->completed + b->failed,
                 b->total);
    Kick();
    return Json(BatchJson(*b));
  }

  // --------------------------------------------------------------------------------------
  // The runner

  void Validate(const std::string& id) {
    std::string content, err;
    BatchRecord b;
    {
      std::lock_guard lock(state_mu);
      auto got = store->GetBatch(id);
      if (!got || got->status != Status::kValidating) return;
      b = *got;
    }
    std::vector<LineError> errors;
    Validation v;
    if (!store->ReadFile(b.input_file_id, &content, &err)) {
      errors.push_back({"file_not_found", "the input file cannot be read: " + err, 0, ""});
    } else {
      v = ValidateInput(content, b.endpoint, opts.limits);
      errors = v.errors;
    }
    std::lock_guard lock(state_mu);
    auto got = store->GetBatch(id);
    if (!got) return;
    b = *got;
    const int64_t now = NowSeconds();
    if (b.status == Status::kCancelling) {  // cancelled while validating: nothing was sent
      b.status = Status::kCancelled;
      b.cancelled_at = now;
      if (!store->UpdateBatch(b, &err)) spdlog::error("batch: {}: {}", id, err);
      return;
    }
    if (!errors.empty()) {
      b.status = Status::kFailed;
      b.failed_at = now;
      b.errors_json = ErrorsJson(errors);
      if (!store->UpdateBatch(b, &err)) {
        spdlog::error("batch: {}: {}", id, err);
        return;
      }
      spdlog::warn("batch: {} failed validation: {} error(s), the first on line {}: {}", id,
                   v.error_count ? v.error_count : errors.size(), errors.front().line,
                   errors.front().message);
      return;
    }
    b.status = Status::kInProgress;
    b.in_progress_at = now;
    b.total = static_cast<int64_t>(v.lines.size());
    if (!store->StartBatch(b, v.lines, &err)) {
      spdlog::error("batch: {}: {}", id, err);
      return;
    }
    spdlog::info("batch: {} in progress: {} requests", id, b.total);
  }

  // Publishes the next lines of an in-progress batch. Returns false when nothing was left.
  bool PublishSome(const BatchRecord& snapshot) {
    const int64_t left = snapshot.total - snapshot.published;
    if (left <= 0) return false;
    const int64_t n = std::min<int64_t>(left, opts.publish_chunk);
    std::vector<InputLine> lines = store->LinesFrom(snapshot.id, snapshot.published, n);
    if (lines.empty()) return false;
    std::string block, err;
    const uint64_t from = lines.front().offset;
    const uint64_t to = lines.back().offset + lines.back().length;
    if (!store->ReadRange(snapshot.input_file_id, from, to - from, &block, &err)) {
      spdlog::error("batch: {}: {}", snapshot.id, err);
      return false;
    }
    std::vector<std::string> messages;
    messages.reserve(lines.size());
    for (const auto& l : lines) {
      std::string_view text(block.data() + (l.offset - from), l.length);
      async::ParsedRequest parsed = async::ParseRequestMessage(text, "");
      if (!parsed.ok()) {  // validated before, so the file changed under us
        spdlog::error("batch: {} line {} no longer parses: {}", snapshot.id, l.line,
                      parsed.error_message);
        return false;
      }
      async::Request r = std::move(parsed.request);
      r.id = LineRequestId(snapshot.id, l.line);
      r.created = snapshot.in_progress_at;
      r.deadline = snapshot.expires_at;
      r.soft_deadline = snapshot.expires_at;
      r.format = async::RequestFormat::kLlmdAsync;
      r.metadata[std::string(async::kBatchIdMetadata)] = snapshot.id;
      r.metadata["custom_id"] = l.custom_id;
      messages.push_back(async::RenderRequestMessage(r));
    }
    size_t published = 0;
    queue::Status st = requests->PublishBatch(messages, &published);
    if (!st.ok) spdlog::warn("batch: {}: publishing lines failed: {}", snapshot.id, st.error);
    if (published == 0) return false;
    lines_published.fetch_add(published, std::memory_order_relaxed);
    std::lock_guard lock(state_mu);
    auto b = store->GetBatch(snapshot.id);
    if (!b) return false;
    b->published += static_cast<int64_t>(published);
    if (!store->UpdateBatch(*b, &err)) spdlog::error("batch: {}: {}", snapshot.id, err);
    return st.ok;
  }

  // Takes the results there are and stores them as line outcomes; true when any came.
  bool ConsumeResults(std::chrono::milliseconds wait) {
    std::vector<queue::Message> msgs;
    queue::Status st = results->Pull(500, std::chrono::seconds(60), wait, &msgs);
    if (!st.ok) {
      spdlog::warn("batch: reading results failed: {}", st.error);
      return false;
    }
    if (msgs.empty()) return false;
    last_result = std::chrono::steady_clock::now();
    std::vector<Store::Recorded> outcomes;
    std::vector<std::string> acks;
    for (auto& m : msgs) {
      acks.push_back(m.ack_id);
      async::Result r;
      std::string err, batch_id;
      int64_t line = 0;
      if (!async::ParseResultMessage(m.data, &r, &err) ||
          !ParseLineRequestId(r.id, &batch_id, &line)) {
        spdlog::warn(
            "batch: message {} on the batch results queue is not the result of a batch line "
            "({}); dropped",
            m.id, err.empty() ? "id " + r.id : err);
        continue;
      }
      Store::Recorded rec;
      rec.batch_id = std::move(batch_id);
      LineOutcome& o = rec.outcome;
      o.line = line;
      o.request_id = r.id;
      o.status_code = r.status_code;
      o.body = std::move(r.payload);
      if (r.error_code != async::ErrorCode::kNone) {
        o.error_code = LowerCode(async::ErrorCodeName(r.error_code));
        o.error_message = std::move(r.error_message);
      }
      if (r.error_code == async::ErrorCode::kDeadlineExceeded) {
        // The line's deadline is the batch's expiry.
        o.error_code = "batch_expired";
        o.error_message = "the batch's completion window passed before this request was served";
      } else if (r.status_code == 409 && o.body.find("batch_cancelled") != std::string::npos) {
        o.status_code = 0;
        o.body.clear();
        o.error_code = "batch_cancelled";
        o.error_message = "the batch was cancelled before this request started";
      }
      outcomes.push_back(std::move(rec));
    }
    std::string err;
    int64_t stored;
    std::vector<char> fresh;
    {
      std::lock_guard lock(state_mu);
      stored = store->RecordOutcomes(outcomes, &err, &fresh);
    }
    CountAnswered(outcomes, fresh);
    if (stored < 0) {
      spdlog::error("batch: storing {} result(s) failed: {} (they are redelivered)",
                    outcomes.size(), err);
      results->Nack(acks);
      return false;
    }
    if (queue::Status a = results->Ack(acks); !a.ok)
      spdlog::warn(
          "batch: acknowledging results failed: {} (they are redelivered, and "
          "ignored)",
          a.error);
    return true;
  }

  // Ends a batch: the unanswered lines get `code`, then the output and error files are written.
  void Finish(BatchRecord b, Status final_status, const char* code, const char* message) {
    std::string err;
    const int64_t now = NowSeconds();
    {
      std::lock_guard lock(state_mu);
      auto cur = store->GetBatch(b.id);
      if (!cur || IsTerminal(cur->status)) return;
      b = *cur;
      if (b.status != Status::kFinalizing) {
        b.finalizing_at = now;
        b.status = Status::kFinalizing;
        if (!store->UpdateBatch(b, &err)) {
          spdlog::error("batch: {}: {}", b.id, err);
          return;
        }
      }
      std::vector<Store::Recorded> unanswered;
      if (!store->ForEachLine(
              b.id,
              [&](const Store::LineState& s) {
                if (s.answered) return;
                Store::Recorded r{b.id, s.outcome};
                r.outcome.request_id = LineRequestId(b.id, s.outcome.line);
                r.outcome.error_code = code;
                r.outcome.error_message = message;
                unanswered.push_back(std::move(r));
              },
              &err)) {
        spdlog::error("batch: {}: {}", b.id, err);
        return;
      }
      std::vector<char> fresh;
      if (store->RecordOutcomes(unanswered, &err, &fresh) < 0) {
        spdlog::error("batch: {}: {}", b.id, err);
        return;
      }
      CountAnswered(unanswered, fresh);
    }
    std::string out, errors;
    int64_t expired_lines = 0;
    if (!store->ForEachLine(
            b.id,
            [&](const Store::LineState& s) {
              LineOutcome o = s.outcome;
              o.request_id = LineRequestId(b.id, o.line);
              if (o.error_code == "batch_expired") ++expired_lines;
              std::string& dst = IsSuccess(o) ? out : errors;
              dst += OutputLine(o);
              dst += '\n';
            },
            &err)) {
      spdlog::error("batch: {}: {}", b.id, err);
      return;
    }
    auto write = [&](const std::string& content, const char* suffix, std::string* id) {
      if (content.empty()) return true;
      FileRecord f;
      f.id = NewFileId();
      f.owner = b.owner;
      f.filename = b.id + suffix;
      f.purpose = std::string(kOutputPurpose);
      f.created_at = NowSeconds();
      if (!store->CreateFile(&f, content, &err)) return false;
      *id = f.id;
      return true;
    };
    // Lines the processor gave up on at their deadline (the window's end): the batch expired,
    // even when their results arrived before the runner saw the window pass.
    if (final_status == Status::kCompleted && expired_lines > 0) final_status = Status::kExpired;
    std::string out_id, err_id;
    if (!write(out, "_output.jsonl", &out_id) || !write(errors, "_error.jsonl", &err_id)) {
      spdlog::error("batch: {}: writing its output failed: {} (retried)", b.id, err);
      return;
    }
    std::lock_guard lock(state_mu);
    auto cur = store->GetBatch(b.id);
    if (!cur) return;
    b = *cur;
    b.output_file_id = out_id;
    b.error_file_id = err_id;
    b.status = final_status;
    const int64_t end = NowSeconds();
    if (final_status == Status::kCompleted) b.completed_at = end;
    if (final_status == Status::kExpired) b.expired_at = end;
    if (final_status == Status::kCancelled) b.cancelled_at = end;
    if (!store->UpdateBatch(b, &err)) {
      spdlog::error("batch: {}: {}", b.id, err);
      return;
    }
    if (final_status != Status::kCompleted) Refuse(b.id);
    spdlog::info("batch: {} {}: {} completed, {} failed of {}", b.id, StatusName(final_status),
                 b.completed, b.failed, b.total);
  }

  // Lines out for a while and no result at all: most likely the processor publishes batch
  // results elsewhere. Said once every 5 minutes.
  void WarnIfNoResults(int64_t outstanding) {
    const auto now = std::chrono::steady_clock::now();
    if (outstanding == 0) {
      last_result = now;
      return;
    }
    if (now - last_result < std::chrono::seconds(120) ||
        now - last_warned < std::chrono::minutes(5))
      return;
    last_warned = now;
    spdlog::warn(
        "batch: {} line(s) are out and no result arrived on the batch results queue ({}) for 2 "
        "minutes; is the async processor run with --batch-responses pointing at it?",
        outstanding, queue::RedactUri(opts.results));
  }

  void Advance() {
    const int64_t now = NowSeconds();
    std::vector<BatchRecord> unfinished = store->UnfinishedBatches();
    int64_t outstanding = 0;
    for (const BatchRecord& b : unfinished)
      if (b.status == Status::kInProgress || b.status == Status::kCancelling)
        outstanding += std::max<int64_t>(0, b.published - b.completed - b.failed);
    WarnIfNoResults(outstanding);
    for (BatchRecord& b : unfinished) {
      switch (b.status) {
        case Status::kValidating: {
          Validate(b.id);
          auto fresh = store->GetBatch(b.id);
          if (!fresh || fresh->status != Status::kInProgress) break;
          b = *fresh;
          [[fallthrough]];
        }
        case Status::kInProgress:
          if (b.completed + b.failed >= b.total) {
            Finish(b, Status::kCompleted, "", "");
          } else if (now >= b.expires_at) {
            Refuse(b.id);
            Finish(b, Status::kExpired, "batch_expired",
                   "the batch's completion window passed before this request was served");
          } else {
            for (int i = 0; i < 8 && PublishSome(b); ++i) {
              auto fresh = store->GetBatch(b.id);
              if (!fresh || fresh->status != Status::kInProgress) break;
              b = *fresh;
            }
          }
          break;
        case Status::kCancelling:
          if (b.completed + b.failed >= b.published ||
              now >= b.cancelling_at + opts.cancel_grace.count() || now >= b.expires_at) {
            Finish(b, Status::kCancelled, "batch_cancelled",
                   "the batch was cancelled before this request was served");
          }
          break;
        case Status::kFinalizing: {  // a restart during finalization: finish it
          const bool expired =
              b.expired_at == 0 && now >= b.expires_at && b.completed + b.failed < b.total;
          Finish(b,
                 b.cancelling_at ? Status::kCancelled
                 : expired       ? Status::kExpired
                                 : Status::kCompleted,
                 b.cancelling_at ? "batch_cancelled" : "batch_expired",
                 "the batch ended before this request was served");
          break;
        }
        default:
          break;
      }
    }
  }

  void RunOnce(std::chrono::milliseconds wait) {
    Advance();
    {
      auto counts = store->CountByStatus();
      std::lock_guard lock(counts_mu);
      by_status = std::move(counts);
    }
    // Drain what has arrived (a bounded number of rounds, so batches keep advancing).
    for (int i = 0; i < 20 && ConsumeResults(i == 0 ? wait : std::chrono::milliseconds(0)); ++i) {
    }
  }

  void Loop() {
    auto last_collect = std::chrono::steady_clock::now();
    for (;;) {
      {
        std::unique_lock lock(wake_mu);
        if (stop) return;
        kicked = false;
      }
      try {
        RunOnce(opts.tick);
      } catch (const std::exception& e) {
        spdlog::error("batch: the runner hit an error and goes on: {}", e.what());
        std::this_thread::sleep_for(opts.tick);
      }
      if (std::chrono::steady_clock::now() - last_collect > std::chrono::seconds(60)) {
        store->CollectDeletedFiles();
        last_collect = std::chrono::steady_clock::now();
      }
    }
  }
};

std::unique_ptr<Service> Service::Open(const ServiceOptions& opts, std::string* error) {
  if (opts.requests.empty() || opts.results.empty()) {
    *error =
        "the Batch API needs both queues: --batch-queue (where the async processor reads "
        "requests) and --batch-results (its --batch-responses)";
    return nullptr;
  }
  std::unique_ptr<Service> s(new Service());
  s->impl_ = std::make_unique<Impl>();
  Impl& im = *s->impl_;
  im.opts = opts;
  im.store = Store::Open(opts.dir, error);
  if (!im.store) return nullptr;
  std::string err;
  im.requests = queue::OpenQueue(opts.requests, &err);
  if (!im.requests) {
    *error = "--batch-queue: " + err;
    return nullptr;
  }
  im.results = queue::OpenQueue(opts.results, &err);
  if (!im.results) {
    *error = "--batch-results: " + err;
    return nullptr;
  }
  // Lines of batches that ended early may still be queued: keep refusing them.
  for (const auto& id : im.store->EndedEarly(im.NowSeconds())) im.Refuse(id);
  return s;
}

Service::~Service() { Stop(); }

bool Service::Serves(std::string_view path) {
  auto under = [&](std::string_view prefix) {
    return path.substr(0, prefix.size()) == prefix &&
           (path.size() == prefix.size() || path[prefix.size()] == '/');
  };
  return under("/v1/files") || under("/v1/batches");
}

uint64_t Service::MaxBodyBytes() const { return impl_->opts.limits.max_bytes + 64 * 1024; }

ApiReply Service::Handle(const ApiRequest& req) {
  try {
    if (req.path.substr(0, 9) == "/v1/files") return impl_->Files(req);
    return impl_->Batches(req);
  } catch (const std::exception& e) {
    spdlog::error("batch: {} {} failed: {}", req.method, req.path, e.what());
    return Error(500, std::string("the Batch API hit an internal error: ") + e.what(),
                 "server_error", "server_error");
  }
}

bool Service::Refuses(std::string_view request_id) const {
  if (!impl_->any_refused.load(std::memory_order_relaxed)) return false;
  std::string batch_id;
  int64_t line = 0;
  if (!ParseLineRequestId(request_id, &batch_id, &line)) return false;
  std::shared_lock lock(impl_->refused_mu);
  return impl_->refused.count(batch_id) > 0;
}

std::string Service::MetricsText() const {
  const Impl& im = *impl_;
  std::string out =
      "# HELP tidegate_batches Batch API batches by status\n# TYPE tidegate_batches gauge\n";
  {
    std::lock_guard lock(im.counts_mu);
    for (int i = 0; i <= static_cast<int>(Status::kCancelled); ++i) {
      const std::string_view name = StatusName(static_cast<Status>(i));
      auto it = im.by_status.find(std::string(name));
      out += "tidegate_batches{status=\"" + std::string(name) + "\"} " +
             std::to_string(it == im.by_status.end() ? 0 : it->second) + "\n";
    }
  }
  out +=
      "# HELP tidegate_batch_lines_published_total Batch lines published as async requests\n"
      "# TYPE tidegate_batch_lines_published_total counter\n"
      "tidegate_batch_lines_published_total " +
      std::to_string(im.lines_published.load()) +
      "\n# HELP tidegate_batch_lines_answered_total Batch lines answered, by outcome\n"
      "# TYPE tidegate_batch_lines_answered_total counter\n";
  static constexpr const char* kOutcomes[] = {"completed", "failed", "expired", "cancelled"};
  for (size_t k = 0; k < 4; ++k) {
    out += std::string("tidegate_batch_lines_answered_total{outcome=\"") + kOutcomes[k] + "\"} " +
           std::to_string(im.lines_answered[k].load()) + "\n";
  }
  return out;
}

void Service::Start() {
  if (impl_->runner.joinable()) return;
  impl_->runner = std::thread([im = impl_.get()] { im->Loop(); });
}

void Service::Stop() {
  if (!impl_ || !impl_->runner.joinable()) return;
  {
    std::lock_guard lock(impl_->wake_mu);
    impl_->stop = true;
  }
  impl_->wake_cv.notify_all();
  impl_->runner.join();
}

void Service::RunOnce() { impl_->RunOnce(std::chrono::milliseconds(0)); }

}  // namespace tidegate::batch
