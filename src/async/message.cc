#include "async/message.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <nlohmann/json.hpp>

namespace tidegate::async {
namespace {

using json = nlohmann::json;

// nlohmann's dump() recurses per nesting level, so absurdly deep input is refused up front.
constexpr int kMaxDepth = 128;

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// Deepest [ / { nesting outside strings (a cheap pre-scan; the JSON parser validates later).
bool DepthWithin(std::string_view data, int limit) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (char c : data) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limit) return false;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return true;
}

const char* TypeName(const json& j) { return j.type_name(); }

bool ValidId(const std::string& id, const char* field, std::string* error) {
  if (id.empty()) {
    *error = std::string("\"") + field + "\" is empty";
    return false;
  }
  if (id.size() > kMaxIdBytes) {
    *error =
        std::string("\"") + field + "\" is longer than " + std::to_string(kMaxIdBytes) + " bytes";
    return false;
  }
  for (unsigned char c : id) {
    if (c < 0x20 || c == 0x7f) {
      *error = std::string("\"") + field + "\" contains a control character";
      return false;
    }
  }
  return true;
}

bool IsTokenChar(unsigned char c) {
  return std::isalnum(c) ||
         std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
}

bool ParseTime(const json& j, const char* field, int64_t* out, std::string* error) {
  *out = 0;
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) return true;
  double seconds = 0;
  if (it->is_number_unsigned()) {
    uint64_t v = it->get<uint64_t>();
    seconds = v > static_cast<uint64_t>(kMaxUnixSeconds) ? 1e300 : static_cast<double>(v);
  } else if (it->is_number_integer()) {
    int64_t v = it->get<int64_t>();
    seconds = static_cast<double>(v);
  } else if (it->is_number_float()) {
    seconds = it->get<double>();
  } else if (it->is_string()) {
    const std::string& s = it->get_ref<const std::string&>();
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), seconds);
    if (s.empty() || ec != std::errc() || ptr != s.data() + s.size()) {
      *error = std::string("\"") + field + "\" is not a number of Unix seconds: \"" + s + "\"";
      return false;
    }
  } else {
    *error =
        std::string("\"") + field + "\" must be a number of Unix seconds, got " + TypeName(*it);
    return false;
  }
  if (!std::isfinite(seconds) || seconds < 0 || seconds > static_cast<double>(kMaxUnixSeconds)) {
    *error = std::string("\"") + field + "\" is out of range (0.." +
             std::to_string(kMaxUnixSeconds) + " Unix seconds)";
    return false;
  }
  *out = static_cast<int64_t>(std::floor(seconds));
  return true;
}

bool IsBatch(const json& j) {
  return j.contains("custom_id") || (j.contains("body") && !j.contains("payload"));
}

// The id a failed message can still be answered under, if any.
std::string RecoverId(const json& j) {
  if (!j.is_object()) return {};
  auto it = j.find(IsBatch(j) ? "custom_id" : "id");
  if (it == j.end() || !it->is_string()) return {};
  std::string id = it->get<std::string>(), ignored;
  return ValidId(id, "id", &ignored) ? id : std::string();
}

