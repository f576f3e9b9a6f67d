// discovery/kubernetes_source.cc — an InferencePool's pods, from the Kubernetes API.
//
// Three list-and-watch loops, each on its own thread with its own libcurl handle (blocking is
// fine there): the InferencePool itself (its selector and target ports may change), the pods its
// selector matches, and, when `objectives` is on, the InferenceObjective objects naming the pool.
// Each loop lists, keeps the list's resourceVersion, then watches from it with bookmarks,
// updating the version from every event; a watch that ends (its timeoutSeconds, or the server
// closing it) is reopened from the last version, and a 410 Gone (as the HTTP status or as an
// ERROR event carrying a Status with code 410) makes it list again. A request that fails marks
// the source unhealthy and is retried with exponential backoff; the last reported set stays, and
// nothing is reported until a new list succeeded. The whole endpoint set goes to the sink after
// every change that alters it. A change of the pool's selector aborts the pod watch and lists
// again. Stop() shuts the loops' sockets down, so it returns at once even mid-watch.
#include <curl/curl.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <condition_variable>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <mutex>
#include <sstream>
#include <thread>

#include "discovery/builtin.h"
#include "discovery/endpoint_list.h"
#include "discovery/kubernetes.h"

namespace tidegate::discovery {
namespace {

using nlohmann::json;

constexpr const char* kServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount";
constexpr long kIdleSeconds = 90;  // a watch silent this long (no event, no bookmark) reconnects

struct KubeSettings {
  std::string pool;
  std::string ns;  // "" = from the credentials, else "default"
  bool objectives = true;
  std::string objectives_api = "llm-d.ai/v1alpha2";
  std::string kubeconfig, context, api;
  std::string engine;
  uint16_t metrics_port = 0;
  double watch_timeout_s = 240;
  double backoff_max_s = 10;
};

std::string ReadSmallFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  std::ostringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

// The sockets a loop's transfers use, so that Stop() or a selector change can shut them down
// from another thread. Each socket is tagged with the generation its request was started for.
class Conn {
 public:
  void Add(int fd, uint64_t gen) {
    std::lock_guard lock(mu_);
    fds_[fd] = gen;
  }
  void Remove(int fd) {
    std::lock_guard lock(mu_);
    fds_.erase(fd);
  }
  // Shuts down the sockets of requests started for a generation before `gen`.
  void KickBefore(uint64_t gen) {
    std::lock_guard lock(mu_);
    for (const auto& [fd, g] : fds_)
      if (g < gen) ::shutdown(fd, SHUT_RDWR);
  }

 private:
  std::mutex mu_;
  std::map<int, uint64_t> fds_;
};

// One HTTP GET against the API server on a reused easy handle.
class ApiClient {
 public:
  ApiClient(const k8s::ApiConfig& cfg, Conn& conn, std::function<bool()> abort)
      : cfg_(cfg), conn_(conn), abort_(std::move(abort)), h_(curl_easy_init()) {}
  ~ApiClient() {
    if (h_) curl_easy_cleanup(h_);
  }

  struct Result {
    long status = 0;       // 0 = no HTTP answer
    std::string error;     // transport error ("" when an HTTP answer arrived in full)
    std::string body;      // list body, or the error body of a non-200 answer
    bool stopped = false;  // the line handler or abort() ended it
  };

  // Lists (the whole body in `body`).
  Result Get(const std::string& path_and_query, uint64_t gen) {
    return Run(path_and_query, gen, /*timeout_s=*/30, nullptr);
  }

  // Watches: `on_open` runs once the 200 answer's head is in (the watch is established), then
  // `on_line` gets each line of its body; returning false ends the watch.
  Result Watch(const std::string& path_and_query, uint64_t gen, long timeout_s,
               const std::function<void()>& on_open,
               const std::function<bool(std::string_view)>& on_line) {
    return Run(path_and_query, gen, timeout_s, &on_line, &on_open);
  }

 private:
  struct Transfer {
    ApiClient* self = nullptr;
    uint64_t gen = 0;
    const std::function<bool(std::string_view)>* on_line = nullptr;
    const std::function<void()>* on_open = nullptr;
    long status = 0;
    std::string buf;  // partial line (watch) or body
    bool stopped = false;
  };

