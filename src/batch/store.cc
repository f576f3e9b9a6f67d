// batch/store.cc — see store.h.
#include "batch/store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>

#include "queue/sqlite_db.h"

namespace tidegate::batch {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// A prepared statement, finalized on scope exit.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) { ok_ = sqlite3_prepare_v2(db, sql, -1, &st_, nullptr) == 0; }
  ~Stmt() { sqlite3_finalize(st_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  bool ok() const { return ok_; }
  Stmt& Bind(int i, std::string_view s) {
    sqlite3_bind_text(st_, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& Bind(int i, int64_t v) {
    sqlite3_bind_int64(st_, i, v);
    return *this;
  }
  Stmt& BindBlob(int i, std::string_view s) {
    sqlite3_bind_blob(st_, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
    return *this;
  }
  int Step() { return sqlite3_step(st_); }
  void Reset() { sqlite3_reset(st_); }
  std::string Text(int col) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_blob(st_, col));
    return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(st_, col))) : std::string();
  }
  int64_t Int(int col) const { return sqlite3_column_int64(st_, col); }

 private:
  sqlite3_stmt* st_ = nullptr;
  bool ok_ = false;
};

constexpr const char* kSchema =
    "CREATE TABLE IF NOT EXISTS files(id TEXT PRIMARY KEY, owner TEXT NOT NULL, filename TEXT "
    "NOT NULL, purpose TEXT NOT NULL, bytes INTEGER NOT NULL, created_at INTEGER NOT NULL, "
    "deleted INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS batches(seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE "
    "NOT NULL, owner TEXT NOT NULL, record TEXT NOT NULL, status TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS lines(batch_id TEXT NOT NULL, line INTEGER NOT NULL, pos "
    "INTEGER NOT NULL, custom_id TEXT NOT NULL, off INTEGER NOT NULL, len INTEGER NOT NULL, "
    "answered INTEGER NOT NULL DEFAULT 0, status_code INTEGER, body BLOB, error_code TEXT, "
    "error_message TEXT, PRIMARY KEY(batch_id, pos)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS lines_by_line ON lines(batch_id, line);";

// The batch record as stored (one JSON column: the schema of a batch changes with OpenAI's,
// the table does not have to).
std::string EncodeBatch(const BatchRecord& b) {
  return json{{"id", b.id},
              {"owner", b.owner},
              {"endpoint", b.endpoint},
              {"input_file_id", b.input_file_id},
              {"completion_window", b.completion_window},
              {"status", StatusName(b.status)},
              {"output_file_id", b.output_file_id},
              {"error_file_id", b.error_file_id},
              {"errors", b.errors_json},
              {"total", b.total},
              {"completed", b.completed},
              {"failed", b.failed},
              {"published", b.published},
              {"created_at", b.created_at},
              {"in_progress_at", b.in_progress_at},
              {"expires_at", b.expires_at},
              {"finalizing_at", b.finalizing_at},
              {"completed_at", b.completed_at},
              {"failed_at", b.failed_at},
              {"expired_at", b.expired_at},
              {"cancelling_at", b.cancelling_at},
              {"cancelled_at", b.cancelled_at},
              {"metadata", b.metadata}}
      .dump(-1, ' ', false, json::error_handler_t::replace);
}

bool DecodeBatch(const std::string& text, BatchRecord* b) {
  json j = json::parse(text, nullptr, false);
  if (!j.is_object()) return false;
  try {
    b->id = j.value("id", "");
    b->owner = j.value("owner", "");
    b->endpoint = j.value("endpoint", "");
    b->input_file_id = j.value("input_file_id", "");
    b->completion_window = j.value("completion_window", "");
    if (!ParseStatus(j.value("status", ""), &b->status)) return false;
    b->output_file_id = j.value("output_file_id", "");
    b->error_file_id = j.value("error_file_id", "");
    b->errors_json = j.value("errors", "");
    b->total = j.value("total", int64_t{0});
    b->completed = j.value("completed", int64_t{0});
    b->failed = j.value("failed", int64_t{0});
    b->published = j.value("published", int64_t{0});
    b->created_at = j.value("created_at", int64_t{0});
    b->in_progress_at = j.value("in_progress_at", int64_t{0});
    b->expires_at = j.value("expires_at", int64_t{0});
    b->finalizing_at = j.value("finalizing_at", int64_t{0});
    b->completed_at = j.value("completed_at", int64_t{0});
    b->failed_at = j.value("failed_at", int64_t{0});
    b->expired_at = j.value("expired_at", int64_t{0});
    b->cancelling_at = j.value("cancelling_at", int64_t{0});
    b->cancelled_at = j.value("cancelled_at", int64_t{0});
    b->metadata = j.value("metadata", std::map<std::string, std::string>{});
  } catch (const json::exception&) {
    return false;
  }
  return true;
}

bool WriteDurably(const fs::path& path, std::string_view content, std::string* error) {
  fs::path tmp = path;
  tmp += ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    *error = "cannot create " + tmp.string() + ": " + std::strerror(errno);
    return false;
  }
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      *error = "cannot write " + tmp.string() + ": " + std::strerror(errno);
      ::close(fd);
      ::unlink(tmp.c_str());
      return false;
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    *error = "cannot fsync " + tmp.string() + ": " + std::strerror(errno);
    ::close(fd);
    ::unlink(tmp.c_str());
    return false;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    *error = "cannot rename " + tmp.string() + ": " + std::strerror(errno);
    ::unlink(tmp.c_str());
    return false;
  }
  return true;
}

}  // namespace