bool ParseRequestObject(const json& j, Request* r, std::string* error) {
  *r = Request{};
  const bool batch = IsBatch(j);
  r->format = batch ? RequestFormat::kOpenAIBatch : RequestFormat::kLlmdAsync;
  const char* id_field = batch ? "custom_id" : "id";
  const char* payload_field = batch ? "body" : "payload";
  const char* path_field = batch ? "url" : "path";

  auto id = j.find(id_field);
  if (id == j.end() || id->is_null()) {
    *error = std::string("missing \"") + id_field + "\"";
    return false;
  }
  if (!id->is_string()) {
    *error = std::string("\"") + id_field + "\" must be a string, got " + TypeName(*id);
    return false;
  }
  r->id = id->get<std::string>();
  if (!ValidId(r->id, id_field, error)) return false;

  if (auto m = j.find("method"); m != j.end()) {
    if (!m->is_string() || m->get_ref<const std::string&>() != "POST") {
      *error = "\"method\" must be \"POST\", got " + Dump(*m);
      return false;
    }
  }

  auto payload = j.find(payload_field);
  if (payload == j.end() || payload->is_null()) {
    *error = std::string("missing \"") + payload_field + "\"";
    return false;
  }
  if (!payload->is_object()) {
    *error = std::string("\"") + payload_field +
             "\" must be an object (the OpenAI request body)"
             ", got " +
             TypeName(*payload);
    return false;
  }
  r->payload = Dump(*payload);

  if (auto p = j.find(path_field); p != j.end() && !p->is_null()) {
    if (!p->is_string()) {
      *error = std::string("\"") + path_field + "\" must be a string, got " + TypeName(*p);
      return false;
    }
    r->path = p->get<std::string>();
    const auto& paths = SupportedPaths();
    if (std::find(paths.begin(), paths.end(), r->path) == paths.end()) {
      *error = std::string("unknown ") + path_field + " \"" + r->path + "\" (supported: ";
      for (size_t i = 0; i < paths.size(); ++i) *error += (i ? ", " : "") + paths[i];
      *error += ")";
      return false;
    }
  } else if (payload->contains("messages")) {
    r->path = SupportedPaths()[0];
  } else if (payload->contains("prompt")) {
    r->path = SupportedPaths()[1];
  } else if (payload->contains("input")) {
    r->path = SupportedPaths()[2];
  } else {
    *error = std::string("no \"") + path_field + "\" and the " + payload_field +
             " has none of \"messages\", \"prompt\", \"input\" to infer it from";
    return false;
  }

  if (!ParseTime(j, "created", &r->created, error) ||
      !ParseTime(j, "deadline", &r->deadline, error) ||
      !ParseTime(j, "soft_deadline", &r->soft_deadline, error))
    return false;
  if (r->deadline != 0 && r->soft_deadline > r->deadline) {
    *error = "\"soft_deadline\" (" + std::to_string(r->soft_deadline) +
             ") is after \"deadline\" (" + std::to_string(r->deadline) + ")";
    return false;
  }
  if (r->created != 0 && r->deadline != 0 && r->deadline < r->created) {
    *error = "\"deadline\" (" + std::to_string(r->deadline) + ") is before \"created\" (" +
             std::to_string(r->created) + ")";
    return false;
  }

  if (auto m = j.find("metadata"); m != j.end() && !m->is_null()) {
    if (!m->is_object()) {
      *error = std::string("\"metadata\" must be an object, got ") + TypeName(*m);
      return false;
    }
    for (auto it = m->begin(); it != m->end(); ++it)
      r->metadata[it.key()] = it->is_string() ? it->get<std::string>() : Dump(*it);
  }

  if (auto h = j.find("headers"); h != j.end() && !h->is_null()) {
    if (!h->is_object()) {
      *error = std::string("\"headers\" must be an object, got ") + TypeName(*h);
      return false;
    }
    static const char* const kReserved[] = {"content-length", "transfer-encoding", "host",
                                            "connection",     "upgrade",           "te",
                                            "trailer",        "keep-alive"};
    for (auto it = h->begin(); it != h->end(); ++it) {
      const std::string& name = it.key();
      if (name.empty() ||
          !std::all_of(name.begin(), name.end(), [](char c) { return IsTokenChar(c); })) {
        *error = "header name \"" + name + "\" is not a valid HTTP token";
        return false;
      }
      const std::string lower = LowerAscii(name);
      if (std::find(std::begin(kReserved), std::end(kReserved), lower) != std::end(kReserved)) {
        *error = "header \"" + name + "\" is set by the processor and may not be given";
        return false;
      }
      if (!it->is_string()) {
        *error = "header \"" + name + "\" must be a string, got " + TypeName(*it);
        return false;
      }
      const std::string& value = it->get_ref<const std::string&>();
      if (value.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos) {
        *error = "header \"" + name + "\" contains CR, LF or NUL";
        return false;
      }
      r->headers.emplace_back(name, value);
    }
  }
  return true;
}

}  // namespace

std::string_view ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kNone:
      return "";
    case ErrorCode::kDeadlineExceeded:
      return "DEADLINE_EXCEEDED";
    case ErrorCode::kCancelled:
      return "CANCELLED";
    case ErrorCode::kInvalidRequest:
      return "INVALID_REQUEST";
    case ErrorCode::kInferenceError:
      return "INFERENCE_ERROR";
    case ErrorCode::kShedExhausted:
      return "SHED_EXHAUSTED";
  }
  return "";
}

bool ParseErrorCode(std::string_view name, ErrorCode* code) {
  for (ErrorCode c :
       {ErrorCode::kNone, ErrorCode::kDeadlineExceeded, ErrorCode::kCancelled,
        ErrorCode::kInvalidRequest, ErrorCode::kInferenceError, ErrorCode::kShedExhausted}) {
    if (ErrorCodeName(c) == name) {
      *code = c;
      return true;
    }
  }
  return false;
}

const std::vector<std::string>& SupportedPaths() {
  static const std::vector<std::string> paths = {"/v1/chat/completions", "/v1/completions",
                                                 "/v1/embeddings"};
  return paths;
}

