#include "pool/engine_metrics.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <limits>
#include <map>

#include "pool/prom_text.h"

namespace tidegate::pool {
namespace {

enum class Field : uint8_t {
  kWaiting,
  kRunning,
  kKv,
  kKvFallback,
  kLora,
  kCacheConfig,    // an info metric whose labels carry the geometry
  kBlockSize,      // a gauge whose value is the block (page) size in tokens
  kNumBlocks,      // a gauge whose value is the number of blocks (pages)
  kPrefixHits,     // a counter of prompt tokens found in the prefix cache
  kPrefixQueries,  // a counter of prompt tokens looked up in it
  kMaxTokens,      // a gauge whose value is the cache size in tokens
};

struct Rule {
  std::string_view metric;
  Field field;
  std::string_view label = {};  // when set, only series with label == value count
  std::string_view label_value = {};
};

struct EngineSpec {
  Engine engine;
  std::string_view name;
  // The label that names the served model, only where it really does (empty otherwise).
  std::string_view model_label;
  bool kv_required;
  EngineTraits traits;
  std::vector<Rule> rules;
};

const std::vector<EngineSpec>& Specs() {
  static const std::vector<EngineSpec> specs = {
      {Engine::kVllm,
       "vllm",
       "model_name",
       true,
       {"/metrics", 0,
        "check that it is a vLLM server, and set metrics_path if its metrics are served "
        "elsewhere"},
       {{"vllm:num_requests_waiting", Field::kWaiting},
        {"vllm:num_requests_running", Field::kRunning},
        {"vllm:kv_cache_usage_perc", Field::kKv},
        {"vllm:gpu_cache_usage_perc", Field::kKvFallback},
        {"vllm:lora_requests_info", Field::kLora},
        {"vllm:cache_config_info", Field::kCacheConfig},
        {"vllm:prefix_cache_hits_total", Field::kPrefixHits},
        {"vllm:prefix_cache_queries_total", Field::kPrefixQueries}}},
      {Engine::kSglang,
       "sglang",
       "model_name",
       true,
       {"/metrics", 0, "start it with --enable-metrics"},
       {{"sglang:num_queue_reqs", Field::kWaiting},
        {"sglang:num_running_reqs", Field::kRunning},
        {"sglang:token_usage", Field::kKv},
        {"sglang:cache_config_info", Field::kCacheConfig},
        {"sglang:page_size", Field::kBlockSize},
        {"sglang:num_pages", Field::kNumBlocks},
        {"sglang:max_total_num_tokens", Field::kMaxTokens}}},
      {Engine::kTrtllmServe,
       "trtllm-serve",
       "",
       true,
       {"/prometheus/metrics", 0,
        "start it with return_perf_metrics: true and enable_iter_perf_stats: true in its "
        "--extra_llm_api_options file"},
       {{"trtllm_num_requests_waiting", Field::kWaiting},
        {"trtllm_num_requests_running", Field::kRunning},
        {"trtllm_kv_cache_utilization", Field::kKv},
        {"trtllm_kv_cache_tokens_per_block", Field::kBlockSize}}},
      {Engine::kTritonTrtllm,
       "triton-trtllm",
       "",
       true,
       {"/metrics", 8002,
        "Triton serves metrics on its --metrics-port (8002 by default) unless started with "
        "--allow-metrics=false; set metrics_port for this endpoint if it is another port"},
       {{"nv_trt_llm_request_metrics", Field::kWaiting, "request_type", "waiting"},
        {"nv_trt_llm_request_metrics", Field::kRunning, "request_type", "active"},
        {"nv_trt_llm_kv_cache_block_metrics", Field::kKv, "kv_cache_block_type", "fraction"},
        {"nv_trt_llm_kv_cache_block_metrics", Field::kBlockSize, "kv_cache_block_type",
         "tokens_per"},
        {"nv_trt_llm_kv_cache_block_metrics", Field::kNumBlocks, "kv_cache_block_type", "max"}}},
      {Engine::kLlamaCpp,
       "llamacpp",
       "",
       false,
       {"/metrics", 0, "start llama-server with --metrics"},
       {{"llamacpp:requests_deferred", Field::kWaiting},
        {"llamacpp:requests_processing", Field::kRunning},
        {"llamacpp:kv_cache_usage_ratio", Field::kKv}}},
  };
  return specs;
}

const EngineSpec& SpecFor(Engine e) {
  for (const auto& s : Specs())
    if (s.engine == e) return s;
  return Specs().front();
}

// Labels that name one replica of the same scheduler (its figures are copies, not parts).
bool IsReplicaLabel(std::string_view l) {
  return l == "tp_rank" || l == "pp_rank" || l == "moe_ep_rank" || l == "attn_tp_rank";
}

void SplitList(std::string_view s, std::vector<std::string>* out) {
  out->clear();
  while (!s.empty()) {
    size_t comma = s.find(',');
    std::string_view item = s.substr(0, comma);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (!item.empty()) out->emplace_back(item);
    if (comma == std::string_view::npos) break;
    s.remove_prefix(comma + 1);
  }
}

template <typename T>
bool ParseInt(std::string_view s, T* out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  if (ec == std::errc() && p == s.data() + s.size()) return true;
  // Some exporters render integers as floats ("16.0").
  double d;
  if (!ParsePromValue(s, &d) || !std::isfinite(d)) return false;
  // Reject rather than convert out-of-range floats (the conversion would be undefined).
  if (d < static_cast<double>(std::numeric_limits<T>::min()) ||
      d > static_cast<double>(std::numeric_limits<T>::max()))
    return false;
  *out = static_cast<T>(d);
  return true;
}

template <typename T>
bool ValueAsInt(double v, T* out) {
  if (!std::isfinite(v) || v < 0 || v > static_cast<double>(std::numeric_limits<T>::max()))
    return false;
  *out = static_cast<T>(v);
  return true;
}

// A request count exported as several series, aggregated per label (see the header).
class CountAggregate {
 public:
  void Add(const PromSample& s) {
    seen_ = true;
    std::string group, replica;
    bool part = false;
    for (const PromLabel& l : s.labels) {
      if (l.name == "priority") {
        part = !l.value.empty();
        continue;
      }
      std::string& key = IsReplicaLabel(l.name) ? replica : group;
      key.append(l.name).push_back('=');
      key.append(l.value).push_back('\x1f');
    }
    Series& r = groups_[group][replica];
    if (part) {
      r.parts += s.value;
    } else {
      r.total += s.value;
      r.has_total = true;
    }
  }
  bool seen() const { return seen_; }
  double Value() const {
    double sum = 0;
    for (const auto& [g, replicas] : groups_) {
      double best = 0;
      bool first = true;
      for (const auto& [r, s] : replicas) {
        const double v = s.has_total ? s.total : s.parts;
        best = first ? v : std::max(best, v);
        first = false;
      }
      sum += best;
    }
    return sum;
  }

