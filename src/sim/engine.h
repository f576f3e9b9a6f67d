// sim/engine.h — the simulated model server's engine: a vLLM-like continuous-batching step loop
// with a paged KV cache, prefix caching, preemption, FCFS/priority scheduling and LoRA slots.
// Pure logic: no networking, no sleeping. Time comes from the Clock seam, so tests drive it on a
// ManualClock and the HTTP server drives it on a (scaled) wall clock.
//
// Contract:
//  - Add() queues a request; Step() forms one batch (as vLLM v1's scheduler does: running
//    requests first, then waiting ones, within max_num_batched_tokens and max_num_seqs), applies
//    its effect at once and returns the step's modelled duration plus one TokenEvent per token
//    the step produced. The caller is expected to let `duration` pass before delivering the
//    events and calling Step() again; all timestamps (TTFT, ITL, E2E) are taken as
//    "clock.Now() at the start of Step() + duration".
//  - Abort() removes a request at any time and frees its KV blocks (cached ones stay reusable).
//  - Requests follow vLLM v1's unified model: a request has num_tokens (prompt + output so far)
//    and num_computed tokens with KV in the cache; a step gives each scheduled request
//    num_new = min(num_tokens - num_computed, remaining budget) tokens and samples a new token
//    when the request becomes fully computed. A prompt larger than the budget is thus prefilled
//    in chunks; a decode is num_new == 1.
//  - KV cache: num_gpu_blocks blocks of block_size tokens. A full prompt block gets the caller's
//    chained hash and stays in the prefix cache after its request ends, until the block is
//    reallocated (free blocks are evicted least-recently-freed first; blocks without a hash
//    are reused before cached ones). A new request reuses its longest cached prefix of blocks
//    (never all of its prompt: at least one token is recomputed, as in vLLM).
//  - Preemption is by recompute: when a running request cannot get a block, the last running
//    request (FCFS) or the lowest-priority one (priority policy) is preempted: its blocks are
//    freed, num_computed is reset and it goes back to the front of the waiting queue.
//  - Priority policy, as vLLM: a LOWER `priority` value is served first, ties by arrival.
//  - LoRA: at most max_loras distinct adapters among the running requests; a request naming
//    another adapter waits (requests behind it may go first). Loading an adapter into a slot
//    adds LatencyModel::lora_load_ms to that step.
//
// Thread-safety: none. One Engine is used from one thread (the server's event loop).
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "kvevents/events.h"
#include "metrics/registry.h"

namespace tidegate::sim {

enum class SchedulingPolicy { kFcfs, kPriority };

// Step latency model. Defaults: Llama-3.1-8B on one H100 (see DESIGN.md, "Simulator reference
// figures"):
//  - prefill: ms = prefill_a·N² + prefill_b·N + prefill_c for N prefill tokens in the step —
//    the published quadratic fit for Llama-3.1-8B/H100 quoted in DESIGN.md (the N² term is
//    attention, the linear term the MLP/projection FLOPs, the constant launch overhead).
//  - decode: ms = decode_base_ms + max(decode_per_seq_ms·D, context_bytes / mem_bandwidth)
//    for D decoding sequences: the "6 ms + 0.35 ms per running request" fit from DESIGN.md,
//    bounded below by the memory-bound estimate (context tokens × 128 KiB of KV per token
//    read at 3.35 TB/s, the H100 SXM HBM3 bandwidth).
//  - a mixed step (chunked prefill + decodes) costs the prefill term plus the per-sequence
//    decode term (the fixed overhead is paid once).
//  - lora_load_ms per adapter loaded into a slot in the step (order of magnitude of vLLM
//    loading a rank-16 adapter from host memory; not a published figure — tune it by flag).
struct LatencyModel {
  double prefill_a = 4.21e-7;
  double prefill_b = 0.0152;
  double prefill_c = 16.5;
  double decode_base_ms = 6.0;
  double decode_per_seq_ms = 0.35;
  double kv_bytes_per_token = 131072;  // 128 KiB: 32 layers × 8 KV heads × 128 dims × 2 × bf16
  double mem_bandwidth_bytes_per_s = 3.35e12;
  double lora_load_ms = 25.0;

