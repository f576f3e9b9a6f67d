#include "bench/scenario.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <random>
#include <set>
#include <sstream>

#include "common/units.h"
#include "sched/policies.h"
#include "sim/profiles.h"

namespace tidegate::bench {
namespace {

// Errors are thrown inside the parser (as this type) and turned into *error at the top.
struct ScenarioError {
  std::string message;
};

[[noreturn]] void Fail(const std::string& key, const std::string& what) {
  throw ScenarioError{key + ": " + what};
}

void CheckKeys(const YAML::Node& node, const std::string& where,
               const std::set<std::string>& allowed) {
  if (!node.IsMap()) Fail(where.empty() ? "(top level)" : where, "expected a map");
  for (const auto& kv : node) {
    std::string k = kv.first.as<std::string>();
    if (!allowed.count(k)) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      Fail(where.empty() ? k : where + "." + k, "unknown key (expected one of: " + list + ")");
    }
  }
}

std::string Join(const std::string& where, const std::string& key) {
  return where.empty() ? key : where + "." + key;
}

double GetNumber(const YAML::Node& n, const std::string& key, double lo, double hi) {
  if (!n.IsScalar()) Fail(key, "expected a number");
  double v = 0;
  try {
    v = n.as<double>();
  } catch (const YAML::Exception&) {
    Fail(key, "expected a number, got '" + n.Scalar() + "'");
  }
  if (!std::isfinite(v) || v < lo || v > hi) {
    std::ostringstream os;
    os << "must be between " << lo << " and " << hi << ", got " << n.Scalar();
    Fail(key, os.str());
  }
  return v;
}

int GetInt(const YAML::Node& n, const std::string& key, long long lo, long long hi) {
  if (!n.IsScalar()) Fail(key, "expected an integer");
  long long v = 0;
  try {
    v = n.as<long long>();
  } catch (const YAML::Exception&) {
    Fail(key, "expected an integer, got '" + n.Scalar() + "'");
  }
  if (v < lo || v > hi)
    Fail(key, "must be between " + std::to_string(lo) + " and " + std::to_string(hi) + ", got " +
                  n.Scalar());
  return static_cast<int>(v);
}

bool GetBool(const YAML::Node& n, const std::string& key) {
  if (!n.IsScalar()) Fail(key, "expected true or false");
  try {
    return n.as<bool>();
  } catch (const YAML::Exception&) {
    Fail(key, "expected true or false, got '" + n.Scalar() + "'");
  }
}

std::string GetString(const YAML::Node& n, const std::string& key) {
  if (!n.IsScalar()) Fail(key, "expected a string");
  return n.Scalar();
}

std::string GetChoice(const YAML::Node& n, const std::string& key,
                      const std::vector<std::string>& choices) {
  std::string v = GetString(n, key);
  if (std::find(choices.begin(), choices.end(), v) != choices.end()) return v;
  std::string list;
  for (size_t i = 0; i < choices.size(); ++i)
    list += (i == 0 ? "" : (i + 1 == choices.size() ? " or " : ", ")) + choices[i];
  Fail(key, "expected " + list + ", got '" + v + "'");
}

// A simulator profile's name (sim/profiles.h), checked here so a typo fails before any fleet
// starts.
std::string GetProfile(const YAML::Node& n, const std::string& key) {
  return GetChoice(n, key, sim::ProfileNames());
}

// Seconds: a number, or a duration string such as "30s", "2m", "500ms".
double GetSeconds(const YAML::Node& n, const std::string& key, double lo, double hi) {
  if (!n.IsScalar()) Fail(key, "expected a duration (seconds, or e.g. 30s / 2m)");
  double v = 0;
  try {
    v = n.as<double>();
  } catch (const YAML::Exception&) {
    auto d = ParseDuration(n.Scalar());
    if (!d) Fail(key, "expected a duration (seconds, or e.g. 30s / 2m), got '" + n.Scalar() + "'");
    v = static_cast<double>(d->count()) / 1000.0;
  }
  if (!std::isfinite(v) || v < lo || v > hi) {
    std::ostringstream os;
    os << "must be between " << lo << "s and " << hi << "s, got " << n.Scalar();
    Fail(key, os.str());
  }
  return v;
}

std::vector<std::string> GetStringList(const YAML::Node& n, const std::string& key) {
  std::vector<std::string> out;
  if (n.IsScalar()) {
    std::istringstream is(n.Scalar());
    std::string w;
    while (is >> w) out.push_back(w);
    return out;
  }
  if (!n.IsSequence()) Fail(key, "expected a list of strings");
  for (size_t i = 0; i < n.size(); ++i)
    out.push_back(GetString(n[i], key + "[" + std::to_string(i) + "]"));
  return out;
}

TokenDist ParseDist(const YAML::Node& n, const std::string& key) {
  TokenDist d;
  if (n.IsScalar()) {
    d.mean = d.min = d.max = GetInt(n, key, 1, 1000000);
    d.kind = "uniform";
    return d;
  }
  CheckKeys(n, key, {"kind", "mean", "min", "max"});
  if (n["kind"]) d.kind = GetChoice(n["kind"], Join(key, "kind"), {"uniform", "lognormal"});
  bool has_mean = static_cast<bool>(n["mean"]);
  bool has_min = static_cast<bool>(n["min"]);
  bool has_max = static_cast<bool>(n["max"]);
  if (has_mean) d.mean = GetInt(n["mean"], Join(key, "mean"), 1, 1000000);
  if (has_min) d.min = GetInt(n["min"], Join(key, "min"), 1, 1000000);
  if (has_max) d.max = GetInt(n["max"], Join(key, "max"), 1, 1000000);
  if (!has_min && !has_max && has_mean) d.min = d.max = d.mean;
  if (has_min && !has_max) d.max = std::max(d.min, d.mean);
  if (has_max && !has_min) d.min = std::min(d.max, d.mean);
  if (!has_mean) d.mean = (d.min + d.max) / 2;
  if (d.min > d.max) Fail(Join(key, "min"), "must not exceed max");
  if (d.mean < d.min || d.mean > d.max) Fail(Join(key, "mean"), "must lie within [min, max]");
  return d;
}

// Overlays the keys of `over` on a copy of `base` (one level; nested maps are replaced).
YAML::Node Overlay(const YAML::Node& base, const YAML::Node& over) {
  YAML::Node out = base ? YAML::Clone(base) : YAML::Node(YAML::NodeType::Map);
  if (!over) return out;
  for (const auto& kv : over) out[kv.first.as<std::string>()] = YAML::Clone(kv.second);
  return out;
}

// Relative trace paths are read from the scenario file's directory (set by LoadScenario).
thread_local std::string g_base_dir;

RealtimeSpec ParseRealtime(const YAML::Node& n, const std::string& key, bool is_class = false) {
  RealtimeSpec r;
  if (!n || n.IsNull()) return r;
  CheckKeys(n, key,
            {"base_rps", "spike_rps", "spike_every", "spike_duration", "spike_offset",
             "prompt_tokens", "output_tokens", "shared_prefix", "slo_ttft_ms", "stream",
             "objective", "tenant", "classes", "name", "trace", "slo_tpot_ms"});
  if (n["name"] && !is_class) Fail(Join(key, "name"), "only a class in `classes` has a name");
  if (n["classes"] && is_class) Fail(Join(key, "classes"), "classes do not nest");
  if (n["tenant"]) r.tenant = GetString(n["tenant"], Join(key, "tenant"));
  if (n["base_rps"]) r.base_rps = GetNumber(n["base_rps"], Join(key, "base_rps"), 0, 1e5);
  if (n["spike_rps"]) r.spike_rps = GetNumber(n["spike_rps"], Join(key, "spike_rps"), 0, 1e5);
  if (n["spike_every"])
    r.spike_every_s = GetSeconds(n["spike_every"], Join(key, "spike_every"), 0, 1e6);
  if (n["spike_duration"])
    r.spike_duration_s = GetSeconds(n["spike_duration"], Join(key, "spike_duration"), 0, 1e6);
  if (n["spike_offset"])
    r.spike_offset_s = GetSeconds(n["spike_offset"], Join(key, "spike_offset"), 0, 1e6);
  if (n["prompt_tokens"])
    r.prompt_tokens = ParseDist(n["prompt_tokens"], Join(key, "prompt_tokens"));
  if (n["output_tokens"])
    r.output_tokens = ParseDist(n["output_tokens"], Join(key, "output_tokens"));
  if (n["shared_prefix"] && !n["shared_prefix"].IsNull()) {
    const std::string k = Join(key, "shared_prefix");
    CheckKeys(n["shared_prefix"], k, {"groups", "prefix_tokens"});
    const YAML::Node sp = n["shared_prefix"];
    if (sp["groups"]) r.prefix_groups = GetInt(sp["groups"], Join(k, "groups"), 0, 100000);
    if (sp["prefix_tokens"])
      r.prefix_tokens = GetInt(sp["prefix_tokens"], Join(k, "prefix_tokens"), 0, 1000000);
    if (r.prefix_groups > 0 && r.prefix_tokens <= 0)
      Fail(Join(k, "prefix_tokens"), "must be positive when groups > 0");
  }
  if (n["slo_ttft_ms"])
    r.slo_ttft_ms = GetNumber(n["slo_ttft_ms"], Join(key, "slo_ttft_ms"), 0, 1e9);
  if (n["slo_tpot_ms"])
    r.slo_tpot_ms = GetNumber(n["slo_tpot_ms"], Join(key, "slo_tpot_ms"), 0, 1e9);
  if (const YAML::Node t = n["trace"]; t && !t.IsNull()) {
    const std::string k = Join(key, "trace");
    if (t.IsScalar()) {
      r.trace_path = GetString(t, k);
    } else {
      CheckKeys(t, k, {"path", "speed"});
      if (!t["path"]) Fail(Join(k, "path"), "missing");
      r.trace_path = GetString(t["path"], Join(k, "path"));
      if (t["speed"]) r.trace_speed = GetNumber(t["speed"], Join(k, "speed"), 0.001, 1e6);
    }
    std::string path = r.trace_path;
    if (!path.empty() && path[0] != '/' && !g_base_dir.empty()) path = g_base_dir + "/" + path;
    auto rows = std::make_shared<std::vector<TraceRow>>();
    std::string err;
    if (!LoadTrace(path, rows.get(), &err)) Fail(k, err);
    r.trace = std::move(rows);
  }
  if (n["stream"]) r.stream = GetBool(n["stream"], Join(key, "stream"));
  if (n["objective"]) r.objective = GetString(n["objective"], Join(key, "objective"));
  if (r.spike_rps > 0) {
    if (r.spike_every_s <= 0) Fail(Join(key, "spike_every"), "must be positive when spike_rps > 0");
    if (r.spike_duration_s <= 0 || r.spike_duration_s > r.spike_every_s)
      Fail(Join(key, "spike_duration"), "must be positive and at most spike_every");
  }
  if (is_class) {
    if (!n["name"]) Fail(Join(key, "name"), "missing (every class needs a name)");
    r.name = GetString(n["name"], Join(key, "name"));
  }
  if (const YAML::Node cl = n["classes"]; cl && !cl.IsNull()) {
    if (!cl.IsSequence() || cl.size() == 0)
      Fail(Join(key, "classes"), "expected a non-empty list of classes");
    // Each class starts from the enclosing keys (except `classes`).
    YAML::Node base = YAML::Clone(n);
    base.remove("classes");
    std::set<std::string> names;
    for (size_t i = 0; i < cl.size(); ++i) {
      const std::string ck = Join(key, "classes[" + std::to_string(i) + "]");
      if (!cl[i].IsMap()) Fail(ck, "expected a map");
      RealtimeSpec c = ParseRealtime(Overlay(base, cl[i]), ck, true);
      if (!names.insert(c.name).second) Fail(Join(ck, "name"), "duplicate class '" + c.name + "'");
      r.classes.push_back(std::move(c));
    }
    return r;
  }
  if (r.base_rps <= 0 && r.spike_rps <= 0)
    Fail(Join(key, "base_rps"), "base_rps or spike_rps must be positive");
  return r;
}

AsyncSpec ParseAsync(const YAML::Node& n, const std::string& key) {
  AsyncSpec a;
  if (!n || n.IsNull()) return a;
  CheckKeys(
      n, key,
      {"requests", "deadline", "soft_deadline", "submit_window", "prompt_tokens", "output_tokens"});
  if (n["requests"]) a.requests = GetInt(n["requests"], Join(key, "requests"), 0, 10000000);
  if (n["deadline"]) a.deadline_s = GetSeconds(n["deadline"], Join(key, "deadline"), 0.001, 1e7);
  if (n["soft_deadline"])
    a.soft_deadline_s = GetSeconds(n["soft_deadline"], Join(key, "soft_deadline"), 0.001, 1e7);
  if (n["submit_window"])
    a.submit_window_s = GetSeconds(n["submit_window"], Join(key, "submit_window"), 0, 1e7);
  if (n["prompt_tokens"])
    a.prompt_tokens = ParseDist(n["prompt_tokens"], Join(key, "prompt_tokens"));
  if (n["output_tokens"])
    a.output_tokens = ParseDist(n["output_tokens"], Join(key, "output_tokens"));
  return a;
}

void ParseFleet(const YAML::Node& n, FleetSpec* f) {
  if (!n || n.IsNull()) return;
  CheckKeys(n, "fleet",
            {"count", "profile", "time_scale", "max_num_seqs", "scheduling_policy", "sim_args",
             "gateway_args", "processor_args", "groups", "kv_events"});
  if (n["kv_events"]) f->kv_events = GetBool(n["kv_events"], "fleet.kv_events");
  if (n["count"]) f->count = GetInt(n["count"], "fleet.count", 1, 256);
  if (n["profile"]) f->profile = GetProfile(n["profile"], "fleet.profile");
  if (n["time_scale"]) f->time_scale = GetNumber(n["time_scale"], "fleet.time_scale", 0.01, 1000);
  if (n["max_num_seqs"])
    f->max_num_seqs = GetInt(n["max_num_seqs"], "fleet.max_num_seqs", 1, 100000);
  if (n["scheduling_policy"])
    f->scheduling_policy =
        GetChoice(n["scheduling_policy"], "fleet.scheduling_policy", {"fcfs", "priority"});
  if (n["sim_args"]) f->sim_args = GetStringList(n["sim_args"], "fleet.sim_args");
  if (n["gateway_args"]) f->gateway_args = GetStringList(n["gateway_args"], "fleet.gateway_args");
  if (n["processor_args"])
    f->processor_args = GetStringList(n["processor_args"], "fleet.processor_args");
  if (n["groups"]) {
    const YAML::Node g = n["groups"];
    if (!g.IsSequence() || g.size() == 0) Fail("fleet.groups", "expected a non-empty list");
    if (n["count"]) Fail("fleet.count", "give either count or groups (their counts add up)");
    f->groups.clear();
    f->count = 0;
    for (size_t i = 0; i < g.size(); ++i) {
      const std::string key = "fleet.groups[" + std::to_string(i) + "]";
      CheckKeys(g[i], key, {"count", "profile", "sim_args"});
      FleetSpec::Group grp;
      if (g[i]["count"]) grp.count = GetInt(g[i]["count"], key + ".count", 1, 256);
      if (g[i]["profile"]) grp.profile = GetProfile(g[i]["profile"], key + ".profile");
      if (g[i]["sim_args"]) grp.sim_args = GetStringList(g[i]["sim_args"], key + ".sim_args");
      f->count += grp.count;
      f->groups.push_back(std::move(grp));
    }
    if (f->count > 256) Fail("fleet.groups", "at most 256 servers in all");
  }
}

void ParseRoot(const YAML::Node& root, Scenario* s) {
  CheckKeys(root, "",
            {"name", "model", "fleet", "duration", "max_requests", "seed", "sample_interval",
             "drain_timeout", "realtime", "async", "runs"});
  if (root["name"]) s->name = GetString(root["name"], "name");
  if (root["model"]) s->model = GetString(root["model"], "model");
  ParseFleet(root["fleet"], &s->fleet);
  if (root["duration"]) s->duration_s = GetSeconds(root["duration"], "duration", 1, 1e6);
  if (root["max_requests"])
    s->max_requests = GetInt(root["max_requests"], "max_requests", 1, 10000000);
  if (root["seed"]) s->seed = static_cast<uint64_t>(GetInt(root["seed"], "seed", 0, 2147483647));
  if (root["sample_interval"])
    s->sample_interval_s = GetSeconds(root["sample_interval"], "sample_interval", 0.05, 3600);
  if (root["drain_timeout"])
    s->drain_timeout_s = GetSeconds(root["drain_timeout"], "drain_timeout", 0, 1e6);
  // Validate the shared sections once on their own so errors name the top-level key.
  YAML::Node rt_base = root["realtime"];
  YAML::Node as_base = root["async"];
  if (rt_base && !rt_base.IsNull()) ParseRealtime(rt_base, "realtime");
  if (as_base && !as_base.IsNull()) ParseAsync(as_base, "async");

  const YAML::Node runs = root["runs"];
  if (!runs || !runs.IsSequence() || runs.size() == 0)
    Fail("runs", "expected a non-empty list of runs");
  std::set<std::string> names;
  for (size_t i = 0; i < runs.size(); ++i) {
    const std::string key = "runs[" + std::to_string(i) + "]";
    const YAML::Node r = runs[i];
    CheckKeys(r, key,
              {"name", "policy", "async_mode", "target", "realtime", "async", "gateway_args",
               "processor_args", "gateway_replicas"});
    RunSpec run;
    if (!r["name"]) Fail(Join(key, "name"), "missing (every run needs a name)");
    run.name = GetString(r["name"], Join(key, "name"));
    if (run.name.empty() || run.name.find_first_of("/ \t,") != std::string::npos)
      Fail(Join(key, "name"), "must be non-empty, without spaces, commas or slashes");
    if (!names.insert(run.name).second)
      Fail(Join(key, "name"), "duplicate run name '" + run.name + "'");
    if (r["policy"]) run.policy = GetChoice(r["policy"], Join(key, "policy"), sched::PolicyNames());
    if (r["async_mode"])
      run.async_mode =
          GetChoice(r["async_mode"], Join(key, "async_mode"),
                    {"none", "via-processor", "via-batch", "direct-sheddable", "direct-standard"});
    if (r["target"])
      run.target = GetChoice(r["target"], Join(key, "target"), {"tidegate", "haproxy"});
    if (r["gateway_args"])
      run.gateway_args = GetStringList(r["gateway_args"], Join(key, "gateway_args"));
    if (r["processor_args"])
      run.processor_args = GetStringList(r["processor_args"], Join(key, "processor_args"));
    if (r["gateway_replicas"])
      run.gateway_replicas = GetInt(r["gateway_replicas"], Join(key, "gateway_replicas"), 1, 8);
    if (r["realtime"] && !r["realtime"].IsNull() && !r["realtime"].IsMap())
      Fail(Join(key, "realtime"), "expected a map");
    if (r["async"] && !r["async"].IsNull() && !r["async"].IsMap())
      Fail(Join(key, "async"), "expected a map");
    run.realtime = ParseRealtime(Overlay(rt_base, r["realtime"]), Join(key, "realtime"));
    run.async = ParseAsync(Overlay(as_base, r["async"]), Join(key, "async"));
    if (run.async.soft_deadline_s > run.async.deadline_s)
      Fail(Join(key, "async.soft_deadline"), "must not be after async.deadline");
    if (run.async_mode != "none") {
      if (run.async.requests <= 0)
        Fail(Join(key, "async.requests"), "must be positive for async_mode " + run.async_mode);
      if (run.target == "haproxy")
        Fail(Join(key, "target"), "haproxy runs take no async traffic (async_mode: none)");
    }
    s->runs.push_back(std::move(run));
  }
}

}  // namespace

