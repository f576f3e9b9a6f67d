#include "sched/framework.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <random>

#include "sched/kv_block_index.h"
#include "sched/latency.h"
#include "sched/plugins.h"
#include "tokenizer/standin.h"

namespace tidegate::sched {

// ---------------------------------------------------------------------------------------------
// Hashing: 64-byte blocks are folded as four independent 128-bit multiplies (good instruction-
// level parallelism), then chained with one dependent multiply per block.

namespace {

constexpr uint64_t kP0 = 0xa0761d6478bd642fULL;
constexpr uint64_t kP1 = 0xe7037ed1a0b428dbULL;
constexpr uint64_t kP2 = 0x8ebc6af09c88c6e3ULL;
constexpr uint64_t kP3 = 0x589965cc75374cc3ULL;

inline uint64_t Mum(uint64_t a, uint64_t b) {
  __uint128_t r = static_cast<__uint128_t>(a) * b;
  return static_cast<uint64_t>(r) ^ static_cast<uint64_t>(r >> 64);
}
inline uint64_t Load64(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

// Hash of one 64-byte block, independent of the chain.
inline uint64_t Block64(const char* p) {
  uint64_t a = Mum(Load64(p) ^ kP0, Load64(p + 8) ^ kP1);
  uint64_t b = Mum(Load64(p + 16) ^ kP2, Load64(p + 24) ^ kP3);
  uint64_t c = Mum(Load64(p + 32) ^ kP1, Load64(p + 40) ^ kP0);
  uint64_t d = Mum(Load64(p + 48) ^ kP3, Load64(p + 56) ^ kP2);
  return (a + c) ^ (b + d) * 0x9E3779B97F4A7C15ULL;
}

inline uint64_t Chain(uint64_t prev, uint64_t block) { return Mum(prev ^ kP0, block ^ kP1); }

}  // namespace

uint64_t HashBytes64(std::string_view bytes, uint64_t seed) {
  const char* p = bytes.data();
  size_t n = bytes.size();
  uint64_t h = seed ^ Mum(n ^ kP2, kP3);
  while (n >= 64) {
    h = Chain(h, Block64(p));
    p += 64;
    n -= 64;
  }
  while (n >= 8) {
    h = Mum(h ^ Load64(p) ^ kP1, kP0);
    p += 8;
    n -= 8;
  }
  if (n > 0) {
    uint64_t tail = 0;
    std::memcpy(&tail, p, n);
    h = Mum(h ^ tail ^ kP2, kP3 ^ n);
  }
  return Mum(h ^ kP1, kP2);
}

void ChainedBlockHashes(std::string_view model, std::string_view prompt, size_t block_chars,
                        size_t max_blocks, std::vector<uint64_t>* out) {
  if (block_chars == 0) return;
  size_t blocks = std::min(prompt.size() / block_chars, max_blocks);
  uint64_t h = HashBytes64(model, 0x7469646567617465ULL);  // "tidegate"
  out->reserve(out->size() + blocks);
  const char* p = prompt.data();
  if (block_chars == 64) {
    for (size_t i = 0; i < blocks; ++i, p += 64) {
      h = Chain(h, Block64(p));
      out->push_back(h);
    }
  } else {
    for (size_t i = 0; i < blocks; ++i, p += block_chars) {
      h = Chain(h, HashBytes64(std::string_view(p, block_chars), 0));
      out->push_back(h);
    }
  }
}

std::span<const uint64_t> SchedContext::PromptBlockHashes(size_t block_chars, size_t max_blocks) {
  if (hashed_block_chars_ != block_chars || hashed_max_blocks_ != max_blocks) {
    block_hashes_.clear();
    if (req) ChainedBlockHashes(req->model, req->prompt, block_chars, max_blocks, &block_hashes_);
    hashed_block_chars_ = block_chars;
    hashed_max_blocks_ = max_blocks;
  }
  return block_hashes_;
}

namespace {
PromptTokenizer& GlobalTokenizer() {
  static PromptTokenizer t;
  return t;
}
}  // namespace

void SetPromptTokenizer(PromptTokenizer tokenizer) { GlobalTokenizer() = std::move(tokenizer); }
bool HasPromptTokenizer() { return static_cast<bool>(GlobalTokenizer()); }

double SchedContext::PromptTokenCount() {
  if (!req) return 1;
  if (HasPromptTokenizer()) return std::max<double>(1, static_cast<double>(PromptTokens().size()));
  return EstimateTokens(req->prompt.size());
}

double SchedContext::PromptTokenCountIfKnown() const {
  if (!req) return 1;
  if (tokens_ready_ && HasPromptTokenizer())
    return std::max<double>(1, static_cast<double>(tokens_.size()));
  return EstimateTokens(req->prompt.size());
}

std::span<const uint32_t> SchedContext::PromptTokens() {
  if (!tokens_ready_) {
    tokens_.clear();
    if (req) {
      if (const auto& t = GlobalTokenizer()) {
        t(*req, &tokens_);
      } else {
        tokenizer::StandInTokenIds(req->prompt, &tokens_);
      }
    }
    tokens_ready_ = true;
  }
  return tokens_;
}

std::span<const uint64_t> SchedContext::PromptTokenKeys(size_t block_size, size_t max_blocks) {
  if (keyed_block_size_ != block_size || keyed_max_blocks_ != max_blocks) {
    token_keys_.clear();
    if (req && block_size > 0)
      KvBlockIndex::ChainKeys(KvBlockIndex::RootKey(req->adapter), PromptTokens(), block_size,
                              max_blocks, &token_keys_);
    keyed_block_size_ = block_size;
    keyed_max_blocks_ = max_blocks;
  }
  return token_keys_;
}

// ---------------------------------------------------------------------------------------------
// Params

namespace {
const std::string* Find(const std::map<std::string, std::string>& m, std::string_view key) {
  auto it = m.find(std::string(key));
  return it == m.end() ? nullptr : &it->second;
}
}  // namespace

std::string Params::GetDouble(std::string_view key, double* out, double min, double max) const {
  const std::string* v = Find(values_, key);
  if (!v) return {};
  double d = 0;
  auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), d);
  if (ec != std::errc() || p != v->data() + v->size() || !std::isfinite(d))
    return "parameter " + std::string(key) + ": \"" + *v + "\" is not a number";
  if (d < min || d > max) return "parameter " + std::string(key) + ": " + *v + " is out of range";
  *out = d;
  return {};
}

