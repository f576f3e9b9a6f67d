// discovery/dns_source.cc — the A or SRV records of a name (a headless Service), re-resolved.
//
// Every `interval` (default 5 s) the source asks DNS for the name's A records (one endpoint per
// address, on `port`) or SRV records (one per target and port; targets resolved through the
// additional section or their own A query). It uses the system's resolver settings, or only
// `server` (ip[:port]) when given. An answer that the name does not exist or has no such records
// is an answer: the set is empty. A timeout or a server failure is not: the last set is kept and
// the source reports itself unhealthy. Queries block, on the source's own thread.
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <resolv.h>
#include <spdlog/spdlog.h>
#include <strings.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstring>

#include "discovery/builtin.h"
#include "discovery/endpoint_list.h"
#include "discovery/poll_loop.h"

namespace tidegate::discovery {
namespace {

struct DnsSettings {
  std::string name;
  uint16_t port = 0;
  bool srv = false;
  double interval_s = 5;
  std::string server_ip;  // "" = the system's resolvers
  uint16_t server_port = 53;
  std::string engine;
  uint16_t metrics_port = 0;
};

// One query's outcome.
struct Answer {
  bool ok = false;  // false: no usable answer (timeout, SERVFAIL, ...): keep the last set
  std::string error;
  std::vector<std::pair<std::string, uint16_t>> targets;  // (host, port) for SRV
  std::vector<std::string> addresses;                     // A records
  std::vector<std::pair<std::string, std::string>> glue;  // SRV additional: (name, address)
};

std::string FormatSeconds(double s) {
  char buf[32];
  if (s < 1) {
    std::snprintf(buf, sizeof buf, "%.0f ms", s * 1000);
  } else {
    std::snprintf(buf, sizeof buf, "%g s", s);
  }
  return buf;
}

class Resolver {
 public:
  explicit Resolver(const DnsSettings& s) {
    std::memset(&st_, 0, sizeof st_);
    if (res_ninit(&st_) != 0) {
      error_ = "cannot initialise the resolver";
      return;
    }
    st_.retrans = 2;
    st_.retry = 2;
    if (!s.server_ip.empty()) {
      st_.nscount = 1;
      st_.nsaddr_list[0].sin_family = AF_INET;
      st_.nsaddr_list[0].sin_port = htons(s.server_port);
      inet_pton(AF_INET, s.server_ip.c_str(), &st_.nsaddr_list[0].sin_addr);
    }
    ok_ = true;
  }
  ~Resolver() {
    if (ok_) res_nclose(&st_);
  }

  Answer Query(const std::string& name, int type) {
    Answer a;
    if (!ok_) {
      a.error = error_;
      return a;
    }
    unsigned char buf[16384];
    const int n = res_nquery(&st_, name.c_str(), ns_c_in, type, buf, sizeof buf);
    if (n < 0) {
      switch (st_.res_h_errno) {
        case HOST_NOT_FOUND:  // NXDOMAIN
        case NO_DATA:         // the name exists without such records
          a.ok = true;
          return a;
        case TRY_AGAIN:
          a.error = "no answer for " + name + " (timeout or server failure)";
          return a;
        default:
          a.error = "lookup of " + name + " failed (" + hstrerror(st_.res_h_errno) + ")";
          return a;
      }
    }
    ns_msg msg;
    if (ns_initparse(buf, n, &msg) != 0) {
      a.error = "malformed DNS answer for " + name;
      return a;
    }
    a.ok = true;
    for (int i = 0; i < ns_msg_count(msg, ns_s_an); ++i) {
      ns_rr rr;
      if (ns_parserr(&msg, ns_s_an, i, &rr) != 0) continue;
      if (ns_rr_type(rr) == ns_t_a && ns_rr_rdlen(rr) == 4) {
        char ip[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, ns_rr_rdata(rr), ip, sizeof ip);
        a.addresses.emplace_back(ip);
      } else if (ns_rr_type(rr) == ns_t_srv && ns_rr_rdlen(rr) > 6) {
        const unsigned char* p = ns_rr_rdata(rr);
        const uint16_t port = static_cast<uint16_t>((p[4] << 8) | p[5]);
        char target[NS_MAXDNAME];
        if (dn_expand(ns_msg_base(msg), ns_msg_end(msg), p + 6, target, sizeof target) < 0)
          continue;
        a.targets.emplace_back(target, port);
      }
    }
    for (int i = 0; i < ns_msg_count(msg, ns_s_ar); ++i) {
      ns_rr rr;
      if (ns_parserr(&msg, ns_s_ar, i, &rr) != 0) continue;
      if (ns_rr_type(rr) == ns_t_a && ns_rr_rdlen(rr) == 4) {
        char ip[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, ns_rr_rdata(rr), ip, sizeof ip);
        a.glue.emplace_back(ns_rr_name(rr), ip);
      }
    }
    return a;
  }

 private:
  struct __res_state st_;
  bool ok_ = false;
  std::string error_;
};

class DnsSource final : public Source {
 public:
  explicit DnsSource(DnsSettings s) : s_(std::move(s)) {}
  ~DnsSource() override { Stop(); }

  const std::string& Type() const override { return type_; }
  std::string Describe() const override {
    return std::string("dns ") + (s_.srv ? "SRV " : "A ") + s_.name +
           (s_.srv ? "" : " port " + std::to_string(s_.port)) + " every " +
           FormatSeconds(s_.interval_s) +
           (s_.server_ip.empty() ? ""
                                 : " via " + s_.server_ip + ":" + std::to_string(s_.server_port));
  }