bool ParseScenario(const std::string& yaml_text, Scenario* out, std::string* error) {
  Scenario s;
  try {
    YAML::Node root = YAML::Load(yaml_text);
    if (!root || root.IsNull()) {
      *error = "the scenario is empty";
      return false;
    }
    ParseRoot(root, &s);
  } catch (const ScenarioError& e) {
    *error = e.message;
    return false;
  } catch (const YAML::Exception& e) {
    *error = std::string("invalid YAML: ") + e.what();
    return false;
  }
  *out = std::move(s);
  return true;
}

bool LoadScenario(const std::string& path, Scenario* out, std::string* error) {
  std::ifstream in(path);
  if (!in) {
    *error = "cannot read scenario file " + path;
    return false;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  const size_t slash = path.rfind('/');
  g_base_dir = slash == std::string::npos ? "." : path.substr(0, slash == 0 ? 1 : slash);
  const bool ok = ParseScenario(ss.str(), out, error);
  g_base_dir.clear();
  if (!ok) {
    *error = path + ": " + *error;
    return false;
  }
  return true;
}

void ScaleScenario(Scenario* s, double factor) {
  s->duration_s *= factor;
  s->drain_timeout_s *= factor;
  for (auto& r : s->runs) {
    r.async.requests = std::max(1, static_cast<int>(std::lround(r.async.requests * factor)));
    r.async.deadline_s *= factor;
    r.async.soft_deadline_s *= factor;
    r.async.submit_window_s *= factor;
  }
}

bool InSpike(const RealtimeSpec& spec, double t) {
  if (spec.spike_rps <= 0 || spec.spike_every_s <= 0 || t < spec.spike_offset_s) return false;
  double phase = std::fmod(t - spec.spike_offset_s, spec.spike_every_s);
  return phase < spec.spike_duration_s;
}

double RateAt(const RealtimeSpec& spec, double t) {
  return InSpike(spec, t) ? spec.spike_rps : spec.base_rps;
}

namespace {

int Draw(const TokenDist& d, std::mt19937_64& rng) {
  if (d.min == d.max) return d.min;
  if (d.kind == "lognormal") {
    const double sigma = 0.5;
    const double mu = std::log(static_cast<double>(d.mean)) - sigma * sigma / 2;
    std::lognormal_distribution<double> dist(mu, sigma);
    double v = dist(rng);
    return std::clamp(static_cast<int>(std::lround(v)), d.min, d.max);
  }
  std::uniform_int_distribution<int> dist(d.min, d.max);
  return dist(rng);
}

}  // namespace

namespace {
// With shared_prefix: a group drawn uniformly, and a prompt at least the prefix plus a little.
void AssignPrefixGroup(const RealtimeSpec& spec, std::mt19937_64& rng, PlannedRequest* r) {
  if (spec.prefix_groups <= 0) return;
  std::uniform_int_distribution<int> g(0, spec.prefix_groups - 1);
  r->group = g(rng);
  r->prompt_tokens = std::max(r->prompt_tokens, spec.prefix_tokens + 8);
}
}  // namespace

std::vector<PlannedRequest> ArrivalSchedule(const RealtimeSpec& spec, double duration_s,
                                            uint64_t seed, int max_requests) {
  std::vector<PlannedRequest> out;
  if (!spec.classes.empty()) {
    for (size_t k = 0; k < spec.classes.size(); ++k) {
      auto part = ArrivalSchedule(spec.classes[k], duration_s, seed + 7919 * (k + 1), max_requests);
      for (auto& p : part) p.cls = static_cast<int>(k);
      out.insert(out.end(), part.begin(), part.end());
    }
    std::stable_sort(out.begin(), out.end(), [](const PlannedRequest& a, const PlannedRequest& b) {
      return a.at_s < b.at_s;
    });
    if (static_cast<int>(out.size()) > max_requests) out.resize(max_requests);
    return out;
  }
  if (spec.trace) {
    std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ULL + 2);
    for (const TraceRow& row : *spec.trace) {
      const double at = row.t_s / spec.trace_speed;
      if (at >= duration_s || static_cast<int>(out.size()) >= max_requests) break;
      PlannedRequest r;
      r.at_s = at;
      r.prompt_tokens = std::max(1, row.context_tokens);
      r.output_tokens = std::max(1, row.generated_tokens);
      AssignPrefixGroup(spec, rng, &r);
      out.push_back(r);
    }
    return out;
  }
  const double peak = std::max(spec.base_rps, spec.spike_rps);
  if (peak <= 0 || duration_s <= 0) return out;
  std::mt19937_64 time_rng(seed * 0x9E3779B97F4A7C15ULL + 1);
  std::mt19937_64 size_rng(seed * 0x9E3779B97F4A7C15ULL + 2);
  std::exponential_distribution<double> gap(peak);
  std::uniform_real_distribution<double> u01(0.0, 1.0);
  double t = 0;
  while (static_cast<int>(out.size()) < max_requests) {
    t += gap(time_rng);
    if (t >= duration_s) break;
    // Thinning: keep a candidate with probability rate(t) / peak.
    if (u01(time_rng) * peak > RateAt(spec, t)) continue;
    PlannedRequest r;
    r.at_s = t;
    r.prompt_tokens = Draw(spec.prompt_tokens, size_rng);
    r.output_tokens = Draw(spec.output_tokens, size_rng);
    AssignPrefixGroup(spec, size_rng, &r);
    out.push_back(r);
  }
  return out;
}