std::string Params::GetInt(std::string_view key, int64_t* out, int64_t min, int64_t max) const {
  const std::string* v = Find(values_, key);
  if (!v) return {};
  int64_t i = 0;
  auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), i);
  if (ec != std::errc() || p != v->data() + v->size())
    return "parameter " + std::string(key) + ": \"" + *v + "\" is not an integer";
  if (i < min || i > max)
    return "parameter " + std::string(key) + ": " + *v + " is out of range [" +
           std::to_string(min) + ", " + std::to_string(max) + "]";
  *out = i;
  return {};
}

std::string Params::GetBool(std::string_view key, bool* out) const {
  const std::string* v = Find(values_, key);
  if (!v) return {};
  if (*v == "true" || *v == "True" || *v == "1") {
    *out = true;
  } else if (*v == "false" || *v == "False" || *v == "0") {
    *out = false;
  } else {
    return "parameter " + std::string(key) + ": \"" + *v + "\" is not a boolean";
  }
  return {};
}

// ---------------------------------------------------------------------------------------------
// Registry

void PluginRegistry::Register(std::string type, Factory factory) {
  factories_[std::move(type)] = std::move(factory);
}

std::string PluginRegistry::Create(std::string_view type, std::string_view name,
                                   const Params& params, std::unique_ptr<Plugin>* out) const {
  auto it = factories_.find(type);
  if (it == factories_.end()) {
    std::string known;
    for (const auto& [t, f] : factories_) known += (known.empty() ? "" : ", ") + t;
    return "unknown plugin type \"" + std::string(type) + "\" (known: " + known + ")";
  }
  std::unique_ptr<Plugin> p;
  std::string err = it->second(params, &p);
  if (!err.empty()) return std::string(type) + ": " + err;
  if (!p) return std::string(type) + ": factory returned nothing";
  p->type_ = std::string(type);
  p->name_ = name.empty() ? std::string(type) : std::string(name);
  *out = std::move(p);
  return {};
}

std::vector<std::string> PluginRegistry::Types() const {
  std::vector<std::string> v;
  for (const auto& [t, f] : factories_) v.push_back(t);
  return v;
}

PluginRegistry& PluginRegistry::Default() {
  static PluginRegistry* registry = [] {
    auto* r = new PluginRegistry;
    RegisterBuiltinPlugins(r);
    return r;
  }();
  return *registry;
}

