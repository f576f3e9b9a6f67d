#include "pool/engine_metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>

#include "pool/prom_text.h"

namespace tidegate::pool {
namespace {

enum class Field : uint8_t { kWaiting, kRunning, kKv, kKvFallback, kLora, kCacheConfig };

struct Rule {
  std::string_view metric;
  Field field;
  std::string_view label = {};  // when set, only series with label == value count
  std::string_view label_value = {};
};

struct EngineSpec {
  Engine engine;
  std::string_view name;
  std::string_view model_label;  // label that carries the served model name
  bool has_kv;
  std::vector<Rule> rules;
};

const std::vector<EngineSpec>& Specs() {
  static const std::vector<EngineSpec> specs = {
      {Engine::kVllm,
       "vllm",
       "model_name",
       true,
       {{"vllm:num_requests_waiting", Field::kWaiting},
        {"vllm:num_requests_running", Field::kRunning},
        {"vllm:kv_cache_usage_perc", Field::kKv},
        {"vllm:gpu_cache_usage_perc", Field::kKvFallback},
        {"vllm:lora_requests_info", Field::kLora},
        {"vllm:cache_config_info", Field::kCacheConfig}}},
      {Engine::kSglang,
       "sglang",
       "model_name",
       true,
       {{"sglang:num_queue_reqs", Field::kWaiting},
        {"sglang:num_running_reqs", Field::kRunning},
        {"sglang:token_usage", Field::kKv},
        {"sglang:cache_config_info", Field::kCacheConfig}}},
      {Engine::kTrtllmServe,
       "trtllm-serve",
       "model_name",
       true,
       {{"trtllm_num_requests_waiting", Field::kWaiting},
        {"trtllm_num_requests_running", Field::kRunning},
        {"trtllm_kv_cache_utilization", Field::kKv}}},
      {Engine::kTritonTrtllm,
       "triton-trtllm",
       "model",
       true,
       {{"nv_trt_llm_request_metrics", Field::kWaiting, "request_type", "waiting"},
        {"nv_trt_llm_request_metrics", Field::kRunning, "request_type", "scheduled"},
        {"nv_trt_llm_kv_cache_block_metrics", Field::kKv, "kv_cache_block_type", "fraction"}}},
      {Engine::kLlamaCpp,
       "llamacpp",
       "",
       false,
       {{"llamacpp:requests_deferred", Field::kWaiting},
        {"llamacpp:requests_processing", Field::kRunning}}},
  };
  return specs;
}

const EngineSpec& SpecFor(Engine e) {
  for (const auto& s : Specs())
    if (s.engine == e) return s;
  return Specs().front();
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

  std::string Finish() {
    if (!error_.empty()) return error_;
    auto missing = [&](Field f) -> std::string {
      std::string m;
      for (const Rule& r : spec_.rules) {
        if (r.field != f) continue;
        m = "missing " + std::string(r.metric);
        if (!r.label.empty())
          m += "{" + std::string(r.label) + "=\"" + std::string(r.label_value) + "\"}";
        return m;
      }
      return "missing metric";
    };
    if (!seen_waiting_) return missing(Field::kWaiting);
    if (!seen_running_) return missing(Field::kRunning);
    if (spec_.has_kv) {
      if (seen_kv_) {
        out_->kv_usage = kv_;
      } else if (seen_kv_fallback_) {
        out_->kv_usage = kv_fallback_;
      } else {
        return missing(Field::kKv);
      }
      out_->has_kv = true;
    }
    out_->waiting = std::max(0.0, out_->waiting);
    out_->running = std::max(0.0, out_->running);
    out_->kv_usage = std::clamp(out_->kv_usage, 0.0, 1.0);
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
        if (!Finite(s)) return;
        out_->waiting += s.value;
        seen_waiting_ = true;
        NoteModel(s);
        break;
      case Field::kRunning:
        if (!Finite(s)) return;
        out_->running += s.value;
        seen_running_ = true;
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
        std::string_view bs = s.Label("block_size");
        if (bs.empty()) bs = s.Label("page_size");
        int block_size = 0;
        int64_t blocks = 0;
        if (!bs.empty() && ParseInt(bs, &block_size)) out_->block_size = std::max(0, block_size);
        std::string_view nb = s.Label("num_gpu_blocks");
        if (!nb.empty() && ParseInt(nb, &blocks))
          out_->num_gpu_blocks = std::max<int64_t>(0, blocks);
        break;
      }
    }
  }

  const EngineSpec& spec_;
  EndpointMetrics* out_;
  std::string error_;
  bool seen_waiting_ = false, seen_running_ = false, seen_kv_ = false, seen_kv_fallback_ = false;
  double kv_ = 0, kv_fallback_ = 0, lora_stamp_ = 0;
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

std::string ParseEngineMetrics(Engine engine, std::string_view text, Nanos scrape_time,
                               EndpointMetrics* out) {
  const EngineSpec& spec = SpecFor(engine);
  *out = EndpointMetrics{};
  out->scrape_time = scrape_time;
  Collector collector(spec, out);
  PromParseError err = ParsePromText(text, collector);
  if (!err.ok()) return std::string(spec.name) + ": " + err.ToString();
  std::string e = collector.Finish();
  if (!e.empty()) return std::string(spec.name) + ": " + e;
  return {};
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

}  // namespace tidegate::pool