struct Store::Impl : queue::SqliteDb {};

std::unique_ptr<Store> Store::Open(const std::string& dir, std::string* error) {
  std::error_code ec;
  fs::create_directories(fs::path(dir) / "files", ec);
  if (ec) {
    *error = "cannot create the batch directory " + dir + "/files: " + ec.message();
    return nullptr;
  }
  std::unique_ptr<Store> s(new Store());
  s->dir_ = dir;
  s->impl_ = std::make_unique<Impl>();
  Impl& im = *s->impl_;
  if (!im.Open("batch store", (fs::path(dir) / "batches.db").string(), kSchema, error))
    return nullptr;
  // Leftovers of a write interrupted by a crash.
  for (const auto& e : fs::directory_iterator(fs::path(dir) / "files", ec))
    if (e.path().extension() == ".tmp") fs::remove(e.path(), ec);
  return s;
}

Store::~Store() = default;

std::string Store::FilePath(std::string_view file_id) const {
  return (fs::path(dir_) / "files" / std::string(file_id)).string();
}

bool Store::CreateFile(FileRecord* f, std::string_view content, std::string* error) {
  if (!WriteDurably(FilePath(f->id), content, error)) return false;
  f->bytes = content.size();
  std::lock_guard lock(impl_->mu);
  Stmt st(impl_->db,
          "INSERT INTO files(id, owner, filename, purpose, bytes, created_at) "
          "VALUES(?,?,?,?,?,?)");
  st.Bind(1, f->id)
      .Bind(2, f->owner)
      .Bind(3, f->filename)
      .Bind(4, f->purpose)
      .Bind(5, static_cast<int64_t>(f->bytes))
      .Bind(6, f->created_at);
  if (!st.ok() || st.Step() != SQLITE_DONE) {
    *error = impl_->Error("insert file");
    std::error_code ec;
    fs::remove(FilePath(f->id), ec);
    return false;
  }
  return true;
}

namespace {
FileRecord FileFrom(const Stmt& st) {
  FileRecord f;
  f.id = st.Text(0);
  f.owner = st.Text(1);
  f.filename = st.Text(2);
  f.purpose = st.Text(3);
  f.bytes = static_cast<uint64_t>(st.Int(4));
  f.created_at = st.Int(5);
  f.deleted = st.Int(6) != 0;
  return f;
}
}  // namespace

std::optional<FileRecord> Store::GetFile(std::string_view id, std::string_view owner) {
  std::lock_guard lock(impl_->mu);
  Stmt st(impl_->db,
          "SELECT id, owner, filename, purpose, bytes, created_at, deleted FROM files "
          "WHERE id = ? AND owner = ? AND deleted = 0");
  st.Bind(1, id).Bind(2, owner);
  if (st.Step() != SQLITE_ROW) return std::nullopt;
  return FileFrom(st);
}