std::string BuildProfile(std::string name, const std::vector<PluginSpec>& plugins, Profile* out) {
  Profile p;
  p.name = std::move(name);
  for (const auto& [type, weight, params] : plugins) {
    std::unique_ptr<Plugin> plugin;
    if (auto err = PluginRegistry::Default().Create(type, type, Params(params), &plugin);
        !err.empty())
      return err;
    switch (plugin->kind()) {
      case PluginKind::kFilter:
        p.filters.emplace_back(static_cast<Filter*>(plugin.release()));
        break;
      case PluginKind::kScorer:
        p.scorers.push_back(
            {std::shared_ptr<Scorer>(static_cast<Scorer*>(plugin.release())), weight});
        break;
      default:
        break;
    }
  }
  if (auto err = BindProfile(p); !err.empty()) return err;
  *out = std::move(p);
  return {};
}

std::string BindProfile(const Profile& profile) {
  auto bind = [&](Plugin& plugin) -> std::string {
    std::string err = plugin.Bind(profile);
    return err.empty() ? err : plugin.name() + ": " + err;
  };
  for (const auto& f : profile.filters)
    if (auto err = bind(*f); !err.empty()) return err;
  for (const auto& ws : profile.scorers)
    if (auto err = bind(*ws.scorer); !err.empty()) return err;
  return {};
}

void SaturationOverrides::ApplyTo(pool::SaturationConfig* cfg) const {
  if (queue_threshold) cfg->queue_threshold = *queue_threshold;
  if (kv_threshold) cfg->kv_threshold = *kv_threshold;
  if (stale_after) cfg->stale_after = *stale_after;
}

std::string_view EmptyReasonName(EmptyReason r) {
  switch (r) {
    case EmptyReason::kNone:
      return "none";
    case EmptyReason::kNoEndpoints:
      return "no-endpoints";
    case EmptyReason::kModelNotServed:
      return "model-not-served";
    case EmptyReason::kSaturated:
      return "saturated";
    case EmptyReason::kNoRoom:
      return "no-room";
    case EmptyReason::kSloAtRisk:
      return "slo-at-risk";
  }
  return "?";
}

