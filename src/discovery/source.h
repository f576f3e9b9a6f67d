// discovery/source.h — where the pool's endpoints come from: a seam with sources registered by
// name (static, file, dns, kubernetes).
//
// Contract: a Source learns the set of model servers from somewhere (a flag, a watched file, DNS
// records, an InferencePool) and reports it to its Sink, always as the whole set it now
// believes in, never as a delta, so a missed report is corrected by the next one. The gateway's
// sink reconciles the pool with it (pool::Pool::Reconcile): new endpoints are probed, scraped
// and routed; removed ones take no new requests, finish what they have in flight and then lose
// their state. A source that cannot read its origin (the API server is down, the file is
// malformed, DNS times out) keeps the last set it reported, says so with SetHealthy(false, why),
// and never reports an empty set because of an error: only an origin that really lists no
// endpoint empties the pool. A source may also report objectives (name → priority; the
// kubernetes source reads InferenceObjective objects), which the sink merges over the
// configured ones.
//
// Lifecycle: Start() begins reporting (the first report may come before Start() returns, from
// the calling thread, so a gateway starts with its pool filled when the origin answers at once);
// later reports come from the source's own thread. Stop() ends that thread and returns once no
// report is in progress; no report follows it. Sources never run on an event loop: they may
// block on files, DNS and HTTP.
//
// Registration: the built-in sources are registered by name, explicitly, by the registry itself
// on first use (discovery/registry.cc lists them: a static initialiser in a static library is
// dropped when nothing references its object file). RegisterSource() adds or replaces one (tests
// use it). MakeSource() builds one from its parameters, rejecting unknown keys and bad values
// with a message naming the key.
// Thread-safety: the registry is safe from any thread after static initialisation. A Source is
// started and stopped from one thread. Sink methods are called from the source's thread (or the
// thread calling Start()), one call at a time per source.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "pool/endpoint.h"

namespace tidegate::discovery {

// A source's settings: key → value, from the `discovery:` section of the gateway's YAML file or
// from --discovery TYPE:key=value,... (see ParseSourceSpec).
struct SourceSpec {
  std::string type;  // "static", "file", "dns", "kubernetes"
  std::map<std::string, std::string> params;
};

class Sink {
 public:
  virtual ~Sink() = default;
  // The whole set of endpoints the source now sees (may be empty only when the origin lists
  // none). Duplicates (same address) are merged by the sink.
  virtual void SetEndpoints(const std::vector<pool::EndpointConfig>& endpoints) = 0;
  // Whether the origin could be read at the last attempt, and why not ("" when healthy).
  virtual void SetHealthy(bool healthy, const std::string& reason) = 0;
  // Objectives found by the source (name → priority; higher wins, negative = sheddable). The
  // whole set each time; an empty map withdraws what the source reported before.
  virtual void SetObjectives(const std::map<std::string, int>& objectives) { (void)objectives; }
};

class Source {
 public:
  virtual ~Source() = default;
  virtual const std::string& Type() const = 0;
  // A one-line description for logs and /v1/pool, such as "file /etc/tidegate/endpoints.yaml".
  virtual std::string Describe() const = 0;
  // Returns "" on success, or why the source cannot start (then nothing runs).
  virtual std::string Start(Sink* sink) = 0;
  virtual void Stop() = 0;
  // Re-read the origin now (SIGHUP). Safe from any thread; a no-op for sources without one.
  virtual void Refresh() {}
};

// Builds a source from `spec.params`; on a bad key or value returns null and sets `*error`.
using SourceFactory =
    std::function<std::unique_ptr<Source>(const SourceSpec& spec, std::string* error)>;

// Registers `type`; a second registration of one name replaces the first. `main_key` is the
// parameter a bare first item of a --discovery spec stands for (see ParseSourceSpec).
bool RegisterSource(const std::string& type, SourceFactory factory, std::string main_key = "");
std::vector<std::string> RegisteredSources();
std::unique_ptr<Source> MakeSource(const SourceSpec& spec, std::string* error);

// Parses "TYPE" or "TYPE:key=value,key=value" (values may not contain ','); the first item may
// be given bare as the source's main parameter, e.g. "file:/etc/eps.yaml" is
// file:path=/etc/eps.yaml and "dns:vllm.default.svc:8000" is dns:name=vllm.default.svc:8000.
// Returns "" or an error (an unknown TYPE is one).
std::string ParseSourceSpec(const std::string& text, SourceSpec* out);

// Helpers for factories: take a key out of `params` (so that what remains is unknown keys).
class Params {
 public:
  explicit Params(const SourceSpec& spec) : type_(spec.type), left_(spec.params) {}
  std::string String(const std::string& key, const std::string& fallback = "");
  // Durations as "500ms", "5s", "2m" or plain seconds; returns false and sets `*error` when bad.
  bool Seconds(const std::string& key, double fallback, double* out, std::string* error);
  bool Int(const std::string& key, long fallback, long min, long max, long* out,
           std::string* error);
  bool Bool(const std::string& key, bool fallback, bool* out, std::string* error);
  // "" when every key was taken, else "unknown key 'x' for discovery source 'T' (known: ...)".
  std::string Leftover(const std::vector<std::string>& known) const;

 private:
  std::string type_;
  std::map<std::string, std::string> left_;
};

}  // namespace tidegate::discovery
