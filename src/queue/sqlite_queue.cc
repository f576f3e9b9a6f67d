#include "queue/sqlite_queue.h"

#include <sqlite3.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <utility>

#include "queue/uri.h"

namespace tidegate::queue {
namespace {

constexpr int kBusyTimeoutMs = 10000;
constexpr int kMaxPullSqlite = 1000;

// One table for every queue in the file. `attempts` counts deliveries so far; a row is
// deliverable when lease_until_us <= now (0 = never leased / handed back).
constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS messages (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  queue TEXT NOT NULL,
  data BLOB NOT NULL,
  attributes TEXT NOT NULL DEFAULT '{}',
  publish_us INTEGER NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  lease_until_us INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_by_queue ON messages(queue, seq);
)sql";

int64_t NowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Process-wide "something was published" signal, so a Pull waiting in this process wakes at
// once instead of at its next poll. Other processes are seen by polling.
struct PublishSignal {
  std::mutex mu;
  std::condition_variable cv;
  uint64_t generation = 0;
};
PublishSignal& Signal() {
  static PublishSignal* s = new PublishSignal;  // never destroyed: usable during exit
  return *s;
}
void NotifyPublished() {
  auto& sig = Signal();
  {
    std::lock_guard lock(sig.mu);
    ++sig.generation;
  }
  sig.cv.notify_all();
}

// Owns a prepared statement; Reset() after each use.
class Stmt {
 public:
  Stmt() = default;
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  ~Stmt() { sqlite3_finalize(stmt_); }
  bool Prepare(sqlite3* db, const char* sql) {
    return sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr) == SQLITE_OK;
  }
  sqlite3_stmt* get() { return stmt_; }
  void Reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }

 private:
  sqlite3_stmt* stmt_ = nullptr;
};

// Ack ids are "<seq>.<attempt>".
bool ParseAckId(std::string_view s, int64_t* seq, int64_t* attempt) {
  uint64_t a = 0, b = 0;
  if (!ParseDottedPair(s, &a, &b) || a > INT64_MAX || b > INT64_MAX) return false;
  *seq = static_cast<int64_t>(a);
  *attempt = static_cast<int64_t>(b);
  return true;
}

class SqliteQueue final : public Queue {
 public:
  SqliteQueue(std::string uri, SqliteQueueOptions opts) : uri_(std::move(uri)), opts_(opts) {}
  ~SqliteQueue() override {
    // Statements must be finalized before the connection closes.
    insert_.reset();
    select_ready_.reset();
    lease_.reset();
    dead_letter_.reset();
    delete_.reset();
    set_lease_.reset();
    if (db_ != nullptr) sqlite3_close_v2(db_);
  }