uint64_t FastRandom() {
  thread_local uint64_t state = [] {
    std::random_device rd;
    return (static_cast<uint64_t>(rd()) << 32) ^ rd();
  }();
  uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// ---------------------------------------------------------------------------------------------
// The profile picker

namespace {

struct Scratch {
  std::vector<Candidate> cands;
  std::vector<double> total, tmp;
  SchedContext ctx;
};

Scratch& ThreadScratch() {
  thread_local Scratch s;
  return s;
}

class ProfilePicker final : public Picker {
 public:
  ProfilePicker(Profile profile, std::string name)
      : profile_(std::move(profile)), name_(std::move(name)) {
    if (!profile_.detector) {
      pool::SaturationConfig cfg;
      profile_.saturation.ApplyTo(&cfg);
      profile_.detector = std::make_shared<const pool::SaturationDetector>(cfg);
    }
    detector_ = profile_.detector.get();
    for (const auto& ws : profile_.scorers)
      if (auto* l = dynamic_cast<const LatencyScorer*>(ws.scorer.get())) latency_ = l;
  }

  std::string_view name() const override { return name_; }
  const LatencyScorer* latency() const override { return latency_; }
  const pool::SaturationDetector& detector() const override { return *detector_; }

  PickResult Pick(const RequestInfo& req, const pool::Pool& pool, Nanos now) override {
    Scratch& s = ThreadScratch();
    PickResult out;
    SchedContext& ctx = s.ctx;
    ctx.Reset(req, pool, now);
    ctx.detector = detector_;
    auto& cands = s.cands;
    cands.clear();
    const size_t n = pool.size();
    bool any_fresh = false;
    for (uint32_t i = 0; i < n; ++i) {
      const pool::Endpoint& ep = pool.at(i);
      if (!ep.Available(now)) continue;
      if (req.subset && !req.subset->Contains(ep)) continue;
      Candidate& c = cands.emplace_back();
      static_cast<pool::EndpointLoad&>(c) = pool::EndpointLoad::Of(ep);
      c.index = i;
      c.endpoint = &ep;
      c.stale = detector_->Stale(c.load, now);
      any_fresh |= !c.stale;
    }
    ctx.blind = !any_fresh;
    if (cands.empty()) {
      out.reason = EmptyReason::kNoEndpoints;
      return out;
    }
    for (const auto& f : profile_.filters) {
      f->Apply(ctx, &cands);
      if (cands.empty()) {
        out.reason = f->EmptiedReason();
        return out;
      }
    }
    if (req.require_room) {
      std::erase_if(cands, [&](const Candidate& c) {
        return !detector_->HasRoom(c, now, ctx.blind) &&
               !(req.room_override && req.room_override->HasRoomFor(c.index, req.priority));
      });
      if (cands.empty()) {
        out.reason = EmptyReason::kNoRoom;
        return out;
      }
    }
    const size_t m = cands.size();

    auto& total = s.total;
    total.assign(m, 0.0);
    for (const auto& ws : profile_.scorers) {
      s.tmp.assign(m, 0.0);
      ws.scorer->Score(ctx, cands, s.tmp);
      for (size_t j = 0; j < m; ++j) {
        double v = s.tmp[j];
        v = v > 0 ? (v < 1 ? v : 1) : 0;  // clamps NaN to 0 as well
        total[j] += ws.weight * v;
      }
    }

    // Ordered fallback list: the best kMaxChoices in one pass, exact ties in a uniformly random
    // order (a random key drawn for each candidate that could enter the list). Repeated maximum
    // selection with reservoir sampling cost a division per tied candidate and pass: 1,000
    // equal endpoints took ~50 µs.
    struct Entry {
      double score;
      uint64_t key;
      size_t j;
    };
    constexpr size_t kK = PickResult::kMaxChoices;
    std::array<Entry, kK> top;
    size_t nt = 0;
    auto better = [](const Entry& a, const Entry& b) {
      return a.score > b.score || (a.score == b.score && a.key > b.key);
    };
    for (size_t j = 0; j < m; ++j) {
      const double v = total[j];
      if (nt == kK && v < top[kK - 1].score) continue;
      Entry e{v, FastRandom(), j};
      if (nt == kK) {
        if (!better(e, top[kK - 1])) continue;
        --nt;  // the last one drops out
      }
      size_t at = nt++;
      while (at > 0 && better(e, top[at - 1])) {
        top[at] = top[at - 1];
        --at;
      }
      top[at] = e;
    }
    const size_t first_j = nt > 0 ? top[0].j : 0;
    for (size_t k = 0; k < nt; ++k) out.Push(cands[top[k].j].index);
    if (!out.empty()) {
      Sent(ctx, out.order[0]);
      // The prefix index's prediction for the endpoint chosen, for its check against the
      // engine's own hit counters (pool::Endpoint::PrefixCheck).
      if (ctx.prefix_match.size() == m) {
        const double tokens = ctx.PromptTokenCountIfKnown();
        pool.at(out.order[0]).NotePrefixPrediction(ctx.prefix_match[first_j] * tokens, tokens);
      }
    }
    return out;
  }

  void OnFallback(const RequestInfo& req, const pool::Pool& pool, uint32_t failed, uint32_t next,
                  Nanos now) override {
    SchedContext& ctx = Context(req, pool, now);
    if (failed < pool.size()) {
      pool.at(failed).UnnoteRouted();
      for (const auto& f : profile_.filters) f->OnNotServed(ctx, failed);
      for (const auto& ws : profile_.scorers) ws.scorer->OnNotServed(ctx, failed);
    }
    if (next < pool.size()) Sent(ctx, next);
  }

  void OnOutcome(const RequestInfo& req, const pool::Pool& pool, const Outcome& outcome,
                 Nanos now) override {
    SchedContext& ctx = Context(req, pool, now);
    if (outcome.endpoint < pool.size()) pool.at(outcome.endpoint).NoteCompleted();
    for (const auto& f : profile_.filters) f->OnOutcome(ctx, outcome);
    for (const auto& ws : profile_.scorers) ws.scorer->OnOutcome(ctx, outcome);
  }

  void OnEndpointGone(uint32_t endpoint) override {
    for (const auto& f : profile_.filters) f->OnEndpointGone(endpoint);
    for (const auto& ws : profile_.scorers) ws.scorer->OnEndpointGone(endpoint);
  }

 private:
  SchedContext& Context(const RequestInfo& req, const pool::Pool& pool, Nanos now) {
    SchedContext& ctx = ThreadScratch().ctx;
    ctx.Reset(req, pool, now);
    ctx.detector = detector_;
    return ctx;
  }

  void Sent(SchedContext& ctx, uint32_t endpoint) {
    ctx.pool->at(endpoint).NoteRouted();
    for (const auto& f : profile_.filters) f->OnSent(ctx, endpoint);
    for (const auto& ws : profile_.scorers) ws.scorer->OnSent(ctx, endpoint);
  }

  Profile profile_;
  std::string name_;
  const pool::SaturationDetector* detector_ = nullptr;
  const LatencyScorer* latency_ = nullptr;
};

}  // namespace

std::unique_ptr<Picker> MakeProfilePicker(Profile profile, std::string policy_name) {
  return std::make_unique<ProfilePicker>(std::move(profile), std::move(policy_name));
}

}  // namespace tidegate::sched