  static size_t OnData(char* data, size_t size, size_t n, void* user) {
    auto* t = static_cast<Transfer*>(user);
    const size_t len = size * n;
    if (t->status == 0) curl_easy_getinfo(t->self->h_, CURLINFO_RESPONSE_CODE, &t->status);
    if (!t->on_line || t->status != 200) {
      if (t->buf.size() < (64u << 20)) t->buf.append(data, len);
      return len;
    }
    t->buf.append(data, len);
    size_t start = 0;
    for (;;) {
      const size_t nl = t->buf.find('\n', start);
      if (nl == std::string::npos) break;
      std::string_view line(t->buf.data() + start, nl - start);
      start = nl + 1;
      if (line.empty()) continue;
      if (!(*t->on_line)(line)) {
        t->stopped = true;
        return 0;  // aborts the transfer
      }
    }
    t->buf.erase(0, start);
    return len;
  }

  // The end of a response head (its blank line): a 200 watch is open.
  static size_t OnHeader(char* data, size_t size, size_t n, void* user) {
    auto* t = static_cast<Transfer*>(user);
    const size_t len = size * n;
    if (len <= 2 && (len == 0 || data[0] == '\r' || data[0] == '\n')) {
      long code = 0;
      curl_easy_getinfo(t->self->h_, CURLINFO_RESPONSE_CODE, &code);
      if (code == 200 && t->on_open && *t->on_open) (*t->on_open)();
    }
    return len;
  }

  static int OnProgress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
    auto* t = static_cast<Transfer*>(user);
    if (t->self->abort_()) {
      t->stopped = true;
      return 1;
    }
    return 0;
  }

  static curl_socket_t OnOpen(void* user, curlsocktype, struct curl_sockaddr* a) {
    auto* t = static_cast<Transfer*>(user);
    const int fd = ::socket(a->family, a->socktype, a->protocol);
    if (fd >= 0) t->self->conn_.Add(fd, t->gen);
    return fd >= 0 ? fd : CURL_SOCKET_BAD;
  }

  static int OnClose(void* user, curl_socket_t fd) {
    static_cast<ApiClient*>(user)->conn_.Remove(fd);
    return ::close(fd);
  }