  bool Open(std::string* error) {
    int rc =
        sqlite3_open_v2(opts_.path.c_str(), &db_,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) {
      *error = Describe("open") + ": " + (db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc));
      return false;
    }
    sqlite3_busy_timeout(db_, kBusyTimeoutMs);
    // journal_mode returns a row; check that WAL really took (it cannot on e.g. some network
    // file systems, and then cross-process safety would rest on rollback journals).
    std::string mode;
    rc = sqlite3_exec(
        db_, "PRAGMA journal_mode=WAL",
        [](void* out, int, char** values, char**) {
          if (values[0] != nullptr) *static_cast<std::string*>(out) = values[0];
          return 0;
        },
        &mode, nullptr);
    if (rc != SQLITE_OK || mode != "wal") {
      *error = Describe("open") + ": cannot enable WAL journal mode (" +
               (rc != SQLITE_OK ? std::string(sqlite3_errmsg(db_)) : "got '" + mode + "'") + ")";
      return false;
    }
    if (!Exec("PRAGMA synchronous=FULL", error) || !Exec(kSchema, error)) return false;
    std::error_code fec;
    canonical_path_ = std::filesystem::weakly_canonical(opts_.path, fec).string();
    if (fec) canonical_path_ = opts_.path;
    insert_ = std::make_unique<Stmt>();
    select_ready_ = std::make_unique<Stmt>();
    lease_ = std::make_unique<Stmt>();
    dead_letter_ = std::make_unique<Stmt>();
    delete_ = std::make_unique<Stmt>();
    set_lease_ = std::make_unique<Stmt>();
    count_ = std::make_unique<Stmt>();
    if (!count_->Prepare(db_, "SELECT count(*) FROM messages WHERE queue = ?1") ||
        !insert_->Prepare(db_,
                          "INSERT INTO messages(queue, data, attributes, publish_us) "
                          "VALUES(?1, ?2, ?3, ?4)") ||
        !select_ready_->Prepare(
            db_,
            "SELECT seq, data, attributes, publish_us, attempts FROM messages "
            "WHERE queue = ?1 AND lease_until_us <= ?2 ORDER BY seq LIMIT ?3") ||
        !lease_->Prepare(db_,
                         "UPDATE messages SET attempts = attempts + 1, lease_until_us = ?2 "
                         "WHERE seq = ?1") ||
        !dead_letter_->Prepare(
            db_,
            "UPDATE messages SET queue = ?2, attempts = 0, lease_until_us = 0, attributes = "
            "json_set(CASE WHEN json_valid(attributes) THEN attributes ELSE '{}' END, "
            "'$.\"tidegate-dead-letter-source\"', ?3, "
            "'$.\"tidegate-delivery-attempts\"', CAST(attempts AS TEXT)) WHERE seq = ?1") ||
        !delete_->Prepare(db_,
                          "DELETE FROM messages WHERE seq = ?1 AND attempts = ?2 AND queue = ?3") ||
        !set_lease_->Prepare(db_,
                             "UPDATE messages SET lease_until_us = ?4 "
                             "WHERE seq = ?1 AND attempts = ?2 AND queue = ?3")) {
      *error = Describe("prepare") + ": " + sqlite3_errmsg(db_);
      return false;
    }
    return true;
  }

  std::optional<int64_t> Backlog() override {
    std::lock_guard lock(mu_);
    sqlite3_stmt* s = count_->get();
    sqlite3_bind_text(s, 1, opts_.queue.data(), static_cast<int>(opts_.queue.size()),
                      SQLITE_STATIC);
    std::optional<int64_t> n;
    if (sqlite3_step(s) == SQLITE_ROW) n = sqlite3_column_int64(s, 0);
    count_->Reset();
    return n;
  }

  std::string_view kind() const override { return "sqlite"; }
  const std::string& uri() const override { return uri_; }

  Status Publish(std::string_view data, const std::map<std::string, std::string>& attrs,
                 std::string* id) override {
    nlohmann::json a = nlohmann::json::object();
    for (const auto& [k, v] : attrs) a[k] = v;
    std::string attributes = a.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    int64_t seq = 0;
    {
      std::lock_guard lock(mu_);
      if (Status st = InsertRow("Publish", data, attributes, NowUs()); !st.ok) return st;
      seq = sqlite3_last_insert_rowid(db_);
    }
    if (id != nullptr) *id = std::to_string(seq);
    NotifyPublished();
    return Status::Ok();
  }

  Status Pull(int max, std::chrono::milliseconds lease, std::chrono::milliseconds wait,
              std::vector<Message>* out) override {
    out->clear();
    if (max <= 0) return Status::Ok();
    if (lease.count() <= 0) return Status::Error(Describe("Pull") + ": lease must be positive");
    max = std::min(max, kMaxPullSqlite);
    auto deadline = std::chrono::steady_clock::now() + std::max(wait, std::chrono::milliseconds(0));
    auto poll = std::chrono::milliseconds(5);
    auto& sig = Signal();
    while (true) {
      uint64_t generation;
      {
        std::lock_guard lock(sig.mu);
        generation = sig.generation;
      }
      Status st = TryPull(max, lease, out);
      if (!st.ok || !out->empty()) return st;
      auto now = std::chrono::steady_clock::now();
      if (now >= deadline) return Status::Ok();
      auto until = std::min(deadline, now + poll);
      std::unique_lock lock(sig.mu);
      sig.cv.wait_until(lock, until, [&] { return sig.generation != generation; });
      poll = std::min(poll * 2, std::chrono::milliseconds(100));
    }
  }

  Status Ack(const std::vector<std::string>& ack_ids) override {
    return ForEachAckId("Ack", ack_ids, delete_.get(), 0);
  }
  Status Nack(const std::vector<std::string>& ack_ids) override {
    return ForEachAckId("Nack", ack_ids, set_lease_.get(), 0);
  }
  Status Extend(const std::vector<std::string>& ack_ids, std::chrono::milliseconds lease) override {
    int64_t until = NowUs() + std::max<int64_t>(lease.count(), 0) * 1000;
    return ForEachAckId("Extend", ack_ids, set_lease_.get(), until);
  }

  // Same file: delete the request delivery and insert the result in one transaction, so a crash
  // leaves both or neither. A delivery that is no longer current is skipped (superseded).
  Status PublishBatch(const std::vector<std::string>& data, size_t* published) override {
    *published = 0;
    if (data.empty()) return Status::Ok();
    static const std::string kNoAttributes = "{}";
    Status st;
    {
      std::lock_guard lock(mu_);
      st = InWriteTransaction("PublishBatch", [&]() -> Status {
        const int64_t now = NowUs();
        for (const auto& d : data) {
          if (Status st = InsertRow("PublishBatch", d, kNoAttributes, now); !st.ok) return st;
        }
        return Status::Ok();
      });
    }
    if (!st.ok) return st;
    *published = data.size();
    NotifyPublished();
    return Status::Ok();
  }

  bool AtomicPublishAck(const Queue& source) const override {
    auto* src = dynamic_cast<const SqliteQueue*>(&source);
    return src != nullptr && src->canonical_path_ == canonical_path_;
  }

  Status PublishAndAck(std::vector<PublishAck>* items, Queue& source) override {
    if (!AtomicPublishAck(source)) return Queue::PublishAndAck(items, source);
    auto* src = static_cast<SqliteQueue*>(&source);
    std::vector<std::pair<int64_t, int64_t>> parsed(items->size());
    for (size_t i = 0; i < items->size(); ++i) {
      if (!ParseAckId((*items)[i].ack_id, &parsed[i].first, &parsed[i].second))
        return Status::Error(Describe("PublishAndAck") + ": malformed ack id '" +
                             (*items)[i].ack_id + "'");
    }
    std::vector<std::string> attributes;
    attributes.reserve(items->size());
    for (const auto& item : *items) {
      nlohmann::json a = nlohmann::json::object();
      for (const auto& [k, v] : item.attributes) a[k] = v;
      attributes.push_back(a.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    }
    std::vector<char> superseded(items->size(), 0);
    Status st;
    {
      std::lock_guard lock(mu_);
      st = InWriteTransaction("PublishAndAck", [&]() -> Status {
        const int64_t now = NowUs();
        for (size_t i = 0; i < items->size(); ++i) {
          const auto& item = (*items)[i];
          if (item.done) continue;
          sqlite3_stmt* d = delete_->get();
          sqlite3_bind_int64(d, 1, parsed[i].first);
          sqlite3_bind_int64(d, 2, parsed[i].second);
          sqlite3_bind_text(d, 3, src->opts_.queue.data(),
                            static_cast<int>(src->opts_.queue.size()), SQLITE_STATIC);
          int rc = sqlite3_step(d);
          delete_->Reset();
          if (rc != SQLITE_DONE)
            return Status::Error(Describe("PublishAndAck") + ": " + sqlite3_errmsg(db_));
          if (sqlite3_changes(db_) == 0) {
            superseded[i] = 1;
            continue;
          }
          if (Status st = InsertRow("PublishAndAck", item.data, attributes[i], now); !st.ok)
            return st;
        }
        return Status::Ok();
      });
    }
    if (!st.ok) return st;
    for (size_t i = 0; i < items->size(); ++i) {
      auto& item = (*items)[i];
      if (item.done) continue;
      item.done = true;
      item.superseded = superseded[i] != 0;
      item.published = !item.superseded;
    }
    NotifyPublished();
    return Status::Ok();
  }

 private:
  std::string Describe(std::string_view op) const {
    return "sqlite queue '" + opts_.queue + "' (" + opts_.path + "): " + std::string(op);
  }

  // Appends one message to this queue. Caller holds mu_.
  Status InsertRow(std::string_view op, std::string_view data, std::string_view attributes,
                   int64_t publish_us) {
    sqlite3_stmt* s = insert_->get();
    sqlite3_bind_text(s, 1, opts_.queue.data(), static_cast<int>(opts_.queue.size()),
                      SQLITE_STATIC);
    static const char kEmpty[1] = {0};
    sqlite3_bind_blob64(s, 2, data.empty() ? kEmpty : data.data(), data.size(), SQLITE_STATIC);
    sqlite3_bind_text(s, 3, attributes.data(), static_cast<int>(attributes.size()), SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, publish_us);
    int rc = sqlite3_step(s);
    insert_->Reset();
    if (rc != SQLITE_DONE) return Status::Error(Describe(op) + ": " + sqlite3_errmsg(db_));
    return Status::Ok();
  }

  bool Exec(const char* sql, std::string* error) {
    char* msg = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &msg) == SQLITE_OK) return true;
    if (error != nullptr) *error = Describe(sql) + ": " + (msg ? msg : sqlite3_errmsg(db_));
    sqlite3_free(msg);
    return false;
  }

  // Runs `body` inside BEGIN IMMEDIATE ... COMMIT (rolled back if body fails). Caller holds mu_.
  template <typename Body>
  Status InWriteTransaction(std::string_view op, Body body) {
    std::string error;
    if (!Exec("BEGIN IMMEDIATE", &error)) return Status::Error(error);
    Status st = body();
    if (st.ok && !Exec("COMMIT", &error)) st = Status::Error(error);
    if (!st.ok) Exec("ROLLBACK", nullptr);
    return st;
  }

  Status TryPull(int max, std::chrono::milliseconds lease, std::vector<Message>* out) {
    std::lock_guard lock(mu_);
    Status st = InWriteTransaction("Pull", [&]() -> Status {
      const int64_t now = NowUs();
      const int64_t until = now + static_cast<int64_t>(lease.count()) * 1000;
      // Rows past max_attempts are moved out, then the scan repeats for the rest.
      while (static_cast<int>(out->size()) < max) {
        struct Row {
          int64_t seq;
          std::string data, attributes;
          int64_t publish_us, attempts;
        };
        std::vector<Row> rows;
        sqlite3_stmt* s = select_ready_->get();
        sqlite3_bind_text(s, 1, opts_.queue.data(), static_cast<int>(opts_.queue.size()),
                          SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, now);
        sqlite3_bind_int(s, 3, max - static_cast<int>(out->size()));
        int rc;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
          Row r;
          r.seq = sqlite3_column_int64(s, 0);
          const void* blob = sqlite3_column_blob(s, 1);
          r.data.assign(static_cast<const char*>(blob ? blob : ""), sqlite3_column_bytes(s, 1));
          const unsigned char* text = sqlite3_column_text(s, 2);
          if (text != nullptr)
            r.attributes.assign(reinterpret_cast<const char*>(text), sqlite3_column_bytes(s, 2));
          r.publish_us = sqlite3_column_int64(s, 3);
          r.attempts = sqlite3_column_int64(s, 4);
          rows.push_back(std::move(r));
        }
        select_ready_->Reset();
        if (rc != SQLITE_DONE) return Status::Error(Describe("Pull") + ": " + sqlite3_errmsg(db_));
        if (rows.empty()) break;
        bool moved = false;
        for (Row& r : rows) {
          if (opts_.max_attempts > 0 && r.attempts >= opts_.max_attempts) {
            sqlite3_stmt* d = dead_letter_->get();
            sqlite3_bind_int64(d, 1, r.seq);
            sqlite3_bind_text(d, 2, opts_.dead_letter.data(),
                              static_cast<int>(opts_.dead_letter.size()), SQLITE_STATIC);
            sqlite3_bind_text(d, 3, opts_.queue.data(), static_cast<int>(opts_.queue.size()),
                              SQLITE_STATIC);
            rc = sqlite3_step(d);
            dead_letter_->Reset();
            if (rc != SQLITE_DONE)
              return Status::Error(Describe("Pull (dead-letter)") + ": " + sqlite3_errmsg(db_));
            moved = true;
            continue;
          }
          sqlite3_stmt* l = lease_->get();
          sqlite3_bind_int64(l, 1, r.seq);
          sqlite3_bind_int64(l, 2, until);
          rc = sqlite3_step(l);
          lease_->Reset();
          if (rc != SQLITE_DONE)
            return Status::Error(Describe("Pull (lease)") + ": " + sqlite3_errmsg(db_));
          Message m;
          m.id = std::to_string(r.seq);
          m.delivery_attempt = static_cast<int>(r.attempts + 1);
          m.ack_id = m.id + "." + std::to_string(m.delivery_attempt);
          m.data = std::move(r.data);
          auto attrs = nlohmann::json::parse(r.attributes, nullptr, /*allow_exceptions=*/false);
          if (attrs.is_object()) {
            for (auto it = attrs.begin(); it != attrs.end(); ++it) {
              m.attributes[it.key()] = it->is_string() ? it->get<std::string>() : it->dump();
            }
          }
          m.publish_time = std::chrono::system_clock::time_point(
              std::chrono::duration_cast<std::chrono::system_clock::duration>(
                  std::chrono::microseconds(r.publish_us)));
          out->push_back(std::move(m));
        }
        if (!moved) break;  // fewer rows than asked means none left
      }
      return Status::Ok();
    });
    if (!st.ok) out->clear();  // rolled back: nothing is leased
    return st;
  }

  // Binds (seq, attempt, queue[, value]) for each ack id and steps `stmt`, in one transaction.
  Status ForEachAckId(std::string_view op, const std::vector<std::string>& ack_ids, Stmt* stmt,
                      int64_t value) {
    std::vector<std::pair<int64_t, int64_t>> parsed;
    parsed.reserve(ack_ids.size());
    for (const auto& a : ack_ids) {
      int64_t seq, attempt;
      if (!ParseAckId(a, &seq, &attempt))
        return Status::Error(Describe(op) + ": malformed ack id '" + a + "'");
      parsed.emplace_back(seq, attempt);
    }
    if (parsed.empty()) return Status::Ok();
    std::lock_guard lock(mu_);
    return InWriteTransaction(op, [&]() -> Status {
      for (auto [seq, attempt] : parsed) {
        sqlite3_stmt* s = stmt->get();
        sqlite3_bind_int64(s, 1, seq);
        sqlite3_bind_int64(s, 2, attempt);
        sqlite3_bind_text(s, 3, opts_.queue.data(), static_cast<int>(opts_.queue.size()),
                          SQLITE_STATIC);
        if (stmt == set_lease_.get()) sqlite3_bind_int64(s, 4, value);
        int rc = sqlite3_step(s);
        stmt->Reset();
        if (rc != SQLITE_DONE) return Status::Error(Describe(op) + ": " + sqlite3_errmsg(db_));
      }
      return Status::Ok();
    });
  }

  const std::string uri_;
  const SqliteQueueOptions opts_;
  std::string canonical_path_;  // to tell whether two queues share one file
  std::mutex mu_;               // guards db_ and the statements
  sqlite3* db_ = nullptr;
  std::unique_ptr<Stmt> insert_, select_ready_, lease_, dead_letter_, delete_, set_lease_, count_;
};

}  // namespace

