// sched/framework.h — the plugin scheduling framework: filters → weighted scorers → picker.
//
// Contract: a decision starts from every available endpoint of the pool (pool::Endpoint::
// Available) as a Candidate carrying a lock-free copy of its load (pool::EndpointLoad). Filters
// run in profile order and remove candidates; a filter that removes the last one gives the pick
// its EmptyReason. With RequestInfo::require_room, candidates without room (the saturation
// detector's HasRoom, or RequestInfo::room_override) are removed last (EmptyReason::kNoRoom). Each
// scorer then writes one score per remaining candidate; the framework clamps it to 0..1 (NaN → 0),
// multiplies it by the scorer's weight and sums. The picker takes the maximum total with a
// uniformly random tie-break and repeats for the ordered fallback list (PickResult, best first).
// Feedback hooks (see sched/picker.h): every plugin's OnSent() runs for the endpoint the request
// is sent to — the first choice at the pick, a fallback when the caller reports one — and
// OnNotServed() for an endpoint that gave no response; OnOutcome() once the request finished;
// OnEndpointGone() when an endpoint left the pool (its per-endpoint state is dropped).
// Plugins are created by type name through a PluginRegistry (factory + Params); a Profile is an
// ordered list of filters and (scorer, weight) pairs. MakeProfilePicker() turns a Profile into a
// sched::Picker, so the data plane sees one interface for every policy.
// Thread-safety: Pick() and plugin Filter/Score/feedback calls run concurrently from every event
// loop; plugins keep only atomic, mutex-guarded or thread-local mutable state. Per-decision
// scratch lives in thread-local storage, so a decision does not allocate once warmed up.
// PluginRegistry::Register is not thread-safe: register before serving.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "pool/endpoint.h"
#include "sched/picker.h"

namespace tidegate::sched {

// One endpoint under consideration: its load (scraped snapshot, in-flight, routed and completed
// since the scrape) as read once at the start of the decision.
struct Candidate : pool::EndpointLoad {
  uint32_t index = 0;  // pool index
  const pool::Endpoint* endpoint = nullptr;
  bool stale = true;
};

// State of one decision (or one feedback call), shared by its plugins.
struct SchedContext {
  const RequestInfo* req = nullptr;
  const pool::Pool* pool = nullptr;
  Nanos now{0};
  const pool::SaturationDetector* detector = nullptr;
  bool blind = false;  // no candidate had fresh metrics
  // The share of the prompt cached on each candidate (same order), as the prefix-cache-scorer
  // found it during this decision; empty when no prefix scorer ran (yet).
  std::vector<double> prefix_match;

  // Chained hashes of the prompt's leading full blocks of `block_chars` characters, seeded with
  // the model name; computed on first use and reused by every plugin of the decision.
  std::span<const uint64_t> PromptBlockHashes(size_t block_chars, size_t max_blocks);
  // The prompt's token ids, from the process's prompt tokenizer (SetPromptTokenizer; by default
  // tokenizer/standin.h's stand-in ids of the prompt text); computed once per request.
  std::span<const uint32_t> PromptTokens();
  // KvBlockIndex::ChainKeys of those tokens (seeded with the request's adapter), once per request
  // and block size.
  std::span<const uint64_t> PromptTokenKeys(size_t block_size, size_t max_blocks);
  // The prompt's length in tokens: exact with a prompt tokenizer (the model's), else estimated
  // at 4 characters a token (without computing ids). At least 1.
  double PromptTokenCount();
  // The same without tokenizing: exact when a prompt tokenizer has already run for this
  // request, else the estimate. For bookkeeping that should not cost a tokenization.
  double PromptTokenCountIfKnown() const;

  // Starts a new decision; the block hashes are kept when `r` is the request they were
  // computed for (same non-zero id), so a feedback call right after the pick does not rehash.
  void Reset(const RequestInfo& r, const pool::Pool& p, Nanos t) {
    req = &r;
    pool = &p;
    now = t;
    prefix_match.clear();
    if (r.id == 0 || r.id != hashed_id_) {
      hashed_block_chars_ = 0;
      block_hashes_.clear();
      tokens_ready_ = false;
      keyed_block_size_ = 0;
    }
    hashed_id_ = r.id;
  }

 private:
  std::vector<uint64_t> block_hashes_;
  std::vector<uint32_t> tokens_;
  std::vector<uint64_t> token_keys_;
  bool tokens_ready_ = false;
  size_t keyed_block_size_ = 0, keyed_max_blocks_ = 0;
  size_t hashed_block_chars_ = 0;
  size_t hashed_max_blocks_ = 0;
  uint64_t hashed_id_ = 0;
};

// Hashing used by the prefix index (exposed for tests and benchmarks).
uint64_t HashBytes64(std::string_view bytes, uint64_t seed);
// Appends the chained hashes of the leading full `block_chars` blocks of `prompt` (at most
// `max_blocks`) to *out, seeded with HashBytes64(model).
void ChainedBlockHashes(std::string_view model, std::string_view prompt, size_t block_chars,
                        size_t max_blocks, std::vector<uint64_t>* out);

// How the gateway turns a request into the engine's token ids (the model's tokenizer, when the
// gateway has one). Called concurrently from every event loop; must append to *out.
using PromptTokenizer = std::function<void(const RequestInfo&, std::vector<uint32_t>*)>;
// Sets it for the process (before serving); an empty function restores the stand-in.
void SetPromptTokenizer(PromptTokenizer tokenizer);
bool HasPromptTokenizer();

// Plugin parameters: the scalar `parameters:` of a config entry, as text.
class Params {
 public:
  Params() = default;
  explicit Params(std::map<std::string, std::string> values) : values_(std::move(values)) {}
  void Set(std::string key, std::string value) { values_[std::move(key)] = std::move(value); }
  bool Has(std::string_view key) const { return values_.find(std::string(key)) != values_.end(); }
  const std::map<std::string, std::string>& values() const { return values_; }
  // Typed getters: leave *out at the default when absent; return an error message for a value
  // that does not parse (or is outside [min, max]).
  std::string GetDouble(std::string_view key, double* out, double min = -1e300,
                        double max = 1e300) const;
  std::string GetInt(std::string_view key, int64_t* out, int64_t min = INT64_MIN,
                     int64_t max = INT64_MAX) const;
  std::string GetBool(std::string_view key, bool* out) const;

