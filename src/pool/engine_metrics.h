// pool/engine_metrics.h — what the scheduler needs from a model server's /metrics page.
//
// Contract: ParseEngineMetrics() parses one scraped page (Prometheus text) with the mapping of
// the named engine (DESIGN.md "Model-server metrics") into an EndpointMetrics snapshot:
//   vllm          vllm:num_requests_waiting / vllm:num_requests_running /
//                 vllm:kv_cache_usage_perc (falls back to vllm:gpu_cache_usage_perc),
//                 vllm:lora_requests_info{max_lora,running_lora_adapters,waiting_lora_adapters}
//                 (the series with the largest value — vLLM sets it to the update time — wins),
//                 vllm:cache_config_info{block_size,num_gpu_blocks}
//   sglang        sglang:num_queue_reqs / sglang:num_running_reqs / sglang:token_usage,
//                 sglang:cache_config_info{block_size|page_size,num_gpu_blocks}
//   trtllm-serve  trtllm_num_requests_waiting / trtllm_num_requests_running /
//                 trtllm_kv_cache_utilization
//   triton-trtllm nv_trt_llm_request_metrics{request_type="waiting"|"scheduled"} /
//                 nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="fraction"}
//   llamacpp      llamacpp:requests_deferred / llamacpp:requests_processing (no KV figure)
// Counts are summed over label sets (one series per model / data-parallel engine); KV usage is
// the maximum over label sets, clamped to 0..1. The served model names are collected from the
// `model_name` (vLLM/SGLang/TRT-LLM) or `model` (Triton) labels of the waiting/running series.
// A page missing the waiting, running or (where the engine has one) KV metric, holding a
// non-finite value for them, or malformed, yields an error message and leaves *out unspecified.
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
// "tensorrt-llm", "trtllm", "triton", "llama.cpp", "llama-cpp". Case-sensitive.
std::optional<Engine> EngineFromName(std::string_view name);
std::string_view EngineName(Engine engine);
std::vector<std::string> EngineNames();  // canonical names, for error messages

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
  std::vector<std::string> models;  // served model names seen in labels (may be empty)
  // True when `models` is the server's own complete list (its GET /v1/models, filled in by the
  // gateway), so a model absent from it is not served there.
  bool models_listed = false;
  // LoRA adapters the server offers (its /v1/models minus the base models named in its metric
  // labels); filled in by the gateway.
  std::vector<std::string> lora_adapters;
  Nanos scrape_time{0};  // monotonic time of the scrape (set by the caller)

  bool ServesModel(std::string_view model) const;
  bool AdapterRunning(std::string_view adapter) const;
  bool ServesAdapter(std::string_view adapter) const;
  bool AdapterWaiting(std::string_view adapter) const;
};

// Parses `text` for `engine` into *out (scrape_time is set to `scrape_time`). Returns an empty
// string on success, otherwise a message such as "vllm: line 7: invalid value \"x\"" or
// "vllm: missing vllm:num_requests_waiting".
std::string ParseEngineMetrics(Engine engine, std::string_view text, Nanos scrape_time,
                               EndpointMetrics* out);
// The same, choosing the engine by name; an unknown name is an error listing the known ones.
std::string ParseEngineMetrics(std::string_view engine_name, std::string_view text,
                               Nanos scrape_time, EndpointMetrics* out);

}  // namespace tidegate::pool
