// cli/batch_ext.h — the Batch API (batch/service.h) served by the gateway through its extension
// seam (gateway/extension.h), and the `tidegate serve` flags that turn it on.
// Thread-safety: as batch::Service.
#pragma once

#include <memory>
#include <string>

#include "batch/service.h"
#include "cli/flags.h"
#include "gateway/extension.h"

namespace tidegate::cli {

class BatchExtension final : public gateway::Extension {
 public:
  explicit BatchExtension(std::unique_ptr<batch::Service> service) : service_(std::move(service)) {}
  bool Serves(std::string_view path) const override { return batch::Service::Serves(path); }
  uint64_t MaxBodyBytes() const override { return service_->MaxBodyBytes(); }
  gateway::ExtensionReply Handle(const gateway::ExtensionRequest& req) override;
  std::string_view Refuses(std::string_view request_id) const override {
    return service_->Refuses(request_id) ? "batch_cancelled" : std::string_view();
  }
  std::string Metrics() const override { return service_->MetricsText(); }
  batch::Service& service() { return *service_; }

 private:
  std::unique_ptr<batch::Service> service_;
};

// --batch-dir, --batch-queue, --batch-results, --batch-cancel-grace into *opts.
void AddBatchFlags(FlagSet* flags, batch::ServiceOptions* opts);

}  // namespace tidegate::cli