 private:
  std::map<std::string, std::string> values_;
};

enum class PluginKind { kFilter, kScorer, kPicker, kProfileHandler };

struct Profile;

class Plugin {
 public:
  virtual ~Plugin() = default;
  virtual PluginKind kind() const = 0;
  const std::string& type() const { return type_; }
  const std::string& name() const { return name_; }
  // The request is sent to `endpoint` (the pick's first choice, or a fallback).
  virtual void OnSent(SchedContext& ctx, uint32_t endpoint) {}
  // The request got no response from `endpoint` (it goes elsewhere, or fails).
  virtual void OnNotServed(SchedContext& ctx, uint32_t endpoint) {}
  // The request finished (see sched/picker.h Outcome).
  virtual void OnOutcome(SchedContext& ctx, const Outcome& outcome) {}
  // The endpoint left the pool and drained (pool::Pool::Change::gone): drop what the plugin keeps
  // about it, since its slot may later hold another server. Called off the data plane.
  virtual void OnEndpointGone(uint32_t endpoint) {}
  // Called once the profile holding the plugin is complete (BindProfile), so a plugin can find
  // the others it works with (e.g. slo-admission-filter the profile's latency-scorer). Returns
  // an error message when the profile lacks what the plugin needs.
  virtual std::string Bind(const Profile& profile) { return {}; }

 private:
  friend class PluginRegistry;
  std::string type_, name_;
};

class Filter : public Plugin {
 public:
  PluginKind kind() const final { return PluginKind::kFilter; }
  // Removes candidates from *cands (keeping the order of the rest).
  virtual void Apply(SchedContext& ctx, std::vector<Candidate>* cands) = 0;
  // Why a pick is empty when this filter removed the last candidate.
  virtual EmptyReason EmptiedReason() const { return EmptyReason::kNoEndpoints; }
};

class Scorer : public Plugin {
 public:
  PluginKind kind() const final { return PluginKind::kScorer; }
  // Writes one score (0..1, higher is better) per candidate into out (same size, zeroed).
  virtual void Score(SchedContext& ctx, std::span<const Candidate> cands,
                     std::span<double> out) = 0;
};

// Plugins that carry no behaviour here but are accepted so GIE configs load unchanged
// ("max-score-picker", "single-profile-handler").
class MarkerPlugin final : public Plugin {
 public:
  explicit MarkerPlugin(PluginKind k) : kind_(k) {}
  PluginKind kind() const override { return kind_; }

 private:
  PluginKind kind_;
};

class PluginRegistry {
 public:
  using Factory = std::function<std::string(const Params&, std::unique_ptr<Plugin>*)>;
  void Register(std::string type, Factory factory);
  // Creates a plugin; an unknown type or bad parameters give an error message.
  std::string Create(std::string_view type, std::string_view name, const Params& params,
                     std::unique_ptr<Plugin>* out) const;
  std::vector<std::string> Types() const;
  // The registry holding every built-in plugin.
  static PluginRegistry& Default();

 private:
  std::map<std::string, Factory, std::less<>> factories_;
};

struct WeightedScorer {
  std::shared_ptr<Scorer> scorer;
  double weight = 1;
};

// Saturation settings a scheduler config names (GIE's `saturationDetector`); unset = not named.
struct SaturationOverrides {
  std::optional<double> queue_threshold, kv_threshold;
  std::optional<Nanos> stale_after;
  bool any() const { return queue_threshold || kv_threshold || stale_after; }
  // Applies the named settings to *cfg.
  void ApplyTo(pool::SaturationConfig* cfg) const;
};

struct Profile {
  std::string name;
  std::vector<std::shared_ptr<Filter>> filters;
  std::vector<WeightedScorer> scorers;
  SaturationOverrides saturation;
  // The detector shared with the caller; when null, MakeProfilePicker() makes one from the
  // default settings with `saturation` applied.
  std::shared_ptr<const pool::SaturationDetector> detector;
};

// Runs every plugin's Bind() on the finished profile; the first error, naming the plugin.
// BuildProfile() and the scheduler config call it; a hand-built profile must too.
std::string BindProfile(const Profile& profile);

// A Picker running `profile`; name() returns `policy_name`.
std::unique_ptr<Picker> MakeProfilePicker(Profile profile, std::string policy_name);

// Convenience: builds a profile from plugin specs (type, weight, parameters); the kind of each
// plugin decides whether it is a filter or a scorer (weight ignored for filters).
struct PluginSpec {
  std::string type;
  double weight = 0;
  std::map<std::string, std::string> params = {};
};
std::string BuildProfile(std::string name, const std::vector<PluginSpec>& plugins, Profile* out);

}  // namespace tidegate::sched