  std::string Start(Sink* sink) override {
    sink_ = sink;
    Resolve();  // the first answer (or failure) before serving
    loop_.Start(s_.interval_s, [this] { Resolve(); });
    return {};
  }

  void Stop() override { loop_.Stop(); }
  void Refresh() override { loop_.Refresh(); }

 private:
  void Resolve() {
    Resolver r(s_);
    std::vector<std::pair<std::string, uint16_t>> found;  // (ip, port)
    std::string error;
    if (!s_.srv) {
      Answer a = r.Query(s_.name, ns_t_a);
      if (!a.ok) error = a.error;
      for (const auto& ip : a.addresses) found.emplace_back(ip, s_.port);
    } else {
      Answer a = r.Query(s_.name, ns_t_srv);
      if (!a.ok) error = a.error;
      for (const auto& [target, port] : a.targets) {
        bool glued = false;
        for (const auto& [name, ip] : a.glue) {
          if (strcasecmp(name.c_str(), target.c_str()) != 0) continue;
          found.emplace_back(ip, port);
          glued = true;
        }
        if (glued) continue;
        Answer t = r.Query(target, ns_t_a);
        if (!t.ok) {
          error = t.error;
          break;
        }
        for (const auto& ip : t.addresses) found.emplace_back(ip, port);
      }
    }
    if (!error.empty()) {
      if (error != last_error_)
        spdlog::warn("discovery dns: {}; keeping the last {} endpoint(s)", error, reported_);
      last_error_ = error;
      sink_->SetHealthy(false, error);
      return;
    }
    if (!last_error_.empty()) spdlog::info("discovery dns: {} answers again", s_.name);
    last_error_.clear();
    std::sort(found.begin(), found.end());
    found.erase(std::unique(found.begin(), found.end()), found.end());
    if (found.empty() && reported_ > 0)
      spdlog::warn("discovery dns: {} has no {} records now: the pool is empty", s_.name,
                   s_.srv ? "SRV" : "A");
    std::vector<pool::EndpointConfig> eps = EndpointsAt(found, s_.engine, s_.metrics_port);
    reported_ = eps.size();
    sink_->SetEndpoints(eps);
    sink_->SetHealthy(true, "");
  }

  const std::string type_ = "dns";
  const DnsSettings s_;
  Sink* sink_ = nullptr;
  std::string last_error_;  // the resolving thread's
  size_t reported_ = 0;
  PollLoop loop_;  // last: stopped before the state above goes
};

bool ParsePort(std::string_view text, uint16_t* out) {
  unsigned v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || p != text.data() + text.size() || v == 0 || v > 65535) return false;
  *out = static_cast<uint16_t>(v);
  return true;
}

}  // namespace

std::unique_ptr<Source> MakeDnsSource(const SourceSpec& spec, std::string* error) {
  Params p(spec);
  DnsSettings s;
  s.name = p.String("name");
  const std::string port = p.String("port");
  const std::string type = p.String("type");
  const std::string server = p.String("server");
  s.engine = p.String("engine");
  long metrics_port = 0;
  if (!p.Seconds("interval", 5, &s.interval_s, error)) return nullptr;
  if (!p.Int("metrics_port", 0, 0, 65535, &metrics_port, error)) return nullptr;
  s.metrics_port = static_cast<uint16_t>(metrics_port);
  if (auto err =
          p.Leftover({"name", "port", "type", "interval", "server", "engine", "metrics_port"});
      !err.empty()) {
    *error = err;
    return nullptr;
  }
  // "name:port" as the main argument.
  if (const size_t colon = s.name.rfind(':'); colon != std::string::npos && port.empty()) {
    if (!ParsePort(std::string_view(s.name).substr(colon + 1), &s.port)) {
      *error = "name '" + s.name + "': the port after ':' must be 1..65535";
      return nullptr;
    }
    s.name.resize(colon);
  } else if (!port.empty() && !ParsePort(port, &s.port)) {
    *error = "port: '" + port + "' must be 1..65535";
    return nullptr;
  }
  if (s.name.empty()) {
    *error =
        "needs name=HOST (a headless Service's name) and port=PORT, or name=_SERVICE._tcp.HOST "
        "with type=SRV";
    return nullptr;
  }
  if (type.empty()) {
    s.srv = s.name[0] == '_';
  } else if (type == "A" || type == "a") {
    s.srv = false;
  } else if (type == "SRV" || type == "srv") {
    s.srv = true;
  } else {
    *error = "type: '" + type + "' must be A or SRV";
    return nullptr;
  }
  if (!s.srv && s.port == 0) {
    *error = "A records carry no port: give port=PORT (or name=HOST:PORT)";
    return nullptr;
  }
  if (!server.empty()) {
    std::string ip = server;
    if (const size_t colon = server.rfind(':'); colon != std::string::npos) {
      ip = server.substr(0, colon);
      if (!ParsePort(std::string_view(server).substr(colon + 1), &s.server_port)) {
        *error = "server: '" + server + "': the port must be 1..65535";
        return nullptr;
      }
    }
    in_addr probe;
    if (inet_pton(AF_INET, ip.c_str(), &probe) != 1) {
      *error = "server: '" + server + "' must be an IPv4 address[:port]";
      return nullptr;
    }
    s.server_ip = ip;
  }
  return std::make_unique<DnsSource>(std::move(s));
}

}  // namespace tidegate::discovery