ParsedRequest ParseRequestMessage(std::string_view data, std::string_view fallback_id) {
  ParsedRequest out;
  auto fail = [&](std::string message, std::string id) {
    out.request = Request{};
    out.request.id = id.empty() ? std::string(fallback_id) : std::move(id);
    out.error = ErrorCode::kInvalidRequest;
    out.error_message = std::move(message);
    return out;
  };
  if (!DepthWithin(data, kMaxDepth))
    return fail("JSON nested deeper than " + std::to_string(kMaxDepth) + " levels", "");
  json j = json::parse(data, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return fail("not valid JSON", "");
  if (!j.is_object()) return fail(std::string("not a JSON object (got ") + TypeName(j) + ")", "");
  std::string error;
  if (!ParseRequestObject(j, &out.request, &error)) return fail(error, RecoverId(j));
  return out;
}

std::string RenderRequestMessage(const Request& request) {
  json j = json::object();
  j["id"] = request.id;
  j["created"] = request.created;
  j["deadline"] = request.deadline;
  if (request.soft_deadline != 0) j["soft_deadline"] = request.soft_deadline;
  j["path"] = request.path;
  j["payload"] = json::parse(request.payload, nullptr, /*allow_exceptions=*/false);
  if (j["payload"].is_discarded()) j["payload"] = nullptr;
  if (!request.metadata.empty()) j["metadata"] = request.metadata;
  if (!request.headers.empty()) {
    json h = json::object();
    for (const auto& [k, v] : request.headers) h[k] = v;
    j["headers"] = std::move(h);
  }
  return Dump(j);
}

std::string RenderResultMessage(const Result& result) {
  json j = json::object();
  j["id"] = result.id;
  j["status_code"] = result.status_code;
  j["payload"] = result.payload;
  if (result.error_code != ErrorCode::kNone) {
    j["error_code"] = std::string(ErrorCodeName(result.error_code));
    j["error_message"] = result.error_message;
  }
  return Dump(j);
}

bool ParseResultMessage(std::string_view data, Result* out, std::string* error) {
  *out = Result{};
  if (!DepthWithin(data, kMaxDepth)) {
    *error = "result message nested too deeply";
    return false;
  }
  json j = json::parse(data, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    *error = "result message is not a JSON object";
    return false;
  }
  auto id = j.find("id");
  if (id == j.end() || !id->is_string()) {
    *error = "result message has no string \"id\"";
    return false;
  }
  out->id = id->get<std::string>();
  auto status = j.find("status_code");
  if (status == j.end() || !status->is_number_integer() ||
      (status->is_number_unsigned()
           ? status->get<uint64_t>() > 999
           : (status->get<int64_t>() < 0 || status->get<int64_t>() > 999))) {
    *error = "result \"" + out->id + "\": \"status_code\" must be an integer in 0..999";
    return false;
  }
  out->status_code = static_cast<int>(status->get<int64_t>());
  if (auto p = j.find("payload"); p != j.end() && !p->is_null()) {
    if (!p->is_string()) {
      *error = "result \"" + out->id + "\": \"payload\" must be a string";
      return false;
    }
    out->payload = p->get<std::string>();
  }
  if (auto c = j.find("error_code"); c != j.end() && !c->is_null()) {
    if (!c->is_string() || !ParseErrorCode(c->get_ref<const std::string&>(), &out->error_code)) {
      *error = "result \"" + out->id + "\": unknown \"error_code\" " + Dump(*c);
      return false;
    }
  }
  if (auto m = j.find("error_message"); m != j.end() && !m->is_null()) {
    if (!m->is_string()) {
      *error = "result \"" + out->id + "\": \"error_message\" must be a string";
      return false;
    }
    out->error_message = m->get<std::string>();
  }
  return true;
}

bool BuildRequestMessage(std::string_view line, std::chrono::system_clock::time_point now,
                         std::chrono::seconds default_deadline, std::string_view fallback_id,
                         std::string* message, std::string* id, std::string* error) {
  if (!DepthWithin(line, kMaxDepth)) {
    *error = "JSON nested deeper than " + std::to_string(kMaxDepth) + " levels";
    return false;
  }
  json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    *error = "not valid JSON";
    return false;
  }
  if (!j.is_object()) {
    *error = std::string("not a JSON object (got ") + TypeName(j) + ")";
    return false;
  }
  if (!j.contains("id") && !j.contains("custom_id") && !j.contains("payload") &&
      !j.contains("body")) {
    j = json{{"payload", std::move(j)}};  // a bare OpenAI body
  }
  const char* id_field = IsBatch(j) ? "custom_id" : "id";
  if (!j.contains(id_field) || j[id_field].is_null()) j[id_field] = std::string(fallback_id);
  const int64_t now_s =
      std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  if (!j.contains("created") || j["created"].is_null()) j["created"] = now_s;
  if (!j.contains("deadline") || j["deadline"].is_null()) {
    int64_t d = now_s + default_deadline.count();
    // A soft deadline beyond the default hard one moves the hard one out to it.
    if (auto soft = j.find("soft_deadline"); soft != j.end() && soft->is_number_integer())
      d = std::max(d, soft->get<int64_t>());
    j["deadline"] = d;
  }
  Request r;
  if (!ParseRequestObject(j, &r, error)) return false;
  *message = RenderRequestMessage(r);
  *id = r.id;
  return true;
}

std::string LowerAscii(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace tidegate::async
