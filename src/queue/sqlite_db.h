// queue/sqlite_db.h — one durable SQLite file opened the way tidegate's stores need it: the
// async processor's result journal and the Batch API's store share it (the embedded queue keeps
// its own persistent statements).
//
// Contract: Open() opens (creating) the file with WAL journaling, synchronous=FULL (a commit is
// on disk when it returns) and a 10 s busy timeout, then runs `schema`; errors name `what` (e.g.
// "result journal"), the path and SQLite's message. Exec() runs SQL without results. Error(op)
// formats the connection's last error the same way.
// Thread-safety: the connection is opened NOMUTEX; callers hold `mu` around every use.
#pragma once

#include <sqlite3.h>

#include <mutex>
#include <string>

namespace tidegate::queue {

struct SqliteDb {
  sqlite3* db = nullptr;
  std::string what, path;
  std::mutex mu;

  SqliteDb() = default;
  SqliteDb(const SqliteDb&) = delete;
  SqliteDb& operator=(const SqliteDb&) = delete;
  ~SqliteDb() {
    if (db != nullptr) sqlite3_close_v2(db);
  }

  bool Open(std::string what_, std::string path_, const char* schema, std::string* error) {
    what = std::move(what_);
    path = std::move(path_);
    if (sqlite3_open_v2(path.c_str(), &db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        nullptr) != SQLITE_OK) {
      *error = "cannot open the " + what + " " + path + ": " +
               (db ? sqlite3_errmsg(db) : "out of memory");
      return false;
    }
    sqlite3_busy_timeout(db, 10000);
    if (!Exec("PRAGMA journal_mode=WAL") || !Exec("PRAGMA synchronous=FULL") || !Exec(schema)) {
      *error = Error("open");
      return false;
    }
    return true;
  }
  bool Exec(const char* sql) { return sqlite3_exec(db, sql, nullptr, nullptr, nullptr) == 0; }
  std::string Error(const char* op) const {
    return what + " " + path + ": " + op + ": " + sqlite3_errmsg(db);
  }
};

}  // namespace tidegate::queue
