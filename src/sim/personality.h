// sim/personality.h — what a simulated server looks like from outside when it plays an engine
// other than vLLM: its metric names and labels, the paths and ports it serves them on, and its
// /v1/models owner. Each personality follows that engine's own exporter at the version named:
//   vllm      vLLM 0.10 (the simulator's native surface, rendered by sim/server.cc)
//   sglang    SGLang 0.5: sglang:num_running_reqs / num_queue_reqs / token_usage with labels
//             engine_type, model_name, pp_rank, tp_rank (one copy of every series per
//             tensor-parallel rank); with priority scheduling, a total series (priority="")
//             and one per priority value; cache geometry in the gauges sglang:page_size,
//             sglang:num_pages and sglang:max_total_num_tokens. Without metrics (SGLang's
//             --enable-metrics off) /metrics answers 404.
//   trtllm    trtllm-serve (TensorRT-LLM 1.x): /metrics is a JSON list of iteration statistics
//             (numActiveRequests, numQueuedRequests, kvCacheStats…); the Prometheus text is at
//             /prometheus/metrics, only with return_perf_metrics (404 otherwise), every series
//             labelled model_name="undefined", engine_type="trtllm".
//   triton    Triton with the TensorRT-LLM backend behind its OpenAI-compatible frontend: the
//             inference port has no /metrics (404); nv_trt_llm_request_metrics{request_type} and
//             nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type} (model="tensorrt_llm",
//             version="1") are on a separate metrics port (Triton's default 8002).
//   llamacpp  llama.cpp's llama-server: llamacpp:requests_processing / requests_deferred and
//             token counters, no labels; without --metrics, /metrics answers 501 with
//             llama.cpp's "Start it with `--metrics`" error.
// Contract: the Render* functions are pure: they turn an EngineState snapshot into the page.
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tidegate::sim {

enum class Personality : uint8_t { kVllm, kSglang, kTrtllm, kTriton, kLlamaCpp };

std::optional<Personality> PersonalityFromName(std::string_view name);
std::string_view PersonalityName(Personality p);
std::vector<std::string> PersonalityNames();
// `owned_by` of the personality's /v1/models entries.
std::string_view PersonalityOwner(Personality p);

// What the engine shows of itself at one moment.
struct EngineState {
  std::string model;
  int running = 0;
  int waiting = 0;
  int prefilling = 0;  // running requests still in their prompt
  double kv_usage = 0;
  int block_size = 16;
  int64_t num_blocks = 0;
  int64_t used_blocks = 0;
  int max_num_seqs = 0;
  uint64_t prompt_tokens = 0;
  uint64_t generation_tokens = 0;
  uint64_t finished = 0;
  uint64_t iteration = 0;
  double busy_seconds = 0;
  bool priority_scheduling = false;
  std::map<int, int> running_by_priority, waiting_by_priority;
  int tp_size = 1;  // SGLang: one copy of each series per tensor-parallel rank
};

std::string RenderSglangMetrics(const EngineState& s);
std::string RenderTrtllmPrometheus(const EngineState& s);
std::string RenderTrtllmIterationStats(const EngineState& s);  // JSON
std::string RenderTritonMetrics(const EngineState& s);
std::string RenderLlamaCppMetrics(const EngineState& s);
// llama-server's answer to GET /metrics without --metrics (HTTP 501).
std::string LlamaCppMetricsDisabledBody();

}  // namespace tidegate::sim