std::vector<PlannedRequest> AsyncPlan(const AsyncSpec& spec, uint64_t seed) {
  std::vector<PlannedRequest> out;
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ULL + 3);
  for (int i = 0; i < spec.requests; ++i) {
    PlannedRequest r;
    r.prompt_tokens = Draw(spec.prompt_tokens, rng);
    r.output_tokens = Draw(spec.output_tokens, rng);
    out.push_back(r);
  }
  return out;
}

namespace {

// Appends `tokens` pseudo-words of 4 characters ("abc ") drawn from `rng`.
void AppendWords(std::string* s, int tokens, std::mt19937_64& rng) {
  static constexpr char kLetters[] = "abcdefghijklmnopqrstuvwxyz";
  std::uniform_int_distribution<int> letter(0, 25);
  for (int i = 0; i < tokens; ++i) {
    s->push_back(kLetters[letter(rng)]);
    s->push_back(kLetters[letter(rng)]);
    s->push_back(kLetters[letter(rng)]);
    s->push_back(' ');
  }
}

}  // namespace

std::string PromptText(int tokens, int group, int prefix_tokens, uint64_t unique_key) {
  std::string s;
  s.reserve(static_cast<size_t>(std::max(tokens, 1)) * 4);
  int used = 0;
  if (group >= 0 && prefix_tokens > 0) {
    std::mt19937_64 prefix_rng(0xC0FFEEULL + static_cast<uint64_t>(group) * 7919ULL);
    int n = std::min(prefix_tokens, tokens);
    AppendWords(&s, n, prefix_rng);
    used = n;
  }
  std::mt19937_64 rng(unique_key * 0xD1B54A32D192ED03ULL + 17);
  AppendWords(&s, std::max(0, tokens - used), rng);
  return s;
}

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return std::numeric_limits<double>::quiet_NaN();
  std::sort(values.begin(), values.end());
  if (values.size() == 1) return values[0];
  double rank = std::clamp(p, 0.0, 100.0) / 100.0 * static_cast<double>(values.size() - 1);
  size_t lo = static_cast<size_t>(std::floor(rank));
  size_t hi = std::min(values.size() - 1, lo + 1);
  double frac = rank - static_cast<double>(lo);
  return values[lo] + (values[hi] - values[lo]) * frac;
}

}  // namespace tidegate::bench
