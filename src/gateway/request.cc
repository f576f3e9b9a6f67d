#include "gateway/request.h"

#include <simdjson.h>

#include <iterator>
#include <nlohmann/json.hpp>

#include "sched/framework.h"

namespace tidegate::gateway {

namespace {

std::shared_ptr<const tokenizer::Tokenizer> g_tokenizer;  // set before serving

// Replaces *prompt with the chat template's rendering of the messages (content parts joined with
// "\n", as vLLM joins them for a text-only template); leaves it when the template cannot.
void RenderChat(const tokenizer::Tokenizer& tok, simdjson::dom::array messages,
                std::string* prompt) {
  thread_local std::vector<tokenizer::ChatMessage> msgs;
  msgs.clear();
  for (auto m : messages) {
    tokenizer::ChatMessage cm;
    std::string_view sv;
    if (!m["role"].get_string().get(sv)) cm.role.assign(sv);
    auto content = m["content"];
    if (!content.error()) {
      if (!content.get_string().get(sv)) {
        cm.content.assign(sv);
      } else if (simdjson::dom::array parts; !content.get_array().get(parts)) {
        bool first = true;
        for (auto part : parts) {
          if (part.get_string().get(sv) && part["text"].get_string().get(sv)) continue;
          if (!first) cm.content.push_back('\n');
          cm.content.append(sv);
          first = false;
        }
      }
    }
    msgs.push_back(std::move(cm));
  }
  std::string error;
  if (auto text = tok.RenderChat(msgs, /*add_generation_prompt=*/true, &error))
    *prompt = std::move(*text);
}

}  // namespace

void SetModelTokenizer(std::shared_ptr<const tokenizer::Tokenizer> tok) {
  g_tokenizer = tok;
  if (!tok) {
    sched::SetPromptTokenizer(nullptr);
    return;
  }
  sched::SetPromptTokenizer([tok](const sched::RequestInfo& r, std::vector<uint32_t>* out) {
    thread_local std::vector<int32_t> ids;
    ids.clear();
    const bool chat = r.path == "/v1/chat/completions";
    tok->EncodeTo(r.prompt, /*add_special_tokens=*/!chat, &ids);
    out->insert(out->end(), ids.begin(), ids.end());
  });
}

BodyInfo InspectBody(std::string& body, bool require_model) {
  BodyInfo info;
  if (body.empty()) {
    info.error = "the request body is empty; expected a JSON object";
    info.code = "invalid_json";
    return info;
  }
  thread_local simdjson::dom::parser parser;
  if (body.capacity() < body.size() + simdjson::SIMDJSON_PADDING)
    body.reserve(body.size() + simdjson::SIMDJSON_PADDING);
  simdjson::dom::element doc;
  auto err = parser.parse(body.data(), body.size(), false).get(doc);
  thread_local bool in_fallback = false;
  if (err == simdjson::NUMBER_ERROR && !in_fallback) {
    // An integer beyond 64 bits is valid JSON (Python's json, in the engine, takes it) but a
    // NUMBER_ERROR to this simdjson; when the body is otherwise valid, read
    // the fields from a copy in which such numbers are floats; the body itself goes on as sent.
    // (The copy keeps the last of duplicate keys, as the engine does.)
    auto j = nlohmann::ordered_json::parse(body, nullptr, false);
    if (!j.is_discarded()) {
      thread_local std::string copy;
      copy = j.dump();
      in_fallback = true;
      BodyInfo r = InspectBody(copy, require_model);
      in_fallback = false;
      return r;
    }
  }
  if (err) {
    info.error = std::string("the request body is not valid JSON: ") + simdjson::error_message(err);
    info.code = "invalid_json";
    return info;
  }
  simdjson::dom::object obj;
  if (doc.get_object().get(obj)) {
    info.error = "the request body must be a JSON object";
    info.code = "invalid_json";
    return info;
  }
  // A key that routing reads may appear once: JSON parsers disagree on which duplicate wins
  // (simdjson here takes the first, Python's json in vLLM the last), so a body with two
  // "model"s would be routed by one and served as the other.
  {
    static constexpr std::string_view kRouted[] = {"model",    "stream", "priority",
                                                   "messages", "prompt", "input"};
    unsigned seen = 0;
    for (auto field : obj) {
      for (unsigned i = 0; i < std::size(kRouted); ++i) {
        if (field.key != kRouted[i]) continue;
        if (seen & (1u << i)) {
          info.error =
              "the request body has the key \"" + std::string(kRouted[i]) + "\" more than once";
          info.code = "duplicate_key";
          return info;
        }
        seen |= 1u << i;
      }
    }
  }
  std::string_view model;
  auto m = obj["model"];
  if (m.error() || m.get_string().get(model) || model.empty()) {
    if (require_model) {
      info.error = "you must provide a model parameter (a non-empty string)";
      info.code = "missing_model";
      return info;
    }
  } else {
    info.model.assign(model);
  }
  bool stream = false;
  auto s = obj["stream"];
  if (!s.error()) {
    if (s.get_bool().get(stream)) {
      if (!s.is_null()) {
        info.error = "'stream' must be a boolean";
        info.code = "invalid_type";
        return info;
      }
    }
  }
  info.stream = stream;
  info.has_priority = !obj["priority"].error();

  // Flatten the prompt for prefix affinity (no allocation once the buffer has grown).
  thread_local std::string prompt;
  prompt.clear();
  auto append_text = [](simdjson::dom::element e) {
    std::string_view sv;
    if (!e.get_string().get(sv)) {
      prompt.append(sv);
      return;
    }
    simdjson::dom::array parts;
    if (!e.get_array().get(parts)) {
      for (auto part : parts) {
        if (!part.get_string().get(sv)) {
          prompt.append(sv);
        } else if (!part["text"].get_string().get(sv)) {
          prompt.append(sv);
        }
      }
    }
  };
  simdjson::dom::array messages;
  if (!obj["messages"].get_array().get(messages)) {
    for (auto m : messages) {
      std::string_view role;
      if (!m["role"].get_string().get(role)) {
        prompt.append(role);
        prompt.push_back(':');
      }
      auto content = m["content"];
      if (!content.error()) append_text(content.value_unsafe());
      prompt.push_back('\n');
    }
    if (const tokenizer::Tokenizer* tok = g_tokenizer.get()) RenderChat(*tok, messages, &prompt);
  } else if (auto p = obj["prompt"]; !p.error()) {
    append_text(p.value_unsafe());
  } else if (auto in = obj["input"]; !in.error()) {
    append_text(in.value_unsafe());
  }
  info.prompt = prompt;
  return info;
}

control::RequestView MakeRequestView(uint64_t id, std::string_view path_label, const BodyInfo& info,
                                     size_t body_bytes, std::string_view prompt,
                                     const RoutingHeaders& h) {
  control::RequestView v;
  v.id = id;
  v.path = path_label;
  v.model = info.model;
  v.stream = info.stream;
  v.body_bytes = body_bytes;
  v.prompt = prompt;
  v.session_id = h.session_id;
  v.objective = h.objective;
  v.fairness_id = h.fairness_id;
  v.slo_ttft_ms = h.slo_ttft_ms;
  v.slo_tpot_ms = h.slo_tpot_ms;
  v.ttl_ms = h.ttl_ms;
  v.body_error = info.error;
  v.body_error_code = info.code;
  return v;
}

void ApplyPriority(std::string& body, bool has_priority, bool forward, int64_t gateway_value) {
  if (!has_priority) {
    if (!forward || gateway_value == 0 || body.size() < 2 || body.front() != '{') return;
    std::string field = "\"priority\":" + std::to_string(gateway_value);
    const size_t next = body.find_first_not_of(" \t\r\n", 1);
    if (next != std::string::npos && body[next] != '}') field += ',';
    body.insert(1, field);
    return;
  }
  auto doc = nlohmann::ordered_json::parse(body, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) return;  // InspectBody() accepted it: not reached
  auto it = doc.find("priority");
  if (it == doc.end()) return;
  if (!forward) {
    doc.erase(it);
  } else if (it->is_number_integer() && it->get<int64_t>() > gateway_value) {
    return;  // less urgent than the gateway would send: the client's own stands
  } else {
    *it = gateway_value;
  }
  body = doc.dump();
}

}  // namespace tidegate::gateway
