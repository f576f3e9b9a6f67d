// sim/server.h — `tidegate sim`'s HTTP side: one or more simulated vLLM servers in a process.
//
// Contract: SimCluster runs one Engine per port, each driven by a step loop on an event loop
// (steps last the engine's modelled duration divided by time_scale), and serves the vLLM/OpenAI
// HTTP surface on that port: POST /v1/completions and /v1/chat/completions (streaming SSE and
// JSON), GET /v1/models, GET /health, GET /metrics (vLLM metric names, `model_name` label). With
// another personality the metrics look, and are served where, as that engine's
// (sim/personality.h): Triton's on a second port per server.
// With kv_events enabled each server publishes its engine's KV events (kvevents/publisher.h)
// after every step; POST /reset_prefix_cache drops the prefix cache (AllBlocksCleared), and
// GET /debug/kv_cache lists the cached block hashes ({"block_size", "block_hashes": [hex]}).
// A client that goes away is aborted in its engine at once (its KV blocks are freed). Slow
// clients never stall the step loop: tokens are buffered per stream (a stream more than 4 MiB
// behind is dropped). Start() binds every port (0 = a free one) and reports the first error;
// RunUntilSignal() serves until SIGINT/SIGTERM (returns 0) and dies at once, crash-like, on
// SIGUSR1 (exit code 137, open streams cut mid-response) for reliability tests.
// Thread-safety: construct, Start() and RunUntilSignal() from one thread. Each server's state is
// touched only by its own event loop thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kvevents/config.h"
#include "sim/engine.h"
#include "sim/personality.h"
#include "tokenizer/tokenizer.h"

namespace tidegate::sim {

enum class OutputMode { kFiller, kEcho };

struct SimConfig {
  std::string host = "127.0.0.1";
  std::vector<uint16_t> ports = {8000};  // one simulated server per entry; 0 = a free port
  std::string model = "meta-llama/Llama-3.1-8B-Instruct";
  std::vector<std::string> lora_modules;  // adapter names served besides the base model
  EngineConfig engine;
  double time_scale = 1.0;
  OutputMode mode = OutputMode::kFiller;
  int default_max_tokens = 256;  // chat requests without max_tokens (completions default 16)
  double fail_rate = 0;          // probability a completion request is answered 500
  int stall_after_tokens = 0;    // > 0: each stream goes silent after this many tokens
  uint64_t seed = 0;
  int threads = 0;  // event loops; 0 = min(servers, cores)
  // Which engine the servers play (sim/personality.h), and whether they export its metrics
  // (off = SGLang without --enable-metrics, trtllm-serve without return_perf_metrics,
  // llama-server without --metrics; vLLM always exports them).
  Personality personality = Personality::kVllm;
  bool export_metrics = true;
  // Triton: the metrics port of the first server (server i gets metrics_port + i; 0 = a free
  // port each).
  uint16_t metrics_port = 0;
  int tp_size = 1;  // SGLang: copies of every series, one per tensor-parallel rank
  // KV cache events (vLLM's --kv-events-config): server i publishes on endpoint's port + i (and
  // replays on replay_endpoint's port + i).
  kvevents::PublisherConfig kv_events;
  // The model's tokenizer: token counts and ids as the engine computes them; null = the
  // stand-in (tokenizer/standin.h: 4 bytes a token).
  std::shared_ptr<const tokenizer::Tokenizer> tokenizer;
};

class SimCluster {
 public:
  explicit SimCluster(SimConfig cfg);
  ~SimCluster();
  SimCluster(const SimCluster&) = delete;
  SimCluster& operator=(const SimCluster&) = delete;

  // Binds every port and starts the event loops; returns an error message or "".
  std::string Start();
  // The bound ports, in the order configured (valid after Start()).
  std::vector<uint16_t> ports() const;
  // The separate metrics ports (Triton personality; empty otherwise).
  std::vector<uint16_t> metrics_ports() const;
  int RunUntilSignal();
  // Stops every server (any thread).
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tidegate::sim