std::vector<FileRecord> Store::ListFiles(std::string_view owner, std::string_view purpose) {
  std::lock_guard lock(impl_->mu);
  Stmt st(impl_->db,
          "SELECT id, owner, filename, purpose, bytes, created_at, deleted FROM files "
          "WHERE owner = ? AND deleted = 0 AND (? = '' OR purpose = ?) ORDER BY created_at DESC, "
          "rowid DESC LIMIT 10000");
  st.Bind(1, owner).Bind(2, purpose).Bind(3, purpose);
  std::vector<FileRecord> out;
  while (st.Step() == SQLITE_ROW) out.push_back(FileFrom(st));
  return out;
}

bool Store::DeleteFile(std::string_view id, std::string_view owner, std::string* error) {
  {
    std::lock_guard lock(impl_->mu);
    Stmt st(impl_->db, "UPDATE files SET deleted = 1 WHERE id = ? AND owner = ? AND deleted = 0");
    st.Bind(1, id).Bind(2, owner);
    if (st.Step() != SQLITE_DONE) {
      *error = impl_->Error("delete file");
      return false;
    }
    if (sqlite3_changes(impl_->db) == 0) return false;
  }
  CollectDeletedFiles();
  return true;
}

bool Store::ReadFile(std::string_view id, std::string* out, std::string* error) const {
  const std::string path = FilePath(id);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *error = "cannot open " + path + ": " + std::strerror(errno);
    return false;
  }
  out->clear();
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      *error = "cannot read " + path + ": " + std::strerror(errno);
      ::close(fd);
      return false;
    }
    if (n == 0) break;
    out->append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return true;
}

