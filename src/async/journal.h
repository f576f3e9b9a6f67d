// async/journal.h — the async processor's local record of results published but not yet
// acknowledged, so that a crash between "result published" and "request acknowledged" leads
// only to an identical duplicate, never to a second, different result.
//
// Contract: Record() durably stores (fsync) the rendered result of a request delivery under the
// queue's message id before it is published; Lookup() returns it when the same message is
// delivered again (the processor then republishes the stored result verbatim instead of running
// the request again); Forget() drops entries once their request was acknowledged. Entries older
// than a week are purged on open. One SQLite file (WAL); several processes may share it.
// Thread-safety: all methods are safe from any thread (one connection behind a mutex); they
// block on disk I/O, so keep them off event loops.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace tidegate::async {

class Journal {
 public:
  static std::unique_ptr<Journal> Open(const std::string& path, std::string* error);
  ~Journal();
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  // (message id, rendered result) pairs, in one transaction. Returns an error message or "".
  std::string Record(const std::vector<std::pair<std::string, std::string>>& entries);
  std::optional<std::string> Lookup(const std::string& message_id);
  std::string Forget(const std::vector<std::string>& message_ids);

  struct Impl;

 private:
  Journal() = default;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tidegate::async
