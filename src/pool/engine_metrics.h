// pool/engine_metrics.h — what the scheduler needs from a model server's metrics page, for each
// engine as it really exports them (DESIGN.md "Model-server metrics").
//
// Contract: ParseEngineMetrics() parses one scraped page (Prometheus text) with the mapping of
// the named engine into an EndpointMetrics snapshot:
//   vllm          vllm:num_requests_waiting / vllm:num_requests_running /
//                 vllm:kv_cache_usage_perc (falls back to vllm:gpu_cache_usage_perc),
//                 vllm:lora_requests_info{max_lora,running_lora_adapters,waiting_lora_adapters}
//                 (the series with the largest value — vLLM sets it to the update time — wins),
//                 vllm:cache_config_info{block_size,num_gpu_blocks},
//                 vllm:prefix_cache_hits_total / vllm:prefix_cache_queries_total (prompt tokens
//                 found in / looked up in the prefix cache, cumulative; optional)
//   sglang        sglang:num_queue_reqs / sglang:num_running_reqs / sglang:token_usage; cache
//                 geometry from the gauges sglang:page_size and sglang:num_pages (current), or
//                 sglang:cache_config_info{page_size,num_pages} (older), or
//                 sglang:max_total_num_tokens / page size
//   trtllm-serve  trtllm_num_requests_waiting / trtllm_num_requests_running /
//                 trtllm_kv_cache_utilization, trtllm_kv_cache_tokens_per_block
//   triton-trtllm nv_trt_llm_request_metrics{request_type="waiting"|"active"} /
//                 nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="fraction"}, and
//                 kv_cache_block_type "tokens_per" / "max" for the geometry
//   llamacpp      llamacpp:requests_deferred / llamacpp:requests_processing; KV from
//                 llamacpp:kv_cache_usage_ratio where the version still exports it
//
// Extra labels are aggregated per label, not blindly summed:
//   * `priority` (SGLang with priority scheduling): a series with an empty or absent priority
//     is the total; the per-priority series are its parts and count only when no total is
//     exported — so a request is never counted twice;
//   * `tp_rank`, `pp_rank`, `moe_ep_rank`, `attn_tp_rank` (tensor/pipeline/expert-parallel
//     ranks): every rank of one scheduler reports the same queue, so ranks are deduplicated
//     (the largest figure stands);
//   * any other label — `dp_rank` and vLLM's `engine` (data-parallel schedulers), `model_name`
//     (several served models), `engine_type` … — names separate queues and is summed.
// KV usage is the maximum over label sets, clamped to 0..1. Counts are clamped at 0.
//
// Model identity: the served model names are collected from labels only for engines whose
// label really names the served model (vLLM's and SGLang's `model_name`). trtllm-serve labels
// every series "undefined", Triton labels them with its internal model name (for example
// `tensorrt_llm`) and llama.cpp has no labels: for those, `models` stays empty and the served
// models come from /v1/models alone.
//
// A page missing the waiting, running or (where required) KV metric yields a "missing" result:
// the page is readable but the engine does not export what the scheduler needs (for example
// trtllm-serve without return_perf_metrics). A non-finite value or a malformed page is an error.
// On either, *out is unspecified.
//
// Detection (engine "auto"): DetectEngine() recognises an engine from its metrics page (metric
// name prefixes; trtllm-serve's JSON iteration statistics at /metrics), and EngineFromOwner()
// from the `owned_by` of its /v1/models entries.
// Thread-safety: pure functions; EndpointMetrics is a plain value.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"

namespace tidegate::pool {

enum class Engine : uint8_t { kVllm, kSglang, kTrtllmServe, kTritonTrtllm, kLlamaCpp };

// Canonical names: "vllm", "sglang", "trtllm-serve", "triton-trtllm", "llamacpp". Aliases:
// "tensorrt-llm", "trtllm", "triton", "llama.cpp", "llama-cpp". Case-sensitive. "auto" is not
// an engine: it is handled by the caller (see IsAutoEngine).
std::optional<Engine> EngineFromName(std::string_view name);
std::string_view EngineName(Engine engine);
std::vector<std::string> EngineNames();  // canonical names, for error messages
inline bool IsAutoEngine(std::string_view name) { return name.empty() || name == "auto"; }

// Where and how an engine exports its metrics, by default.
struct EngineTraits {
  std::string_view metrics_path;  // on the metrics port
  uint16_t metrics_port = 0;      // 0 = the inference port
  // How to turn the metrics on, for the warning when they are missing.
  std::string_view enable_hint;
};
const EngineTraits& TraitsOf(Engine engine);

struct EndpointMetrics {
  double waiting = 0;   // requests queued in the engine
  double running = 0;   // requests in the running batch
  double kv_usage = 0;  // 0..1
  bool has_kv = false;  // false for engines that do not report it (llama.cpp)
  // LoRA state (vLLM); has_lora_info is false when the engine did not report it.
  bool has_lora_info = false;
  int max_lora = 0;
  std::vector<std::string> running_lora_adapters;
  std::vector<std::string> waiting_lora_adapters;
  // Cache geometry (0 when not reported).
  int block_size = 0;
  int64_t num_gpu_blocks = 0;
  // The engine's own prefix-cache counters, cumulative prompt tokens (-1 when not exported).
  double prefix_hit_tokens = -1, prefix_query_tokens = -1;
  std::vector<std::string> models;  // served model names seen in labels (may be empty)
  // True when `models` is the server's own complete list (its GET /v1/models, filled in by the
  // gateway), so a model absent from it is not served there.
  bool models_listed = false;
  // LoRA adapters the server offers (from its /v1/models); filled in by the gateway.
  std::vector<std::string> lora_adapters;
  // True for a snapshot the gateway made up from its own in-flight count because the server
  // exports no usable metrics (see pool/scraper.h).
  bool in_flight_only = false;
  Nanos scrape_time{0};  // monotonic time of the scrape (set by the caller)

  bool ServesModel(std::string_view model) const;
  bool AdapterRunning(std::string_view adapter) const;
  bool ServesAdapter(std::string_view adapter) const;
  bool AdapterWaiting(std::string_view adapter) const;
};

struct MetricsParse {
  std::string error;     // empty on success
  bool missing = false;  // the page parsed, but lacks a metric the scheduler needs
  bool ok() const { return error.empty(); }
};

// Parses `text` for `engine` into *out (scrape_time is set to `scrape_time`). On failure the
// message reads like "vllm: line 7: invalid value \"x\"" or "vllm: missing
// vllm:num_requests_waiting".
MetricsParse ParseEngineMetricsPage(Engine engine, std::string_view text, Nanos scrape_time,
                                    EndpointMetrics* out);
// The same, returning only the message (empty on success).
std::string ParseEngineMetrics(Engine engine, std::string_view text, Nanos scrape_time,
                               EndpointMetrics* out);
// The same, choosing the engine by name; an unknown name is an error listing the known ones.
std::string ParseEngineMetrics(std::string_view engine_name, std::string_view text,
                               Nanos scrape_time, EndpointMetrics* out);

// What a metrics page says about the engine that served it.
struct Detection {
  std::optional<Engine> engine;
  bool json_stats = false;  // a JSON body (trtllm-serve's iteration statistics at /metrics)
};
Detection DetectEngine(std::string_view body);
// From an /v1/models entry's `owned_by`: "vllm", "sglang", "llamacpp", "tensorrt_llm",
// "triton" (case-insensitive). nullopt when it names none of them.
std::optional<Engine> EngineFromOwner(std::string_view owned_by);

}  // namespace tidegate::pool