  // Duration in milliseconds of a step with these contents.
  double StepMs(int64_t prefill_tokens, int64_t decode_seqs, int64_t decode_context_tokens,
                int lora_loads) const;
};

struct EngineConfig {
  int max_num_seqs = 256;
  int max_num_batched_tokens = 8192;
  int block_size = 16;
  int num_gpu_blocks = 25000;  // ≈ 400k tokens: 80 GB − 16 GB weights − activations, /128 KiB
  int max_model_len = 131072;  // Llama-3.1 context; also capped by the KV cache size
  bool enable_prefix_caching = true;
  SchedulingPolicy policy = SchedulingPolicy::kFcfs;
  int max_loras = 1;
  LatencyModel latency;
};

struct RequestSpec {
  int prompt_tokens = 1;
  // Chained hashes of the prompt's full blocks (block i covers tokens [i·bs, (i+1)·bs)); the
  // hash of block i must depend on every token before it. Fewer (or none) means no reuse.
  std::vector<uint64_t> block_hashes;
  // The prompt's token ids (the full blocks' at least), carried in BlockStored events.
  std::vector<uint32_t> token_ids;
  int max_tokens = 16;
  int priority = 0;  // lower is served first under the priority policy
  std::string lora;  // adapter name; empty = base model
};

struct TokenEvent {
  uint64_t id = 0;
  int32_t index = 0;      // 0-based index of the output token
  bool finished = false;  // the request reached max_tokens and has left the engine
};

struct StepResult {
  Nanos duration{0};
  int64_t prefill_tokens = 0;
  int64_t decode_seqs = 0;
  int scheduled_seqs = 0;
  int preempted = 0;
  int lora_loads = 0;
  std::vector<TokenEvent> events;
};

// Cumulative counters (tokens, as vLLM counts prefix-cache queries and hits).
struct EngineStats {
  uint64_t prefix_queries = 0;
  uint64_t prefix_hits = 0;
  uint64_t preemptions = 0;
  uint64_t prompt_tokens = 0;      // prompt tokens of requests admitted to running (first time)
  uint64_t generation_tokens = 0;  // output tokens produced
  uint64_t finished = 0;
  uint64_t aborted = 0;
  Nanos busy{0};  // sum of step durations
};

// Optional latency histograms the engine observes into (seconds, engine time).
struct EngineSinks {
  metrics::Histogram* ttft = nullptr;
  metrics::Histogram* itl = nullptr;
  metrics::Histogram* e2e = nullptr;
};

// A snapshot of one request, for the server (usage reporting) and tests.
struct RequestView {
  int prompt_tokens = 0;
  int num_output = 0;
  int num_computed = 0;
  int cached_tokens = -1;  // prefix-cache hit at first scheduling; -1 before it
  int preemptions = 0;
  bool running = false;
};

class Engine {
 public:
  Engine(EngineConfig cfg, const Clock& clock);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Queues a request; returns its id (> 0), or 0 with *error set if it can never be served
  // (longer than max_model_len or the KV cache, or an unknown adapter was already rejected by
  // the caller).
  uint64_t Add(RequestSpec spec, std::string* error);
  // Removes a waiting or running request and frees its blocks. False if unknown (finished).
  bool Abort(uint64_t id);
  // Runs one step (see the contract above). The returned reference is valid until the next call.
  const StepResult& Step();

  bool HasWork() const { return !running_.empty() || !waiting_.empty(); }
  int num_running() const { return static_cast<int>(running_.size()); }
  int num_waiting() const { return static_cast<int>(waiting_.size()); }
  int num_free_blocks() const { return free_count_; }
  // Fraction of KV blocks in use by requests (cached-but-free blocks count as free, as vLLM).
  double KvUsage() const;
  std::optional<RequestView> Get(uint64_t id) const;
  // Distinct adapters among running / waiting requests, sorted.
  std::vector<std::string> RunningLoras() const;
  std::vector<std::string> WaitingLoras() const;
  // Running and waiting requests by priority value (for SGLang-style per-priority series).
  void CountByPriority(std::map<int, int>* running, std::map<int, int>* waiting) const;
  // Requests in the running batch that are still prefilling their prompt.
  int num_prefilling() const;
  const EngineStats& stats() const { return stats_; }
  const EngineConfig& config() const { return cfg_; }
  void set_sinks(EngineSinks s) { sinks_ = s; }

  // KV cache events, as vLLM emits them: BlockStored when a request's prompt blocks become full
  // and computed (prefill progress, chunk by chunk), BlockRemoved when a cached block is
  // reallocated (evicted), AllBlocksCleared on ResetPrefixCache(). Only recorded once enabled;
  // TakeKvEvents() hands over what the calls since the last one produced (one batch per step).
  void EnableKvEvents() { kv_events_on_ = true; }
  std::vector<kvevents::Event> TakeKvEvents() { return std::exchange(kv_events_, {}); }
  // Drops every cached block (vLLM's reset_prefix_cache). Refused (false) while requests run or
  // wait, as vLLM refuses while blocks are in use.
  bool ResetPrefixCache();
  // The hashes of the blocks the prefix cache holds now, sorted (for tests and /debug/kv_cache).
  std::vector<uint64_t> CachedBlockHashes() const;

 private:
  struct Seq;
  struct Block {
    int ref = 0;
    uint64_t hash = 0;
    bool hashed = false;
    int prev = -1, next = -1;  // free list links
    bool in_free = false;
  };

  // Free-list (LRU) management.
  void FreeListPushBack(int b);
  void FreeListPushFront(int b);
  void FreeListRemove(int b);
  int AllocateBlock();
  void ReleaseBlocks(Seq& s);
  int LookupPrefix(const Seq& s, int* blocks_in_free) const;
  bool Grow(Seq& s, int num_new);
  void RegisterFullBlocks(Seq& s);
  void Preempt(Seq& s);
  void InsertWaiting(Seq* s, bool front);
  bool Before(const Seq* a, const Seq* b) const;
  int LoraIndex(const std::string& name);
  void Finish(Seq& s, Nanos end);

  EngineConfig cfg_;
  const Clock& clock_;
  EngineSinks sinks_;
  EngineStats stats_;
  StepResult result_;

  std::vector<Block> blocks_;
  int free_head_ = -1, free_tail_ = -1, free_count_ = 0;
  std::unordered_map<uint64_t, int> cached_;  // block hash → block index

  uint64_t next_id_ = 1;
  uint64_t next_arrival_ = 0;
  std::unordered_map<uint64_t, std::unique_ptr<Seq>> seqs_;
  std::deque<Seq*> waiting_;
  std::vector<Seq*> running_;

  std::vector<std::string> lora_names_;          // index → name (interned)
  std::vector<int> loaded_loras_;                // adapters in GPU slots, least recently used first
  std::vector<std::pair<Seq*, int>> scheduled_;  // scratch: (request, num_new) of this step
  bool kv_events_on_ = false;
  std::vector<kvevents::Event> kv_events_;
};

}  // namespace tidegate::sim
