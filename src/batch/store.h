// batch/store.h — where the Batch API keeps its files and batches: a directory and one SQLite
// file in it.
//
// Contract: Open(dir) creates DIR/files/ and DIR/batches.db (WAL, synchronous=FULL) if they
// are missing. A file's bytes live in DIR/files/<id>, written to a temporary name, fsynced and
// renamed before its row is committed, so a file listed is a file complete on disk. A batch's
// state (its record, and for every input line its custom_id, where the line lies in the input
// file, and once answered its outcome) is committed before any call returns: a restart of the
// process loses nothing that was acknowledged. RecordOutcomes() is idempotent: a line keeps the
// first outcome it was given (a result delivered twice counts once). Deleting a file hides it
// at once; its bytes are removed when no unfinished batch reads it any more.
// Every lookup takes the owner (the tenant; "" without API keys): one owner never sees
// another's files or batches.
// Thread-safety: safe from any thread (one connection under a mutex). Calls block on disk I/O:
// keep them off event loops.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "batch/batch.h"

namespace tidegate::batch {

class Store {
 public:
  static std::unique_ptr<Store> Open(const std::string& dir, std::string* error);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  const std::string& dir() const { return dir_; }
  std::string FilePath(std::string_view file_id) const;

  // Files.
  bool CreateFile(FileRecord* f, std::string_view content, std::string* error);
  std::optional<FileRecord> GetFile(std::string_view id, std::string_view owner);
  std::vector<FileRecord> ListFiles(std::string_view owner, std::string_view purpose);
  // False when there is no such (visible) file.
  bool DeleteFile(std::string_view id, std::string_view owner, std::string* error);
  // Reads a file's bytes, or `length` bytes from `offset`. False and *error on failure.
  bool ReadFile(std::string_view id, std::string* out, std::string* error) const;
  bool ReadRange(std::string_view id, uint64_t offset, uint64_t length, std::string* out,
                 std::string* error) const;

  // Batches.
  bool CreateBatch(const BatchRecord& b, std::string* error);
  std::optional<BatchRecord> GetBatch(std::string_view id);
  // Newest first, those created before `after` (a batch id; "" = from the newest); *has_more
  // tells whether more follow.
  std::vector<BatchRecord> ListBatches(std::string_view owner, std::string_view after, int limit,
                                       bool* has_more);
  std::vector<BatchRecord> UnfinishedBatches();
  // Batches cancelling, or cancelled or expired before `now` passed their expires_at: lines of
  // theirs may still be queued.
  std::vector<std::string> EndedEarly(int64_t now);
  bool UpdateBatch(const BatchRecord& b, std::string* error);
  // Stores the validated lines and the batch (now in_progress) in one transaction.
  bool StartBatch(const BatchRecord& b, const std::vector<InputLine>& lines, std::string* error);
  // Lines [from, from + n) in line order (by position, 0-based), with their offsets.
  std::vector<InputLine> LinesFrom(std::string_view batch_id, int64_t from, int64_t n);

  struct Recorded {
    std::string batch_id;
    LineOutcome outcome;
  };
  // Stores the outcomes of lines not answered yet (others are ignored) and adds them to their
  // batches' request_counts. Returns the number stored, or -1 (and *error).
  // When `stored` is given, (*stored)[i] tells whether outcomes[i] was new.
  int64_t RecordOutcomes(const std::vector<Recorded>& outcomes, std::string* error,
                         std::vector<char>* stored = nullptr);
  // How many batches are in each status now.
  std::map<std::string, int64_t> CountByStatus();
  // Every line of a batch in order; those not answered have only line and custom_id set and
  // answered == false.
  struct LineState {
    LineOutcome outcome;
    bool answered = false;
  };
  bool ForEachLine(std::string_view batch_id, const std::function<void(const LineState&)>& fn,
                   std::string* error);
  // Removes the bytes of deleted files no unfinished batch reads.
  void CollectDeletedFiles();

 private:
  Store() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string dir_;
};

}  // namespace tidegate::batch