bool Store::ReadRange(std::string_view id, uint64_t offset, uint64_t length, std::string* out,
                      std::string* error) const {
  const std::string path = FilePath(id);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *error = "cannot open " + path + ": " + std::strerror(errno);
    return false;
  }
  out->resize(length);
  size_t done = 0;
  while (done < length) {
    ssize_t n = ::pread(fd, out->data() + done, length - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      *error =
          "cannot read " + path +
          (n == 0 ? ": it is shorter than expected" : std::string(": ") + std::strerror(errno));
      ::close(fd);
      return false;
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  return true;
}

bool Store::CreateBatch(const BatchRecord& b, std::string* error) {
  std::lock_guard lock(impl_->mu);
  Stmt st(impl_->db, "INSERT INTO batches(id, owner, record, status) VALUES(?,?,?,?)");
  st.Bind(1, b.id).Bind(2, b.owner).Bind(3, EncodeBatch(b)).Bind(4, StatusName(b.status));
  if (!st.ok() || st.Step() != SQLITE_DONE) {
    *error = impl_->Error("insert batch");
    return false;
  }
  return true;
}

std::optional<BatchRecord> Store::GetBatch(std::string_view id) {
  std::lock_guard lock(impl_->mu);
  Stmt st(impl_->db, "SELECT record FROM batches WHERE id = ?");
  st.Bind(1, id);
  BatchRecord b;
  if (st.Step() != SQLITE_ROW || !DecodeBatch(st.Text(0), &b)) return std::nullopt;
  return b;
}

std::vector<BatchRecord> Store::ListBatches(std::string_view owner, std::string_view after,
                                            int limit, bool* has_more) {
  std::lock_guard lock(impl_->mu);
  Stmt st(impl_->db,
          "SELECT record FROM batches WHERE owner = ? AND seq < COALESCE((SELECT seq FROM "
          "batches WHERE id = ?), 9223372036854775807) ORDER BY seq DESC LIMIT ?");
  st.Bind(1, owner).Bind(2, after).Bind(3, static_cast<int64_t>(limit) + 1);
  std::vector<BatchRecord> out;
  while (st.Step() == SQLITE_ROW) {
    BatchRecord b;
    if (DecodeBatch(st.Text(0), &b)) out.push_back(std::move(b));
  }
  *has_more = out.size() > static_cast<size_t>(limit);
  if (*has_more) out.pop_back();
  return out;
}

std::vector<BatchRecord> Store::UnfinishedBatches() {
  std::lock_guard lock(impl_->mu);
  Stmt st(impl_->db,
          "SELECT record FROM batches WHERE status NOT IN ('failed', 'completed', 'expired', "
          "'cancelled') ORDER BY seq");
  std::vector<BatchRecord> out;
  while (st.Step() == SQLITE_ROW) {
    BatchRecord b;
    if (DecodeBatch(st.Text(0), &b)) out.push_back(std::move(b));
  }
  return out;
}

std::vector<std::string> Store::EndedEarly(int64_t now) {
  std::lock_guard lock(impl_->mu);
  Stmt st(impl_->db,
          "SELECT record FROM batches WHERE status IN ('cancelling', 'cancelled', 'expired')");
  std::vector<std::string> out;
  while (st.Step() == SQLITE_ROW) {
    BatchRecord b;
    if (DecodeBatch(st.Text(0), &b) && b.expires_at > now) out.push_back(b.id);
  }
  return out;
}

bool Store::UpdateBatch(const BatchRecord& b, std::string* error) {
  std::lock_guard lock(impl_->mu);
  Stmt st(impl_->db, "UPDATE batches SET record = ?, status = ? WHERE id = ?");
  st.Bind(1, EncodeBatch(b)).Bind(2, StatusName(b.status)).Bind(3, b.id);
  if (!st.ok() || st.Step() != SQLITE_DONE) {
    *error = impl_->Error("update batch");
    return false;
  }
  return true;
}

bool Store::StartBatch(const BatchRecord& b, const std::vector<InputLine>& lines,
                       std::string* error) {
  std::lock_guard lock(impl_->mu);
  Impl& im = *impl_;
  if (!im.Exec("BEGIN IMMEDIATE")) {
    *error = im.Error("begin");
    return false;
  }
  auto fail = [&](const char* op) {
    *error = im.Error(op);
    im.Exec("ROLLBACK");
    return false;
  };
  {
    Stmt del(im.db, "DELETE FROM lines WHERE batch_id = ?");  // a validation cut short
    del.Bind(1, b.id);
    if (del.Step() != SQLITE_DONE) return fail("clear lines");
    Stmt ins(im.db,
             "INSERT INTO lines(batch_id, line, pos, custom_id, off, len) VALUES(?,?,?,?,?,?)");
    if (!ins.ok()) return fail("prepare lines");
    int64_t pos = 0;
    for (const auto& l : lines) {
      ins.Bind(1, b.id)
          .Bind(2, l.line)
          .Bind(3, pos++)
          .Bind(4, l.custom_id)
          .Bind(5, static_cast<int64_t>(l.offset))
          .Bind(6, static_cast<int64_t>(l.length));
      if (ins.Step() != SQLITE_DONE) return fail("insert line");
      ins.Reset();
    }
    Stmt up(im.db, "UPDATE batches SET record = ?, status = ? WHERE id = ?");
    up.Bind(1, EncodeBatch(b)).Bind(2, StatusName(b.status)).Bind(3, b.id);
    if (up.Step() != SQLITE_DONE) return fail("update batch");
  }
  if (!im.Exec("COMMIT")) return fail("commit");
  return true;
}

std::vector<InputLine> Store::LinesFrom(std::string_view batch_id, int64_t from, int64_t n) {
  std::lock_guard lock(impl_->mu);
  Stmt st(impl_->db,
          "SELECT line, off, len, custom_id FROM lines WHERE batch_id = ? AND pos >= ? ORDER BY "
          "pos LIMIT ?");
  st.Bind(1, batch_id).Bind(2, from).Bind(3, n);
  std::vector<InputLine> out;
  while (st.Step() == SQLITE_ROW) {
    out.push_back({st.Int(0), static_cast<uint64_t>(st.Int(1)), static_cast<uint64_t>(st.Int(2)),
                   st.Text(3)});
  }
  return out;
}

std::map<std::string, int64_t> Store::CountByStatus() {
  std::lock_guard lock(impl_->mu);
  Stmt st(impl_->db, "SELECT status, COUNT(*) FROM batches GROUP BY status");
  std::map<std::string, int64_t> out;
  while (st.Step() == SQLITE_ROW) out[st.Text(0)] = st.Int(1);
  return out;
}

int64_t Store::RecordOutcomes(const std::vector<Recorded>& outcomes, std::string* error,
                              std::vector<char>* stored_flags) {
  if (stored_flags) stored_flags->assign(outcomes.size(), 0);
  if (outcomes.empty()) return 0;
  std::lock_guard lock(impl_->mu);
  Impl& im = *impl_;
  if (!im.Exec("BEGIN IMMEDIATE")) {
    *error = im.Error("begin");
    return -1;
  }
  auto fail = [&](const char* op) -> int64_t {
    *error = im.Error(op);
    im.Exec("ROLLBACK");
    if (stored_flags) stored_flags->assign(outcomes.size(), 0);
    return -1;
  };
  int64_t stored = 0;
  std::map<std::string, std::pair<int64_t, int64_t>> counts;  // batch → (completed, failed)
  {
    Stmt up(im.db,
            "UPDATE lines SET answered = 1, status_code = ?, body = ?, error_code = ?, "
            "error_message = ? WHERE batch_id = ? AND line = ? AND answered = 0");
    if (!up.ok()) return fail("prepare outcome");
    for (size_t i = 0; i < outcomes.size(); ++i) {
      const Recorded& r = outcomes[i];
      const LineOutcome& o = r.outcome;
      up.Bind(1, static_cast<int64_t>(o.status_code))
          .BindBlob(2, o.body)
          .Bind(3, o.error_code)
          .Bind(4, o.error_message)
          .Bind(5, r.batch_id)
          .Bind(6, o.line);
      if (up.Step() != SQLITE_DONE) return fail("store outcome");
      up.Reset();
      if (sqlite3_changes(im.db) == 0) continue;
      ++stored;
      if (stored_flags) (*stored_flags)[i] = 1;
      auto& c = counts[r.batch_id];
      (IsSuccess(o) ? c.first : c.second) += 1;
    }
    Stmt get(im.db, "SELECT record FROM batches WHERE id = ?");
    Stmt put(im.db, "UPDATE batches SET record = ? WHERE id = ?");
    for (const auto& [id, c] : counts) {
      get.Bind(1, id);
      BatchRecord b;
      const bool found = get.Step() == SQLITE_ROW && DecodeBatch(get.Text(0), &b);
      get.Reset();
      if (!found) continue;
      b.completed += c.first;
      b.failed += c.second;
      put.Bind(1, EncodeBatch(b)).Bind(2, id);
      if (put.Step() != SQLITE_DONE) return fail("count outcomes");
      put.Reset();
    }
  }
  if (!im.Exec("COMMIT")) return fail("commit");
  return stored;
}

bool Store::ForEachLine(std::string_view batch_id, const std::function<void(const LineState&)>& fn,
                        std::string* error) {
  std::lock_guard lock(impl_->mu);
  Stmt st(impl_->db,
          "SELECT line, custom_id, answered, status_code, body, error_code, error_message FROM "
          "lines WHERE batch_id = ? ORDER BY pos");
  if (!st.ok()) {
    *error = impl_->Error("read lines");
    return false;
  }
  st.Bind(1, batch_id);
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW) {
    LineState s;
    s.outcome.line = st.Int(0);
    s.outcome.custom_id = st.Text(1);
    s.answered = st.Int(2) != 0;
    s.outcome.status_code = static_cast<int>(st.Int(3));
    s.outcome.body = st.Text(4);
    s.outcome.error_code = st.Text(5);
    s.outcome.error_message = st.Text(6);
    fn(s);
  }
  if (rc != SQLITE_DONE) {
    *error = impl_->Error("read lines");
    return false;
  }
  return true;
}

void Store::CollectDeletedFiles() {
  std::vector<std::string> gone;
  {
    std::lock_guard lock(impl_->mu);
    Stmt st(impl_->db, "SELECT id FROM files WHERE deleted = 1");
    std::vector<std::string> deleted;
    while (st.Step() == SQLITE_ROW) deleted.push_back(st.Text(0));
    if (deleted.empty()) return;
    Stmt active(impl_->db,
                "SELECT record FROM batches WHERE status NOT IN ('failed', 'completed', "
                "'expired', 'cancelled')");
    std::set<std::string> in_use;
    while (active.Step() == SQLITE_ROW) {
      BatchRecord b;
      if (DecodeBatch(active.Text(0), &b)) in_use.insert(b.input_file_id);
    }
    Stmt del(impl_->db, "DELETE FROM files WHERE id = ?");
    for (const auto& id : deleted) {
      if (in_use.count(id)) continue;
      del.Bind(1, id);
      if (del.Step() == SQLITE_DONE) gone.push_back(id);
      del.Reset();
    }
  }
  for (const auto& id : gone) {
    std::error_code ec;
    fs::remove(FilePath(id), ec);
  }
}

}  // namespace tidegate::batch