 private:
  struct Series {
    double total = 0, parts = 0;
    bool has_total = false;
  };
  std::map<std::string, std::map<std::string, Series>> groups_;
  bool seen_ = false;
};

class Collector final : public PromVisitor {
 public:
  Collector(const EngineSpec& spec, EndpointMetrics* out) : spec_(spec), out_(out) {}

  bool OnSample(const PromSample& s) override {
    for (const Rule& r : spec_.rules) {
      if (s.name != r.metric) continue;
      if (!r.label.empty() && s.Label(r.label) != r.label_value) continue;
      Apply(r.field, s);
    }
    return error_.empty();
  }

  MetricsParse Finish() {
    if (!error_.empty()) return {error_, false};
    auto missing = [&](Field f) -> MetricsParse {
      for (const Rule& r : spec_.rules) {
        if (r.field != f) continue;
        std::string m = "missing " + std::string(r.metric);
        if (!r.label.empty())
          m += "{" + std::string(r.label) + "=\"" + std::string(r.label_value) + "\"}";
        return {m, true};
      }
      return {"missing metric", true};
    };
    if (!waiting_.seen()) return missing(Field::kWaiting);
    if (!running_.seen()) return missing(Field::kRunning);
    out_->waiting = std::max(0.0, waiting_.Value());
    out_->running = std::max(0.0, running_.Value());
    if (seen_kv_) {
      out_->kv_usage = kv_;
      out_->has_kv = true;
    } else if (seen_kv_fallback_) {
      out_->kv_usage = kv_fallback_;
      out_->has_kv = true;
    } else if (spec_.kv_required) {
      return missing(Field::kKv);
    }
    out_->kv_usage = std::clamp(out_->kv_usage, 0.0, 1.0);
    if (out_->num_gpu_blocks == 0 && max_tokens_ > 0 && out_->block_size > 0)
      out_->num_gpu_blocks = max_tokens_ / out_->block_size;
    if (prefix_hits_.seen() && prefix_queries_.seen()) {
      out_->prefix_hit_tokens = std::max(0.0, prefix_hits_.Value());
      out_->prefix_query_tokens = std::max(0.0, prefix_queries_.Value());
    }
    return {};
  }