bool ParseSqliteQueueUri(const std::string& uri, SqliteQueueOptions* out, std::string* error) {
  constexpr std::string_view kPrefix = "sqlite://";
  auto fail = [&](const std::string& why) {
    *error = "sqlite queue URI '" + uri + "': " + why +
             " (expected sqlite:///abs/path.db?queue=NAME or sqlite://rel/path.db?queue=NAME"
             ", optional &max_attempts=N&dead_letter=NAME)";
    return false;
  };
  if (uri.size() < kPrefix.size() ||
      !std::equal(kPrefix.begin(), kPrefix.end(), uri.begin(),
                  [](char a, char b) { return a == std::tolower(static_cast<unsigned char>(b)); }))
    return fail("not a sqlite:// URI");
  *out = SqliteQueueOptions{};
  std::string_view rest = std::string_view(uri).substr(kPrefix.size());
  size_t q = rest.find('?');
  std::string_view raw_path = rest.substr(0, q);
  std::string_view query = q == std::string_view::npos ? std::string_view() : rest.substr(q + 1);
  if (raw_path.empty()) return fail("missing file path");
  if (!PercentDecode(raw_path, &out->path)) return fail("bad percent-escape in the path");
  if (out->path.find('\0') != std::string::npos) return fail("NUL in the path");
  if (out->path.back() == '/') return fail("the path names a directory, not a file");
  bool have_max = false;
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view param = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (param.empty()) continue;
    size_t eq = param.find('=');
    std::string_view key = param.substr(0, eq);
    std::string value;
    if (eq == std::string_view::npos || !PercentDecode(param.substr(eq + 1), &value))
      return fail("malformed parameter '" + std::string(param) + "'");
    if (key == "queue") {
      out->queue = value;
    } else if (key == "dead_letter") {
      out->dead_letter = value;
    } else if (key == "max_attempts") {
      int n = 0;
      auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (ec != std::errc() || ptr != value.data() + value.size() || n < 1 || n > kMaxAttemptsLimit)
        return fail("max_attempts must be an integer in 1.." + std::to_string(kMaxAttemptsLimit) +
                    ", got '" + value + "'");
      out->max_attempts = n;
      have_max = true;
    } else {
      return fail("unknown parameter '" + std::string(key) + "'");
    }
  }
  if (out->queue.empty()) return fail("missing ?queue=NAME");
  if (auto e = CheckDeadLetter(have_max, out->dead_letter, out->queue, "queue", &out->max_attempts);
      !e.empty())
    return fail(e);
  return true;
}

std::unique_ptr<Queue> OpenSqliteQueue(const std::string& uri, std::string* error) {
  SqliteQueueOptions opts;
  if (!ParseSqliteQueueUri(uri, &opts, error)) return nullptr;
  auto q = std::make_unique<SqliteQueue>(uri, std::move(opts));
  if (!q->Open(error)) return nullptr;
  return q;
}

}  // namespace tidegate::queue
