// discovery/file_source.cc — a YAML endpoint list on disk, watched.
//
// The file is checked every `interval` (default 1 s): its identity, size and modification time
// (after following symlinks, so a Kubernetes ConfigMap's atomic symlink swap is seen), and it is
// re-read when one changed or when Refresh() (SIGHUP) asks. A file that is missing or malformed
// keeps the last good set; the error is reported (SetHealthy) and logged once per change.
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <atomic>

#include "discovery/builtin.h"
#include "discovery/endpoint_list.h"
#include "discovery/poll_loop.h"

namespace tidegate::discovery {
namespace {

class FileSource final : public Source {
 public:
  FileSource(std::string path, double interval_s)
      : path_(std::move(path)), interval_s_(interval_s) {}
  ~FileSource() override { Stop(); }

  const std::string& Type() const override { return type_; }
  std::string Describe() const override { return "file " + path_; }

  std::string Start(Sink* sink) override {
    sink_ = sink;
    // The first read is synchronous, and must succeed: the gateway starts with the file's
    // endpoints, or not at all (a typo in the path is not an empty pool).
    Check(true);
    if (!last_error_.empty()) return last_error_;
    // A timed check reads the file only when its stamp changed; Refresh() forces a read.
    loop_.Start(interval_s_, [this] { Check(forced_.exchange(false)); });
    return {};
  }

  void Stop() override { loop_.Stop(); }

  void Refresh() override {
    forced_.store(true);
    loop_.Refresh();
  }

 private:
  struct Stamp {
    bool exists = false;
    dev_t dev = 0;
    ino_t ino = 0;
    off_t size = 0;
    int64_t mtime_ns = 0;
    bool operator==(const Stamp&) const = default;
  };

  Stamp StampNow() const {
    struct stat st;
    Stamp s;
    if (::stat(path_.c_str(), &st) != 0) return s;
    s.exists = true;
    s.dev = st.st_dev;
    s.ino = st.st_ino;
    s.size = st.st_size;
    s.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
    return s;
  }

  // Re-reads the file when it changed (or `forced`) and reports what it found.
  void Check(bool forced) {
    const Stamp now = StampNow();
    if (!forced && now == last_ && have_last_) return;
    last_ = now;
    have_last_ = true;
    std::vector<pool::EndpointConfig> eps;
    std::string err = LoadEndpointFile(path_, &eps);
    if (!err.empty()) {
      if (err != last_error_)
        spdlog::warn("discovery file: {}; keeping the last {} endpoint(s)", err, reported_);
      last_error_ = err;
      sink_->SetHealthy(false, err);
      return;
    }
    if (!last_error_.empty()) spdlog::info("discovery file: {} readable again", path_);
    last_error_.clear();
    reported_ = eps.size();
    sink_->SetEndpoints(eps);
    sink_->SetHealthy(true, "");
  }

  const std::string type_ = "file";
  const std::string path_;
  const double interval_s_;
  Sink* sink_ = nullptr;
  std::atomic<bool> forced_{false};
  // The checking thread's own (Check runs on it, or on the Start() caller before it exists).
  Stamp last_;
  bool have_last_ = false;
  std::string last_error_;
  size_t reported_ = 0;
  PollLoop loop_;  // last: stopped before the state above goes
};

}  // namespace

std::unique_ptr<Source> MakeFileSource(const SourceSpec& spec, std::string* error) {
  Params p(spec);
  const std::string path = p.String("path");
  double interval = 1;
  if (!p.Seconds("interval", 1, &interval, error)) return nullptr;
  if (auto err = p.Leftover({"path", "interval"}); !err.empty()) {
    *error = err;
    return nullptr;
  }
  if (path.empty()) {
    *error = "needs path=FILE (a YAML list of endpoints)";
    return nullptr;
  }
  return std::make_unique<FileSource>(path, interval);
}

}  // namespace tidegate::discovery