 private:
  bool Finite(const PromSample& s) {
    if (std::isfinite(s.value)) return true;
    error_ = "non-finite value for " + std::string(s.name);
    return false;
  }

  void NoteModel(const PromSample& s) {
    if (spec_.model_label.empty()) return;
    std::string_view m = s.Label(spec_.model_label);
    if (m.empty()) return;
    for (const auto& x : out_->models)
      if (x == m) return;
    out_->models.emplace_back(m);
  }

  void Apply(Field f, const PromSample& s) {
    switch (f) {
      case Field::kWaiting:
      case Field::kRunning:
        if (!Finite(s)) return;
        (f == Field::kWaiting ? waiting_ : running_).Add(s);
        NoteModel(s);
        break;
      case Field::kKv:
        if (!Finite(s)) return;
        kv_ = seen_kv_ ? std::max(kv_, s.value) : s.value;
        seen_kv_ = true;
        break;
      case Field::kKvFallback:
        if (!Finite(s)) return;
        kv_fallback_ = seen_kv_fallback_ ? std::max(kv_fallback_, s.value) : s.value;
        seen_kv_fallback_ = true;
        break;
      case Field::kLora: {
        // vLLM keeps old label sets around and values each with its update time: the latest
        // (largest value) describes the current state.
        if (out_->has_lora_info && !(s.value > lora_stamp_)) return;
        lora_stamp_ = s.value;
        out_->has_lora_info = true;
        int max_lora = 0;
        if (s.HasLabel("max_lora") && !ParseInt(s.Label("max_lora"), &max_lora)) {
          error_ = "invalid max_lora \"" + std::string(s.Label("max_lora")) + "\"";
          return;
        }
        out_->max_lora = std::max(0, max_lora);
        SplitList(s.Label("running_lora_adapters"), &out_->running_lora_adapters);
        SplitList(s.Label("waiting_lora_adapters"), &out_->waiting_lora_adapters);
        break;
      }
      case Field::kCacheConfig: {
        // vLLM: block_size + num_gpu_blocks; older SGLang: page_size + num_pages.
        std::string_view bs =
            s.HasLabel("block_size") ? s.Label("block_size") : s.Label("page_size");
        std::string_view nb =
            s.HasLabel("num_gpu_blocks") ? s.Label("num_gpu_blocks") : s.Label("num_pages");
        int block_size = 0;
        int64_t blocks = 0;
        if (ParseInt(bs, &block_size)) out_->block_size = std::max(0, block_size);
        if (ParseInt(nb, &blocks)) out_->num_gpu_blocks = std::max<int64_t>(0, blocks);
        break;
      }
      case Field::kBlockSize: {
        int v = 0;
        if (ValueAsInt(s.value, &v)) out_->block_size = v;
        break;
      }
      case Field::kNumBlocks: {
        int64_t v = 0;
        if (ValueAsInt(s.value, &v)) out_->num_gpu_blocks = v;
        break;
      }
      case Field::kMaxTokens: {
        int64_t v = 0;
        if (ValueAsInt(s.value, &v)) max_tokens_ = v;
        break;
      }
      case Field::kPrefixHits:
      case Field::kPrefixQueries:
        if (!Finite(s)) return;
        (f == Field::kPrefixHits ? prefix_hits_ : prefix_queries_).Add(s);
        break;
    }
  }

  const EngineSpec& spec_;
  EndpointMetrics* out_;
  std::string error_;
  CountAggregate waiting_, running_, prefix_hits_, prefix_queries_;
  bool seen_kv_ = false, seen_kv_fallback_ = false;
  double kv_ = 0, kv_fallback_ = 0, lora_stamp_ = 0;
  int64_t max_tokens_ = 0;
};

// Finds the first metric family whose name prefix identifies an engine.
class Detector final : public PromVisitor {
 public:
  bool OnSample(const PromSample& s) override {
    Note(s.family.empty() ? s.name : s.family);
    return !engine;
  }
  void OnType(std::string_view family, MetricType) override { Note(family); }
  std::optional<Engine> engine;

