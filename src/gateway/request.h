// gateway/request.h — inspection of an OpenAI request body on the hot path.
//
// Contract: InspectBody() validates that the body is one JSON object (the whole document, so
// malformed JSON anywhere is caught) and extracts the fields routing needs. On failure it
// fills `error` with a message fit to show the client and `code` with a stable error code
// ("invalid_json", "missing_model", "duplicate_key": a key routing reads — model, stream,
// priority, messages, prompt, input — given twice). The body string may be grown (capacity only) to
// give the SIMD parser its padding; its contents are not changed. Thread-safety: uses a
// thread-local parser; safe to call from any thread.
#pragma once

#include <string>
#include <string_view>

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

// A client may only lower its own priority at the model server, never raise it. With
// `forward` (engines that schedule by vLLM's `priority`, lower = sooner), the body's top-level
// "priority" becomes `gateway_value` (−the objective's priority), or the client's own value
// when that is less urgent (larger); a non-integer one is replaced. Without `forward` any
// "priority" the client sent is removed. `has_priority` is InspectBody()'s finding; when it is
// false and the value to send is 0 the body is left alone. Only a body that carries a
// "priority" is re-serialised.
void ApplyPriority(std::string& body, bool has_priority, bool forward, int64_t gateway_value);

}  // namespace tidegate::gateway
