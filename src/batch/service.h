// batch/service.h — the OpenAI Batch API on the shared pool: /v1/files and /v1/batches, and
// the runner that turns each batch into async request messages and their results into output
// files.
//
// Contract:
// * Handle() serves one HTTP request of the Batch API (OpenAI's shapes, as the official client
//   parses them): POST/GET /v1/files, GET/DELETE /v1/files/{id}, GET /v1/files/{id}/content,
//   POST/GET /v1/batches, GET /v1/batches/{id}, POST /v1/batches/{id}/cancel. Errors are
//   OpenAI error objects with 400/404/405/409/413 and a message saying what to change.
// * The runner (Start()/Stop(), one thread) moves every unfinished batch along:
//   validating → failed (errors.data names the lines) | in_progress: it publishes one request
//   message per line on `requests` (the async processor's queue), id batch_req_<batch>_<line>,
//   deadline and soft_deadline = expires_at, metadata tidegate.batch_id — so batch lines are
//   sheddable filler like any async request, escalated only as their window closes. It
//   consumes `results` (the processor's --batch-responses queue) and stores each line's
//   outcome before acknowledging the result. When every line is answered: finalizing →
//   completed, with output_file_id (2xx lines) and error_file_id (the others). At expires_at:
//   expired, the unanswered lines in the error file as batch_expired. Cancel: cancelling (no
//   more lines are published; the gateway refuses lines of the batch not started yet, see
//   Refuses()) → cancelled once every published line is answered or cancel_grace has passed,
//   the unanswered lines as batch_cancelled.
// * Everything is in the Store (batch/store.h): after a restart the runner resumes where it
//   was (a chunk of lines published but not recorded as such is published again; a line keeps
//   its first outcome, so each custom_id is answered once).
// Thread-safety: Handle() may be called from any number of threads at once (it blocks on disk
// I/O: keep it off event loops); Refuses() is cheap and never blocks on I/O.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "batch/batch.h"

namespace tidegate::batch {

struct ServiceOptions {
  std::string dir;       // the store's directory (files/ and batches.db)
  std::string requests;  // queue URI the async processor consumes
  std::string results;   // queue URI the processor publishes batch results on
  InputLimits limits;
  // How long a cancelled batch waits for the lines already in flight before it is cancelled.
  std::chrono::seconds cancel_grace{600};
  int publish_chunk = 1000;  // lines per publish (one transaction for the embedded queue)
  std::chrono::milliseconds tick{200};
  // Unix seconds now (tests set a manual clock; empty = the system clock).
  std::function<int64_t()> now;
};

struct ApiRequest {
  std::string_view method, path, query, content_type, body;
  std::string_view owner;  // the caller's tenant ("" without API keys)
};

struct ApiReply {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::string allow;  // for 405
};

class Service {
 public:
  static std::unique_ptr<Service> Open(const ServiceOptions& opts, std::string* error);
  ~Service();  // stops the runner
  Service(const Service&) = delete;
  Service& operator=(const Service&) = delete;

  // True for the paths Handle() serves (/v1/files…, /v1/batches…).
  static bool Serves(std::string_view path);
  // The largest request body Handle() accepts (an upload of limits.max_bytes, plus its
  // multipart framing).
  uint64_t MaxBodyBytes() const;

  ApiReply Handle(const ApiRequest& req);

  // True when `request_id` is a line of a batch that was cancelled (or expired): the gateway
  // answers it 409 batch_cancelled instead of sending it to a model server.
  bool Refuses(std::string_view request_id) const;

  // Prometheus text: tidegate_batches{status} (batches now in each status, refreshed by the
  // runner every tick), tidegate_batch_lines_published_total, and
  // tidegate_batch_lines_answered_total{outcome} (completed, failed, expired, cancelled).
  // Cheap and non-blocking.
  std::string MetricsText() const;

  void Start();
  void Stop();
  // Runs one round of the runner now (tests; Start() does this every tick).
  void RunOnce();

 private:
  Service() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tidegate::batch
