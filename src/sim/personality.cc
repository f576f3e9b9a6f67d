#include "sim/personality.h"

#include <nlohmann/json.hpp>

#include "metrics/registry.h"

namespace tidegate::sim {
namespace {

struct Names {
  Personality p;
  std::string_view name, owner;
};
constexpr Names kNames[] = {
    {Personality::kVllm, "vllm", "vllm"},
    {Personality::kSglang, "sglang", "sglang"},
    {Personality::kTrtllm, "trtllm", "tensorrt_llm"},
    {Personality::kTriton, "triton", "triton"},
    {Personality::kLlamaCpp, "llamacpp", "llamacpp"},
};

std::string Num(double v) { return metrics::FormatValue(v); }

void Family(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
  out.append("# HELP ").append(name).append(" ").append(help).append("\n");
  out.append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

void Sample(std::string& out, std::string_view name, std::string_view labels, double v) {
  out.append(name);
  if (!labels.empty()) out.append("{").append(labels).append("}");
  out.append(" ").append(Num(v)).append("\n");
}

std::string Escape(std::string_view s) {
  std::string o;
  for (char c : s) {
    if (c == '\\' || c == '"') o.push_back('\\');
    if (c == '\n') {
      o += "\\n";
      continue;
    }
    o.push_back(c);
  }
  return o;
}

}  // namespace

std::optional<Personality> PersonalityFromName(std::string_view name) {
  for (const auto& n : kNames)
    if (n.name == name) return n.p;
  return std::nullopt;
}

std::string_view PersonalityName(Personality p) {
  for (const auto& n : kNames)
    if (n.p == p) return n.name;
  return "vllm";
}

std::vector<std::string> PersonalityNames() {
  std::vector<std::string> v;
  for (const auto& n : kNames) v.emplace_back(n.name);
  return v;
}

std::string_view PersonalityOwner(Personality p) {
  for (const auto& n : kNames)
    if (n.p == p) return n.owner;
  return "vllm";
}

std::string RenderSglangMetrics(const EngineState& s) {
  std::string out;
  const std::string model = Escape(s.model);
  auto base = [&](int rank) {
    return "engine_type=\"unified\",model_name=\"" + model + "\",pp_rank=\"0\",tp_rank=\"" +
           std::to_string(rank) + "\"";
  };
  auto with_priority = [&](int rank, std::string_view prio) {
    return "engine_type=\"unified\",model_name=\"" + model + "\",pp_rank=\"0\",priority=\"" +
           std::string(prio) + "\",tp_rank=\"" + std::to_string(rank) + "\"";
  };
  auto counts = [&](std::string_view name, std::string_view help, int total,
                    const std::map<int, int>& by_priority) {
    Family(out, name, "gauge", help);
    for (int r = 0; r < s.tp_size; ++r) {
      if (!s.priority_scheduling) {
        Sample(out, name, base(r), total);
        continue;
      }
      Sample(out, name, with_priority(r, ""), total);
      for (const auto& [p, n] : by_priority)
        Sample(out, name, with_priority(r, std::to_string(p)), n);
    }
  };
  counts("sglang:num_running_reqs", "The number of running requests.", s.running,
         s.running_by_priority);
  counts("sglang:num_queue_reqs", "The number of requests in the waiting queue.", s.waiting,
         s.waiting_by_priority);
  auto gauge = [&](std::string_view name, std::string_view help, double v) {
    Family(out, name, "gauge", help);
    for (int r = 0; r < s.tp_size; ++r) Sample(out, name, base(r), v);
  };
  gauge("sglang:token_usage", "The token usage.", s.kv_usage);
  gauge("sglang:num_used_tokens", "The number of used tokens.",
        static_cast<double>(s.used_blocks * s.block_size));
  gauge("sglang:max_total_num_tokens", "Maximum total number of tokens in the KV cache pool.",
        static_cast<double>(s.num_blocks * s.block_size));
  gauge("sglang:page_size", "The page size of the KV cache.", s.block_size);
  gauge("sglang:num_pages", "The number of pages of the KV cache.",
        static_cast<double>(s.num_blocks));
  auto counter = [&](std::string_view name, std::string_view help, double v) {
    Family(out, name, "counter", help);
    for (int r = 0; r < s.tp_size; ++r) Sample(out, name, base(r), v);
  };
  counter("sglang:prompt_tokens_total", "Number of prefill tokens processed.",
          static_cast<double>(s.prompt_tokens));
  counter("sglang:generation_tokens_total", "Number of generation tokens processed.",
          static_cast<double>(s.generation_tokens));
  Family(out, "tidegate_sim_busy_seconds_total", "counter",
         "Simulated seconds in which an engine step was running.");
  Sample(out, "tidegate_sim_busy_seconds_total", "model_name=\"" + model + "\"", s.busy_seconds);
  return out;
}

std::string RenderTrtllmPrometheus(const EngineState& s) {
  std::string out;
  const std::string l = "model_name=\"undefined\",engine_type=\"trtllm\"";
  Family(out, "trtllm_num_requests_running", "gauge",
         "Number of requests in model execution batches.");
  Sample(out, "trtllm_num_requests_running", l, s.running);
  Family(out, "trtllm_num_requests_waiting", "gauge",
         "Number of requests waiting to be processed.");
  Sample(out, "trtllm_num_requests_waiting", l, s.waiting);
  Family(out, "trtllm_kv_cache_utilization", "gauge", "KV cache utilization (0 to 1).");
  Sample(out, "trtllm_kv_cache_utilization", l, s.kv_usage);
  Family(out, "trtllm_kv_cache_tokens_per_block", "gauge", "Tokens per KV cache block.");
  Sample(out, "trtllm_kv_cache_tokens_per_block", l, s.block_size);
  Family(out, "trtllm_request_success_total", "counter",
         "Count of successfully processed requests.");
  Sample(out, "trtllm_request_success_total", l + ",finished_reason=\"length\"",
         static_cast<double>(s.finished));
  Family(out, "tidegate_sim_busy_seconds_total", "counter",
         "Simulated seconds in which an engine step was running.");
  Sample(out, "tidegate_sim_busy_seconds_total", l, s.busy_seconds);
  return out;
}

std::string RenderTrtllmIterationStats(const EngineState& s) {
  nlohmann::ordered_json it;
  it["iter"] = s.iteration;
  it["numActiveRequests"] = s.running;
  it["numQueuedRequests"] = s.waiting;
  it["maxNumActiveRequests"] = s.max_num_seqs;
  it["numCompletedRequests"] = 0;
  it["kvCacheStats"] = {{"maxNumBlocks", s.num_blocks},
                        {"freeNumBlocks", s.num_blocks - s.used_blocks},
                        {"usedNumBlocks", s.used_blocks},
                        {"tokensPerBlock", s.block_size}};
  it["inflightBatchingStats"] = {{"numContextRequests", s.prefilling},
                                 {"numGenRequests", s.running - s.prefilling},
                                 {"numScheduledRequests", s.running},
                                 {"numPausedRequests", 0}};
  return nlohmann::ordered_json::array({it}).dump();
}

std::string RenderTritonMetrics(const EngineState& s) {
  std::string out;
  const std::string m = "model=\"tensorrt_llm\"";
  auto req = [&](std::string_view type, double v) {
    Sample(out, "nv_trt_llm_request_metrics",
           m + ",request_type=\"" + std::string(type) + "\",version=\"1\"", v);
  };
  Family(out, "nv_trt_llm_request_metrics", "gauge", "TRT LLM request metrics");
  req("context", s.prefilling);
  req("scheduled", s.running);
  req("max", s.max_num_seqs);
  req("active", s.running);
  req("waiting", s.waiting);
  auto kv = [&](std::string_view type, double v) {
    Sample(out, "nv_trt_llm_kv_cache_block_metrics",
           "kv_cache_block_type=\"" + std::string(type) + "\"," + m + ",version=\"1\"", v);
  };
  Family(out, "nv_trt_llm_kv_cache_block_metrics", "gauge", "TRT LLM KV cache block metrics");
  kv("tokens_per", s.block_size);
  kv("used", static_cast<double>(s.used_blocks));
  kv("free", static_cast<double>(s.num_blocks - s.used_blocks));
  kv("max", static_cast<double>(s.num_blocks));
  kv("fraction", s.kv_usage);
  Family(out, "nv_inference_request_success", "counter",
         "Number of successful inference requests, all batch sizes");
  Sample(out, "nv_inference_request_success", m + ",version=\"1\"",
         static_cast<double>(s.finished));
  Family(out, "tidegate_sim_busy_seconds_total", "counter",
         "Simulated seconds in which an engine step was running.");
  Sample(out, "tidegate_sim_busy_seconds_total", m, s.busy_seconds);
  return out;
}

std::string RenderLlamaCppMetrics(const EngineState& s) {
  std::string out;
  Family(out, "llamacpp:prompt_tokens_total", "counter", "Number of prompt tokens processed.");
  Sample(out, "llamacpp:prompt_tokens_total", "", static_cast<double>(s.prompt_tokens));
  Family(out, "llamacpp:tokens_predicted_total", "counter",
         "Number of generation tokens processed.");
  Sample(out, "llamacpp:tokens_predicted_total", "", static_cast<double>(s.generation_tokens));
  Family(out, "llamacpp:n_decode_total", "counter", "Total number of llama_decode() calls");
  Sample(out, "llamacpp:n_decode_total", "", static_cast<double>(s.iteration));
  Family(out, "llamacpp:requests_processing", "gauge", "Number of requests processing.");
  Sample(out, "llamacpp:requests_processing", "", s.running);
  Family(out, "llamacpp:requests_deferred", "gauge", "Number of requests deferred.");
  Sample(out, "llamacpp:requests_deferred", "", s.waiting);
  Family(out, "tidegate_sim_busy_seconds_total", "counter",
         "Simulated seconds in which an engine step was running.");
  Sample(out, "tidegate_sim_busy_seconds_total", "", s.busy_seconds);
  return out;
}

std::string LlamaCppMetricsDisabledBody() {
  return "{\"error\":{\"code\":501,\"message\":\"This server does not support metrics endpoint. "
         "Start it with `--metrics`\",\"type\":\"not_supported_error\"}}";
}

}  // namespace tidegate::sim
