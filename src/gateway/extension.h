// gateway/extension.h — routes the gateway serves through an extension rather than a model
// server (the OpenAI Batch API: /v1/files, /v1/batches), and requests it refuses on the
// extension's word.
//
// Contract: for a request whose path Serves() claims, the gateway reads a body of up to
// MaxBodyBytes() (instead of --max-body-bytes), checks the API key when keys are on (the
// tenant becomes ExtensionRequest::owner), then runs Handle() on a worker thread — never on an
// event loop — and writes its reply. Before an API request is scheduled, Refuses(request id)
// may turn it away with 409 and the reason it gives (a line of a cancelled batch). Metrics()
// is appended to the gateway's /metrics.
// Thread-safety: every method may be called from any thread at once; Serves() and Refuses()
// must not block.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace tidegate::gateway {

struct ExtensionRequest {
  std::string_view method, path, query, content_type, body;
  std::string_view owner;  // the API key's tenant ("" without keys)
};

struct ExtensionReply {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::string allow;  // the Allow header of a 405
};

class Extension {
 public:
  virtual ~Extension() = default;
  virtual bool Serves(std::string_view path) const = 0;
  virtual uint64_t MaxBodyBytes() const = 0;
  virtual ExtensionReply Handle(const ExtensionRequest& req) = 0;
  // Non-empty: the API request with this x-request-id is refused (409) with this error code.
  virtual std::string_view Refuses(std::string_view request_id) const { return {}; }
  // Prometheus text appended to the gateway's /metrics (HELP, TYPE and samples); never blocks.
  virtual std::string Metrics() const { return {}; }
};

}  // namespace tidegate::gateway
