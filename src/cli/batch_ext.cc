// cli/batch_ext.cc — see batch_ext.h.
#include "cli/batch_ext.h"

#include "common/units.h"

namespace tidegate::cli {

gateway::ExtensionReply BatchExtension::Handle(const gateway::ExtensionRequest& req) {
  batch::ApiRequest r{req.method, req.path, req.query, req.content_type, req.body, req.owner};
  batch::ApiReply a = service_->Handle(r);
  return {a.status, std::move(a.content_type), std::move(a.body), std::move(a.allow)};
}

void AddBatchFlags(FlagSet* flags, batch::ServiceOptions* opts) {
  flags->Add("batch-dir", "DIR",
             "serve the OpenAI Batch API (/v1/files, /v1/batches) with its files and state in "
             "DIR (created if missing; a restart resumes every batch). Needs --batch-queue and "
             "--batch-results",
             "none", [opts](const std::string& v) {
               opts->dir = v;
               return std::string();
             });
  flags->Add("batch-queue", "URI",
             "queue the batch lines are published on: the async processor's --requests", "none",
             [opts](const std::string& v) {
               opts->requests = v;
               return std::string();
             });
  flags->Add("batch-results", "URI",
             "queue the batch lines' results arrive on: the async processor's --batch-responses",
             "none", [opts](const std::string& v) {
               opts->results = v;
               return std::string();
             });
  flags->Add(
      "batch-cancel-grace", "DUR",
      "a cancelled batch waits this long for its lines already in flight, then ends "
      "cancelled",
      FormatDuration(std::chrono::duration_cast<std::chrono::milliseconds>(opts->cancel_grace)),
      [opts](const std::string& v) -> std::string {
        auto d = ParseDuration(v);
        if (!d || d->count() < 0) return "expected a duration such as 10m";
        opts->cancel_grace = std::chrono::duration_cast<std::chrono::seconds>(*d);
        return {};
      });
}

}  // namespace tidegate::cli
