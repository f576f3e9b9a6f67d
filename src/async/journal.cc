// async/journal.cc — see journal.h.
#include "async/journal.h"

#include <sqlite3.h>

#include <chrono>
#include <mutex>

#include "queue/sqlite_db.h"

namespace tidegate::async {

struct Journal::Impl : queue::SqliteDb {};  // (public to the helpers in this file)

namespace {
int64_t NowSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}
}  // namespace

std::unique_ptr<Journal> Journal::Open(const std::string& path, std::string* error) {
  std::unique_ptr<Journal> j(new Journal());
  j->impl_ = std::make_unique<Impl>();
  Impl& im = *j->impl_;
  if (!im.Open("result journal", path,
               "CREATE TABLE IF NOT EXISTS results(message_id TEXT PRIMARY KEY, "
               "result BLOB NOT NULL, recorded INTEGER NOT NULL)",
               error))
    return nullptr;
  std::string purge =
      "DELETE FROM results WHERE recorded < " + std::to_string(NowSeconds() - 7 * 24 * 3600);
  im.Exec(purge.c_str());
  return j;
}

Journal::~Journal() = default;

namespace {
// Runs `sql` once per item of `items` (bind(stmt, item) binds its parameters) in one
// transaction. Returns an error message or "".
template <typename Items, typename Bind>
std::string RunBatch(Journal::Impl& im, const char* sql, const Items& items, Bind bind) {
  if (items.empty()) return "";
  std::lock_guard lock(im.mu);
  if (!im.Exec("BEGIN IMMEDIATE")) return im.Error("begin");
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(im.db, sql, -1, &st, nullptr) != SQLITE_OK) {
    std::string e = im.Error("prepare");
    im.Exec("ROLLBACK");
    return e;
  }
  for (const auto& item : items) {
    bind(st, item);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
      std::string e = im.Error("write");
      sqlite3_finalize(st);
      im.Exec("ROLLBACK");
      return e;
    }
  }
  sqlite3_finalize(st);
  if (!im.Exec("COMMIT")) {
    std::string e = im.Error("commit");
    im.Exec("ROLLBACK");
    return e;
  }
  return "";
}
}  // namespace

std::string Journal::Record(const std::vector<std::pair<std::string, std::string>>& entries) {
  const int64_t now = NowSeconds();
  return RunBatch(
      *impl_, "INSERT OR REPLACE INTO results(message_id, result, recorded) VALUES(?1, ?2, ?3)",
      entries, [now](sqlite3_stmt* st, const auto& e) {
        sqlite3_bind_text(st, 1, e.first.data(), static_cast<int>(e.first.size()), SQLITE_STATIC);
        sqlite3_bind_blob64(st, 2, e.second.data(), e.second.size(), SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, now);
      });
}

std::optional<std::string> Journal::Lookup(const std::string& message_id) {
  Impl& im = *impl_;
  std::lock_guard lock(im.mu);
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(im.db, "SELECT result FROM results WHERE message_id = ?1", -1, &st,
                         nullptr) != SQLITE_OK)
    return std::nullopt;
  sqlite3_bind_text(st, 1, message_id.data(), static_cast<int>(message_id.size()), SQLITE_STATIC);
  std::optional<std::string> out;
  if (sqlite3_step(st) == SQLITE_ROW) {
    const void* p = sqlite3_column_blob(st, 0);
    int n = sqlite3_column_bytes(st, 0);
    out = std::string(static_cast<const char*>(p), static_cast<size_t>(n));
  }
  sqlite3_finalize(st);
  return out;
}

std::string Journal::Forget(const std::vector<std::string>& message_ids) {
  return RunBatch(*impl_, "DELETE FROM results WHERE message_id = ?1", message_ids,
                  [](sqlite3_stmt* st, const std::string& id) {
                    sqlite3_bind_text(st, 1, id.data(), static_cast<int>(id.size()), SQLITE_STATIC);
                  });
}

}  // namespace tidegate::async