 private:
  void Note(std::string_view n) {
    if (engine) return;
    auto starts = [&](std::string_view p) { return n.substr(0, p.size()) == p; };
    if (starts("vllm:"))
      engine = Engine::kVllm;
    else if (starts("sglang:"))
      engine = Engine::kSglang;
    else if (starts("llamacpp:"))
      engine = Engine::kLlamaCpp;
    else if (starts("nv_trt_llm_") || starts("nv_inference_"))
      engine = Engine::kTritonTrtllm;
    else if (starts("trtllm_"))
      engine = Engine::kTrtllmServe;
  }
};

bool Contains(const std::vector<std::string>& v, std::string_view x) {
  for (const auto& s : v)
    if (s == x) return true;
  return false;
}

}  // namespace

std::optional<Engine> EngineFromName(std::string_view name) {
  for (const auto& s : Specs())
    if (s.name == name) return s.engine;
  if (name == "tensorrt-llm" || name == "trtllm") return Engine::kTrtllmServe;
  if (name == "triton") return Engine::kTritonTrtllm;
  if (name == "llama.cpp" || name == "llama-cpp") return Engine::kLlamaCpp;
  return std::nullopt;
}

std::string_view EngineName(Engine engine) { return SpecFor(engine).name; }

const EngineTraits& TraitsOf(Engine engine) { return SpecFor(engine).traits; }

std::vector<std::string> EngineNames() {
  std::vector<std::string> v;
  for (const auto& s : Specs()) v.emplace_back(s.name);
  return v;
}

bool EndpointMetrics::ServesModel(std::string_view model) const { return Contains(models, model); }
bool EndpointMetrics::ServesAdapter(std::string_view a) const { return Contains(lora_adapters, a); }
bool EndpointMetrics::AdapterRunning(std::string_view a) const {
  return Contains(running_lora_adapters, a);
}
bool EndpointMetrics::AdapterWaiting(std::string_view a) const {
  return Contains(waiting_lora_adapters, a);
}

MetricsParse ParseEngineMetricsPage(Engine engine, std::string_view text, Nanos scrape_time,
                                    EndpointMetrics* out) {
  const EngineSpec& spec = SpecFor(engine);
  *out = EndpointMetrics{};
  out->scrape_time = scrape_time;
  Collector collector(spec, out);
  PromParseError err = ParsePromText(text, collector);
  if (!err.ok()) return {std::string(spec.name) + ": " + err.ToString(), false};
  MetricsParse r = collector.Finish();
  if (!r.ok()) r.error = std::string(spec.name) + ": " + r.error;
  return r;
}

std::string ParseEngineMetrics(Engine engine, std::string_view text, Nanos scrape_time,
                               EndpointMetrics* out) {
  return ParseEngineMetricsPage(engine, text, scrape_time, out).error;
}

std::string ParseEngineMetrics(std::string_view engine_name, std::string_view text,
                               Nanos scrape_time, EndpointMetrics* out) {
  auto engine = EngineFromName(engine_name);
  if (!engine) {
    std::string known;
    for (const auto& n : EngineNames()) known += (known.empty() ? "" : ", ") + n;
    return "unknown engine \"" + std::string(engine_name) + "\" (known: " + known + ")";
  }
  return ParseEngineMetrics(*engine, text, scrape_time, out);
}

Detection DetectEngine(std::string_view body) {
  Detection d;
  size_t i = 0;
  while (i < body.size() && std::isspace(static_cast<unsigned char>(body[i]))) ++i;
  if (i < body.size() && (body[i] == '[' || body[i] == '{')) {
    d.json_stats = true;
    d.engine = Engine::kTrtllmServe;
    return d;
  }
  Detector det;
  ParsePromText(body, det);  // a malformed tail still leaves what was read before it
  d.engine = det.engine;
  return d;
}

std::optional<Engine> EngineFromOwner(std::string_view owned_by) {
  std::string o(owned_by);
  for (char& c : o) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (o == "vllm") return Engine::kVllm;
  if (o == "sglang") return Engine::kSglang;
  if (o == "llamacpp" || o == "llama.cpp") return Engine::kLlamaCpp;
  if (o == "tensorrt_llm" || o == "tensorrt-llm" || o == "trtllm") return Engine::kTrtllmServe;
  if (o == "triton" || o == "triton inference server") return Engine::kTritonTrtllm;
  return std::nullopt;
}

}  // namespace tidegate::pool
