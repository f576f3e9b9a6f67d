// gateway/request.h — inspection of an OpenAI request body on the hot path.
//
// Contract: InspectBody() validates that the body is one JSON object (the whole document, so
// malformed JSON anywhere is caught) and extracts the fields routing needs. On failure it
// fills `error` with a message fit to show the client and `code` with a stable error code
// ("invalid_json", "missing_model", "duplicate_key": a key routing reads — model, stream,
// priority, messages, prompt, input — given twice). ReadRoutingHeaders() and MakeRequestView()
// turn the headers routing reads (ours, else llm-d's aliases) and the inspected body into the
// Director's RequestView; every front door (the HTTP proxy, the ext_proc endpoint picker)
// builds its view through them, so both decide on the same inputs. The body string may be grown
// (capacity only) to give the SIMD parser its padding; its contents are not changed. Thread-safety:
// uses a thread-local parser; safe to call from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "control/director.h"
#include "tokenizer/tokenizer.h"
#include "wire/wire.h"

namespace tidegate::gateway {

struct BodyInfo {
  std::string model;
  bool stream = false;
  bool has_priority = false;  // the body sets vLLM's "priority" itself
  // The prompt text (chat messages' contents, or `prompt`/`input`, concatenated) for prefix
  // affinity. Points into a thread-local buffer: valid until the next InspectBody() call on
  // this thread.
  std::string_view prompt;
  std::string error;  // empty on success
  std::string code;
};

BodyInfo InspectBody(std::string& body, bool require_model = true);

// With the model's tokenizer set (before serving), a chat request's `prompt` is its chat template
// rendered with the generation prompt — the text the engine tokenises — instead of the
// "role:content\n" flattening (kept when the template cannot render the messages). The
// tokenizer also becomes the scheduler's prompt tokenizer (sched::SetPromptTokenizer): chat
// prompts are encoded as rendered (the template writes the BOS), completions with the
// tokenizer's special tokens. Null restores the stand-in.
void SetModelTokenizer(std::shared_ptr<const tokenizer::Tokenizer> tok);

// A client may only lower its own priority at the model server, never raise it. With
// `forward` (engines that schedule by vLLM's `priority`, lower = sooner), the body's top-level
// "priority" becomes `gateway_value` (−the objective's priority), or the client's own value
// when that is less urgent (larger); a non-integer one is replaced. Without `forward` any
// "priority" the client sent is removed. `has_priority` is InspectBody()'s finding; when it is
// false and the value to send is 0 the body is left alone. Only a body that carries a
// "priority" is re-serialised.
// The request headers routing reads, as sent ("" = absent).
struct RoutingHeaders {
  std::string_view objective, fairness_id, slo_ttft_ms, slo_tpot_ms, ttl_ms, session_id;
};

// Reads them through `get(lowercase_name)` (returning "" when absent): our name, else llm-d's.
template <typename Get>
RoutingHeaders ReadRoutingHeaders(Get&& get) {
  auto either = [&](std::string_view name, std::string_view alias) {
    std::string_view v = get(name);
    return v.empty() ? get(alias) : v;
  };
  RoutingHeaders h;
  h.objective = either(wire::kObjective, wire::kObjectiveAlias);
  h.fairness_id = either(wire::kFairnessId, wire::kFairnessIdAlias);
  h.slo_ttft_ms = either(wire::kSloTtftMs, wire::kSloTtftMsAlias);
  h.slo_tpot_ms = either(wire::kSloTpotMs, wire::kSloTpotMsAlias);
  h.ttl_ms = get(wire::kTtlMs);
  h.session_id = get(wire::kSessionId);
  return h;
}

// The Director's view of one request. `prompt` must be a stable copy of info.prompt (which
// points into a thread-local buffer); every view must outlive the request's ticket.
control::RequestView MakeRequestView(uint64_t id, std::string_view path_label, const BodyInfo& info,
                                     size_t body_bytes, std::string_view prompt,
                                     const RoutingHeaders& h);

void ApplyPriority(std::string& body, bool has_priority, bool forward, int64_t gateway_value);

}  // namespace tidegate::gateway