  Result Run(const std::string& path_and_query, uint64_t gen, long timeout_s,
             const std::function<bool(std::string_view)>* on_line,
             const std::function<void()>* on_open = nullptr) {
    Result r;
    if (!h_) {
      r.error = "cannot create a libcurl handle";
      return r;
    }
    Transfer t;
    t.self = this;
    t.gen = gen;
    t.on_line = on_line;
    t.on_open = on_open;
    curl_easy_reset(h_);
    const std::string url = cfg_.server + path_and_query;
    curl_easy_setopt(h_, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h_, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(h_, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h_, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(h_, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h_, CURLOPT_TCP_KEEPIDLE, 30L);
    curl_easy_setopt(h_, CURLOPT_TCP_KEEPINTVL, 10L);
    curl_easy_setopt(h_, CURLOPT_CONNECTTIMEOUT, 5L);
    curl_easy_setopt(h_, CURLOPT_TIMEOUT, timeout_s);
    if (on_line) {
      curl_easy_setopt(h_, CURLOPT_LOW_SPEED_LIMIT, 1L);
      curl_easy_setopt(h_, CURLOPT_LOW_SPEED_TIME, kIdleSeconds);
    }
    curl_easy_setopt(h_, CURLOPT_WRITEFUNCTION, &ApiClient::OnData);
    curl_easy_setopt(h_, CURLOPT_WRITEDATA, &t);
    curl_easy_setopt(h_, CURLOPT_HEADERFUNCTION, &ApiClient::OnHeader);
    curl_easy_setopt(h_, CURLOPT_HEADERDATA, &t);
    curl_easy_setopt(h_, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h_, CURLOPT_XFERINFOFUNCTION, &ApiClient::OnProgress);
    curl_easy_setopt(h_, CURLOPT_XFERINFODATA, &t);
    curl_easy_setopt(h_, CURLOPT_OPENSOCKETFUNCTION, &ApiClient::OnOpen);
    curl_easy_setopt(h_, CURLOPT_OPENSOCKETDATA, &t);
    curl_easy_setopt(h_, CURLOPT_CLOSESOCKETFUNCTION, &ApiClient::OnClose);
    curl_easy_setopt(h_, CURLOPT_CLOSESOCKETDATA, this);
    curl_easy_setopt(h_, CURLOPT_USERAGENT, "tidegate-discovery");
    // TLS: the cluster's CA, or none checked when the kubeconfig says so.
    curl_blob ca{}, cert{}, key{};
    if (!cfg_.ca_pem.empty()) {
      ca = {const_cast<char*>(cfg_.ca_pem.data()), cfg_.ca_pem.size(), CURL_BLOB_NOCOPY};
      curl_easy_setopt(h_, CURLOPT_CAINFO_BLOB, &ca);
    } else if (!cfg_.ca_file.empty()) {
      curl_easy_setopt(h_, CURLOPT_CAINFO, cfg_.ca_file.c_str());
    }
    if (cfg_.insecure) {
      curl_easy_setopt(h_, CURLOPT_SSL_VERIFYPEER, 0L);
      curl_easy_setopt(h_, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (!cfg_.client_cert_pem.empty()) {
      cert = {const_cast<char*>(cfg_.client_cert_pem.data()), cfg_.client_cert_pem.size(),
              CURL_BLOB_NOCOPY};
      curl_easy_setopt(h_, CURLOPT_SSLCERT_BLOB, &cert);
      curl_easy_setopt(h_, CURLOPT_SSLCERTTYPE, "PEM");
    } else if (!cfg_.client_cert_file.empty()) {
      curl_easy_setopt(h_, CURLOPT_SSLCERT, cfg_.client_cert_file.c_str());
    }
    if (!cfg_.client_key_pem.empty()) {
      key = {const_cast<char*>(cfg_.client_key_pem.data()), cfg_.client_key_pem.size(),
             CURL_BLOB_NOCOPY};
      curl_easy_setopt(h_, CURLOPT_SSLKEY_BLOB, &key);
      curl_easy_setopt(h_, CURLOPT_SSLKEYTYPE, "PEM");
    } else if (!cfg_.client_key_file.empty()) {
      curl_easy_setopt(h_, CURLOPT_SSLKEY, cfg_.client_key_file.c_str());
    }
    // The token is read again for every request: a projected service-account token rotates.
    std::string token = cfg_.token;
    if (token.empty() && !cfg_.token_file.empty()) token = ReadSmallFile(cfg_.token_file);
    curl_slist* headers = curl_slist_append(nullptr, "Accept: application/json");
    if (!token.empty())
      headers = curl_slist_append(headers, ("Authorization: Bearer " + token).c_str());
    curl_easy_setopt(h_, CURLOPT_HTTPHEADER, headers);
    char errbuf[CURL_ERROR_SIZE] = {0};
    curl_easy_setopt(h_, CURLOPT_ERRORBUFFER, errbuf);

    const CURLcode rc = curl_easy_perform(h_);
    curl_slist_free_all(headers);
    if (t.status == 0) curl_easy_getinfo(h_, CURLINFO_RESPONSE_CODE, &t.status);
    r.status = t.status;
    r.stopped = t.stopped;
    r.body = std::move(t.buf);
    if (rc != CURLE_OK && !t.stopped)
      r.error = errbuf[0] ? std::string(errbuf) : std::string(curl_easy_strerror(rc));
    return r;
  }

  const k8s::ApiConfig& cfg_;
  Conn& conn_;
  std::function<bool()> abort_;
  CURL* h_;
};

// A Status body's message, or the start of the body.
std::string ErrorText(const ApiClient::Result& r) {
  if (!r.error.empty()) return r.error;
  json j = json::parse(r.body, nullptr, false);
  if (j.is_object() && j.contains("message") && j["message"].is_string())
    return "HTTP " + std::to_string(r.status) + ": " + j["message"].get<std::string>();
  return "HTTP " + std::to_string(r.status) + (r.body.empty() ? "" : ": " + r.body.substr(0, 200));
}

// A string member at `pointer` ("/metadata/name"), or "" when absent or not a string.
std::string StrAt(const json& j, const char* pointer) {
  if (!j.is_object()) return {};
  const json::json_pointer ptr(pointer);
  if (!j.contains(ptr)) return {};
  const json& v = j.at(ptr);
  return v.is_string() ? v.get<std::string>() : std::string();
}

std::string Escape(const std::string& s) {
  std::string out;
  static const char* hex = "0123456789ABCDEF";
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

class KubernetesSource final : public Source {
 public:
  explicit KubernetesSource(KubeSettings s) : s_(std::move(s)) {}
  ~KubernetesSource() override { Stop(); }

  const std::string& Type() const override { return type_; }
  std::string Describe() const override {
    return "kubernetes InferencePool " + ns_ + "/" + s_.pool + " via " + api_.server + " (" +
           api_.origin + ")" + (s_.objectives ? ", InferenceObjectives " + s_.objectives_api : "");
  }

  std::string Start(Sink* sink) override {
    if (auto err = LoadCredentials(); !err.empty()) return err;
    static std::once_flag curl_once;
    std::call_once(curl_once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
    sink_ = sink;
    threads_.emplace_back([this] { PoolLoop(); });
    threads_.emplace_back([this] { PodLoop(); });
    if (s_.objectives) threads_.emplace_back([this] { ObjectiveLoop(); });
    // Give the API server a moment to answer, so that the gateway starts with its pool filled;
    // an error ends the wait at once (the loops keep trying).
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(5),
                 [&] { return reported_once_ || !errors_.empty() || stopping_; });
    return {};
  }

  void Stop() override {
    {
      std::lock_guard lock(mu_);
      if (stopping_ && threads_.empty()) return;
      stopping_ = true;
    }
    cv_.notify_all();
    for (Conn* c : {&pool_conn_, &pod_conn_, &obj_conn_}) c->KickBefore(UINT64_MAX);
    for (auto& t : threads_)
      if (t.joinable()) t.join();
    threads_.clear();
  }

  void Refresh() override {
    // The watches are live; a SIGHUP re-lists the pods anyway (cheap, and a way out of doubt).
    std::lock_guard lock(mu_);
    ++pod_gen_;
    pod_conn_.KickBefore(pod_gen_);
    cv_.notify_all();
  }

 private:
  std::string LoadCredentials() {
    std::string err;
    if (!s_.kubeconfig.empty()) {
      err = k8s::ReadKubeconfig(s_.kubeconfig, s_.context, &api_);
    } else if (const char* host = std::getenv("KUBERNETES_SERVICE_HOST"); host && s_.api.empty()) {
      const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
      err = k8s::LoadInCluster(host, port ? port : "", kServiceAccountDir, &api_);
    } else if (s_.api.empty()) {
      std::string path;
      if (const char* kc = std::getenv("KUBECONFIG"); kc && *kc) {
        path = kc;
        if (const size_t colon = path.find(':'); colon != std::string::npos) path.resize(colon);
      } else if (const char* home = std::getenv("HOME"); home && *home) {
        path = std::string(home) + "/.kube/config";
      }
      if (path.empty())
        return "no credentials: not in a cluster, and no kubeconfig (kubeconfig=FILE)";
      err = k8s::ReadKubeconfig(path, s_.context, &api_);
      if (!err.empty())
        err += " (not in a cluster: KUBERNETES_SERVICE_HOST is unset; give kubeconfig=FILE)";
    } else {
      api_.origin = "no credentials";
    }
    if (!err.empty()) return err;
    if (!s_.api.empty()) {
      api_.server = s_.api;
      while (!api_.server.empty() && api_.server.back() == '/') api_.server.pop_back();
    }
    ns_ = s_.ns;
    if (ns_.empty()) ns_ = api_.namespace_;
    if (ns_.empty()) ns_ = ReadSmallFile(std::string(kServiceAccountDir) + "/namespace");
    if (ns_.empty()) ns_ = "default";
    return {};
  }

  // --- health and reports (under mu_) ---

  void SetErrorLocked(const std::string& what, const std::string& err) {
    if (err.empty()) {
      if (errors_.erase(what)) spdlog::info("discovery kubernetes: {} readable again", what);
    } else {
      auto& slot = errors_[what];
      if (slot != err)
        spdlog::warn("discovery kubernetes: {}: {}; keeping the last {} endpoint(s)", what, err,
                     last_.size());
      slot = err;
    }
    std::string reason;
    for (const auto& [k, v] : errors_) reason += (reason.empty() ? "" : "; ") + k + ": " + v;
    const bool healthy = reason.empty();
    if (health_reported_ && healthy == healthy_ && reason == reason_) return;
    health_reported_ = true;
    healthy_ = healthy;
    reason_ = reason;
    sink_->SetHealthy(healthy, reason);
    cv_.notify_all();
  }

  void ReportLocked() {
    if (!pool_known_ || !pods_synced_) return;
    std::vector<std::pair<std::string, uint16_t>> found;
    for (const auto& [name, pod] : pods_)
      for (auto& ep : k8s::PodEndpoints(pod, spec_.target_ports)) found.push_back(std::move(ep));
    std::sort(found.begin(), found.end());
    found.erase(std::unique(found.begin(), found.end()), found.end());
    if (reported_once_ && found == last_) return;
    if (found.empty() && !last_.empty())
      spdlog::warn(
          "discovery kubernetes: no pod of InferencePool {}/{} is ready: the pool is empty", ns_,
          s_.pool);
    last_ = found;
    reported_once_ = true;
    std::vector<pool::EndpointConfig> eps = EndpointsAt(found, s_.engine, s_.metrics_port);
    spdlog::debug("discovery kubernetes: {} endpoint(s) from {} pod(s)", eps.size(), pods_.size());
    sink_->SetEndpoints(eps);
    cv_.notify_all();
  }

  // Waits `seconds` or until stopped (or `wake` says so); returns false when stopping.
  bool Sleep(double seconds, const std::function<bool()>& wake = nullptr) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, std::chrono::duration<double>(seconds),
                 [&] { return stopping_ || (wake && wake()); });
    return !stopping_;
  }

  bool Stopping() {
    std::lock_guard lock(mu_);
    return stopping_;
  }

  // --- the generic list-and-watch loop ---

  struct Resource {
    std::string what;  // for logs and health: "InferencePool ns/name"
    Conn* conn;
    std::function<bool(std::string* path, std::string* query, uint64_t* gen)> target;
    std::function<bool(uint64_t gen)> current;  // false: the target changed, list again
    // Returns "" or an error (then the list counts as failed).
    std::function<std::string(const ApiClient::Result& r, uint64_t gen)> on_list;
    std::function<std::string(const k8s::WatchEvent& e, uint64_t gen)> on_event;
    // When set, a 404 on the list means the API is not installed: this is called instead of
    // failing (under mu_), and the list is tried again after backoff_max.
    std::function<void()> on_absent;
  };

  // The request for `gen` is moot: stopping, or its target changed (and it was kicked).
  bool Moot(const Resource& res, uint64_t gen) {
    std::lock_guard lock(mu_);
    return stopping_ || !res.current(gen);
  }

  void ListWatch(Resource res) {
    std::atomic<uint64_t> active_gen{0};
    ApiClient client(api_, *res.conn, [&] {
      std::lock_guard lock(mu_);
      return stopping_ || !res.current(active_gen.load());
    });
    double backoff = 0.25;
    auto fail = [&](const std::string& err) {
      {
        std::lock_guard lock(mu_);
        SetErrorLocked(res.what, err);
      }
      const bool go_on = Sleep(backoff);
      backoff = std::min(backoff * 2, s_.backoff_max_s);
      return go_on;
    };
    while (!Stopping()) {
      std::string path, query;
      uint64_t gen = 0;
      {
        std::unique_lock lock(mu_);
        if (!res.target(&path, &query, &gen)) {  // not ready (the pod loop waits for the pool)
          cv_.wait(lock, [&] { return stopping_ || res.target(&path, &query, &gen); });
          if (stopping_) return;
        }
      }
      active_gen = gen;
      ApiClient::Result r = client.Get(path + (query.empty() ? "" : "?" + query), gen);
      spdlog::debug("discovery kubernetes: list {}: status {} {}", res.what, r.status, r.error);
      if (r.stopped || Moot(res, gen)) continue;  // stopping, or the target changed
      if (r.status == 404 && res.on_absent) {
        {
          std::lock_guard lock(mu_);
          if (!absent_logged_)
            spdlog::info(
                "discovery kubernetes: {}: not served by this API server (CRD not "
                "installed?); looking again every {} s",
                res.what, s_.backoff_max_s);
          absent_logged_ = true;
          res.on_absent();
          SetErrorLocked(res.what, "");
        }
        if (!Sleep(s_.backoff_max_s)) return;
        continue;
      }
      if (!r.error.empty() || r.status != 200) {
        if (!fail("list: " + ErrorText(r))) return;
        continue;
      }
      std::string rv;
      {
        json j = json::parse(r.body, nullptr, false);
        if (j.is_object()) rv = StrAt(j, "/metadata/resourceVersion");
      }
      std::string err;
      {
        std::lock_guard lock(mu_);
        if (!res.current(gen)) continue;
        err = res.on_list(r, gen);
        if (err.empty()) SetErrorLocked(res.what, "");
      }
      if (!err.empty()) {
        if (!fail(err)) return;
        continue;
      }
      if (rv.empty()) {  // cannot watch without a version: list again later
        if (!fail("list without metadata.resourceVersion")) return;
        continue;
      }
      // Watch from `rv` until the target changes, a 410 asks for a new list, or we stop.
      bool relist = false;
      while (!relist && !Stopping()) {
        {
          std::lock_guard lock(mu_);
          if (!res.current(gen)) break;
        }
        const std::string q =
            (query.empty() ? "" : query + "&") +
            "watch=1&allowWatchBookmarks=true&resourceVersion=" + Escape(rv) +
            "&timeoutSeconds=" + std::to_string(static_cast<long>(s_.watch_timeout_s));
        size_t events = 0;
        std::string event_error;
        const auto started = std::chrono::steady_clock::now();
        ApiClient::Result w = client.Watch(
            path + "?" + q, gen, static_cast<long>(s_.watch_timeout_s) + 30,
            [&] {
              std::lock_guard lock(mu_);
              SetErrorLocked(res.what, "");  // reachable again
            },
            [&](std::string_view line) {
              k8s::WatchEvent e;
              if (auto perr = k8s::ParseWatchEvent(line, &e); !perr.empty()) {
                event_error = "watch: " + perr;
                return false;
              }
              ++events;
              if (e.type == k8s::EventType::kError) {
                if (e.error_code == 410) {
                  spdlog::info(
                      "discovery kubernetes: {}: resourceVersion {} is gone ({}); listing "
                      "again",
                      res.what, rv, e.error_message);
                  relist = true;
                } else {
                  event_error =
                      "watch: error event " + std::to_string(e.error_code) + ": " + e.error_message;
                }
                return false;
              }
              if (!e.resource_version.empty()) rv = e.resource_version;
              if (e.type == k8s::EventType::kBookmark) return true;
              std::lock_guard lock(mu_);
              if (!res.current(gen)) return false;
              if (auto herr = res.on_event(e, gen); !herr.empty()) {
                SetErrorLocked(res.what, herr);
              } else {
                SetErrorLocked(res.what, "");
              }
              return true;
            });
        spdlog::debug("discovery kubernetes: watch {} from {} ended: status {}, {} event(s) {}",
                      res.what, rv, w.status, events, w.error);
        if (relist) break;
        if (w.status == 410) {
          spdlog::info("discovery kubernetes: {}: resourceVersion {} is gone; listing again",
                       res.what, rv);
          relist = true;
          break;
        }
        if ((w.stopped && event_error.empty()) || Moot(res, gen)) continue;  // re-checked above
        if (w.status != 200 || !event_error.empty()) {
          // Not a watch at all (down, refused, 5xx): unhealthy; back off, then watch again.
          if (!fail(event_error.empty() ? "watch: " + ErrorText(w) : event_error)) return;
          if (!event_error.empty()) relist = true;  // a broken stream: start from a fresh list
          continue;
        }
        {
          std::lock_guard lock(mu_);
          SetErrorLocked(res.what, "");
        }
        // The watch ended (timeoutSeconds, idle, or the server closed it): watch again at once
        // when it was useful, after the backoff when it ended right away.
        const double lasted =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        if (events > 0 || lasted > 5) {
          backoff = 0.25;
        } else {
          if (!Sleep(backoff)) return;
          backoff = std::min(backoff * 2, s_.backoff_max_s);
        }
      }
    }
  }

  // --- the three resources ---

  void PoolLoop() {
    const std::string what = "InferencePool " + ns_ + "/" + s_.pool;
    Resource r;
    r.what = what;
    r.conn = &pool_conn_;
    r.target = [this](std::string* path, std::string* query, uint64_t* gen) {
      *path = "/apis/inference.networking.k8s.io/v1/namespaces/" + Escape(ns_) + "/inferencepools";
      *query = "fieldSelector=" + Escape("metadata.name=" + s_.pool);
      *gen = 1;
      return true;
    };
    r.current = [](uint64_t) { return true; };
    r.on_list = [this, what](const ApiClient::Result& res, uint64_t) -> std::string {
      json j = json::parse(res.body, nullptr, false);
      if (!j.is_object() || !j.contains("items") || !j["items"].is_array())
        return "list: not an InferencePoolList";
      for (const auto& item : j["items"]) {
        if (StrAt(item, "/metadata/name") == s_.pool) return ApplyPoolLocked(item);
      }
      return "not found (is the name or namespace wrong, or the InferencePool CRD missing?)";
    };
    r.on_event = [this](const k8s::WatchEvent& e, uint64_t) -> std::string {
      if (StrAt(e.object, "/metadata/name") != s_.pool) return {};
      if (e.type == k8s::EventType::kDeleted) return "deleted; keeping its last members";
      return ApplyPoolLocked(e.object);
    };
    ListWatch(std::move(r));
  }

  std::string ApplyPoolLocked(const json& pool) {
    k8s::PoolSpec spec;
    if (auto err = k8s::ParsePoolSpec(pool, &spec); !err.empty()) return err;
    if (pool_known_ && spec == spec_) return {};
    const bool selector_changed = !pool_known_ || spec.match_labels != spec_.match_labels;
    spdlog::info("discovery kubernetes: InferencePool {}/{}: selector {{{}}}, target ports {}", ns_,
                 s_.pool, k8s::LabelSelector(spec.match_labels), [&] {
                   std::string p;
                   for (auto port : spec.target_ports)
                     p += (p.empty() ? "" : ",") + std::to_string(port);
                   return p;
                 }());
    spec_ = std::move(spec);
    pool_known_ = true;
    if (selector_changed) {
      ++pod_gen_;
      pods_synced_ = false;
      pod_conn_.KickBefore(pod_gen_);
      cv_.notify_all();
    } else {
      ReportLocked();
    }
    return {};
  }

  void PodLoop() {
    Resource r;
    r.what = "pods of InferencePool " + ns_ + "/" + s_.pool;
    r.conn = &pod_conn_;
    r.target = [this](std::string* path, std::string* query, uint64_t* gen) {
      if (!pool_known_) return false;
      *path = "/api/v1/namespaces/" + Escape(ns_) + "/pods";
      const std::string sel = k8s::LabelSelector(spec_.match_labels);
      *query = sel.empty() ? "" : "labelSelector=" + Escape(sel);
      *gen = pod_gen_;
      return true;
    };
    r.current = [this](uint64_t gen) { return gen == pod_gen_; };
    r.on_list = [this](const ApiClient::Result& res, uint64_t) -> std::string {
      json j = json::parse(res.body, nullptr, false);
      if (!j.is_object() || !j.contains("items") || !j["items"].is_array())
        return "list: not a PodList";
      pods_.clear();
      for (const auto& item : j["items"]) {
        k8s::PodState p = k8s::ParsePod(item);
        if (!p.name.empty()) pods_[p.name] = std::move(p);
      }
      pods_synced_ = true;
      ReportLocked();
      return {};
    };
    r.on_event = [this](const k8s::WatchEvent& e, uint64_t) -> std::string {
      k8s::PodState p = k8s::ParsePod(e.object);
      if (p.name.empty()) return {};
      if (e.type == k8s::EventType::kDeleted) {
        pods_.erase(p.name);
      } else {
        pods_[p.name] = std::move(p);
      }
      ReportLocked();
      return {};
    };
    ListWatch(std::move(r));
  }

  void ObjectiveLoop() {
    const std::string what = "InferenceObjectives (" + s_.objectives_api + ")";
    Resource r;
    r.what = what;
    r.conn = &obj_conn_;
    r.target = [this](std::string* path, std::string* query, uint64_t* gen) {
      *path = "/apis/" + s_.objectives_api + "/namespaces/" + Escape(ns_) + "/inferenceobjectives";
      *gen = 1;
      return true;
    };
    r.current = [](uint64_t) { return true; };
    r.on_list = [this](const ApiClient::Result& res, uint64_t) -> std::string {
      json j = json::parse(res.body, nullptr, false);
      if (!j.is_object() || !j.contains("items") || !j["items"].is_array())
        return "list: not an InferenceObjectiveList";
      objectives_.clear();
      for (const auto& item : j["items"]) {
        const std::string name = StrAt(item, "/metadata/name");
        if (auto o = k8s::ObjectiveFor(item, s_.pool)) objectives_[name] = o->second;
      }
      ReportObjectivesLocked();
      return {};
    };
    r.on_absent = [this] {
      objectives_.clear();
      ReportObjectivesLocked();
    };
    r.on_event = [this](const k8s::WatchEvent& e, uint64_t) -> std::string {
      const std::string name = StrAt(e.object, "/metadata/name");
      auto o = k8s::ObjectiveFor(e.object, s_.pool);
      if (e.type == k8s::EventType::kDeleted || !o) {
        objectives_.erase(name);  // deleted, or now names another pool
      } else {
        objectives_[name] = o->second;
      }
      ReportObjectivesLocked();
      return {};
    };
    ListWatch(std::move(r));
  }

  void ReportObjectivesLocked() {
    if (objectives_reported_ && objectives_ == last_objectives_) return;
    objectives_reported_ = true;
    last_objectives_ = objectives_;
    spdlog::info("discovery kubernetes: {} InferenceObjective(s) for pool {}", objectives_.size(),
                 s_.pool);
    sink_->SetObjectives(objectives_);
  }

  const std::string type_ = "kubernetes";
  const KubeSettings s_;
  k8s::ApiConfig api_;  // set by Start() before the threads exist; then read-only
  std::string ns_;
  Sink* sink_ = nullptr;
  std::vector<std::thread> threads_;
  Conn pool_conn_, pod_conn_, obj_conn_;

  std::mutex mu_;  // guards everything below; sink calls are made under it (one at a time)
  std::condition_variable cv_;
  bool stopping_ = false;
  bool pool_known_ = false;
  k8s::PoolSpec spec_;
  uint64_t pod_gen_ = 1;  // bumped when the selector changes: the pod loop lists again
  bool pods_synced_ = false;
  std::map<std::string, k8s::PodState> pods_;
  std::vector<std::pair<std::string, uint16_t>> last_;
  bool reported_once_ = false;
  std::map<std::string, std::string> errors_;  // what → error, for every failing loop
  bool health_reported_ = false, healthy_ = true;
  std::string reason_;
  std::map<std::string, int> objectives_, last_objectives_;
  bool objectives_reported_ = false;
  bool absent_logged_ = false;
};

}  // namespace

std::unique_ptr<Source> MakeKubernetesSource(const SourceSpec& spec, std::string* error) {
  Params p(spec);
  KubeSettings s;
  s.pool = p.String("pool");
  s.ns = p.String("namespace");
  s.objectives_api = p.String("objectives_api", s.objectives_api);
  s.kubeconfig = p.String("kubeconfig");
  s.context = p.String("context");
  s.api = p.String("api");
  s.engine = p.String("engine");
  long metrics_port = 0;
  if (!p.Bool("objectives", true, &s.objectives, error)) return nullptr;
  if (!p.Int("metrics_port", 0, 0, 65535, &metrics_port, error)) return nullptr;
  if (!p.Seconds("watch_timeout", 240, &s.watch_timeout_s, error)) return nullptr;
  if (!p.Seconds("backoff_max", 10, &s.backoff_max_s, error)) return nullptr;
  s.metrics_port = static_cast<uint16_t>(metrics_port);
  if (auto err =
          p.Leftover({"pool", "namespace", "objectives", "objectives_api", "kubeconfig", "context",
                      "api", "engine", "metrics_port", "watch_timeout", "backoff_max"});
      !err.empty()) {
    *error = err;
    return nullptr;
  }
  if (s.pool.empty()) {
    *error = "needs pool=NAME (an InferencePool), e.g. --discovery kubernetes:vllm-pool";
    return nullptr;
  }
  if (s.watch_timeout_s < 1) {
    *error = "watch_timeout: must be at least 1s";
    return nullptr;
  }
  if (const size_t slash = s.objectives_api.find('/');
      slash == std::string::npos || slash == 0 || slash + 1 == s.objectives_api.size()) {
    *error = "objectives_api: '" + s.objectives_api + "' must be GROUP/VERSION";
    return nullptr;
  }
  if (!s.api.empty() && s.api.rfind("http://", 0) != 0 && s.api.rfind("https://", 0) != 0) {
    *error = "api: '" + s.api + "' must be an http:// or https:// URL";
    return nullptr;
  }
  return std::make_unique<KubernetesSource>(std::move(s));
}

}  // namespace tidegate::discovery
