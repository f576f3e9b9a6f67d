#include "sim/engine.h"

#include <algorithm>
#include <cmath>

namespace tidegate::sim {

double LatencyModel::StepMs(int64_t prefill_tokens, int64_t decode_seqs,
                            int64_t decode_context_tokens, int lora_loads) const {
  double ms = 0;
  if (prefill_tokens > 0) {
    double n = static_cast<double>(prefill_tokens);
    ms += prefill_a * n * n + prefill_b * n + prefill_c;
  }
  if (decode_seqs > 0) {
    double per_seq = decode_per_seq_ms * static_cast<double>(decode_seqs);
    double mem = static_cast<double>(decode_context_tokens) * kv_bytes_per_token /
                 mem_bandwidth_bytes_per_s * 1e3;
    ms += std::max(per_seq, mem);
    if (prefill_tokens == 0) ms += decode_base_ms;
  }
  ms += lora_load_ms * lora_loads;
  return ms;
}

struct Engine::Seq {
  uint64_t id = 0;
  uint64_t arrival_seq = 0;
  int prompt_len = 0;
  int max_tokens = 0;
  int priority = 0;
  int lora = -1;
  std::vector<uint64_t> hashes;
  std::vector<uint32_t> token_ids;
  std::string lora_name;
  std::vector<int> blocks;
  int num_hashed_blocks = 0;  // leading blocks whose hash is registered
  int num_computed = 0;
  int num_output = 0;
  int cached_tokens = -1;
  int preemptions = 0;
  bool running = false;
  bool admitted = false;  // counted in prompt_tokens once
  Nanos arrival{0};
  Nanos last_token{0};

  int num_tokens() const { return prompt_len + num_output; }
};

Engine::Engine(EngineConfig cfg, const Clock& clock) : cfg_(std::move(cfg)), clock_(clock) {
  cfg_.block_size = std::max(1, cfg_.block_size);
  cfg_.num_gpu_blocks = std::max(1, cfg_.num_gpu_blocks);
  cfg_.max_num_seqs = std::max(1, cfg_.max_num_seqs);
  cfg_.max_num_batched_tokens = std::max(1, cfg_.max_num_batched_tokens);
  cfg_.max_loras = std::max(1, cfg_.max_loras);
  blocks_.resize(cfg_.num_gpu_blocks);
  for (int b = 0; b < cfg_.num_gpu_blocks; ++b) FreeListPushBack(b);
  cached_.reserve(cfg_.num_gpu_blocks);
  running_.reserve(cfg_.max_num_seqs);
}

Engine::~Engine() = default;

bool Engine::ResetPrefixCache() {
  if (!running_.empty() || !waiting_.empty()) return false;
  for (Block& k : blocks_) k.hashed = false;
  cached_.clear();
  if (kv_events_on_) kv_events_.emplace_back(kvevents::AllBlocksCleared{});
  return true;
}

std::vector<uint64_t> Engine::CachedBlockHashes() const {
  std::vector<uint64_t> out;
  out.reserve(cached_.size());
  for (const auto& [h, b] : cached_) out.push_back(h);
  std::sort(out.begin(), out.end());
  return out;
}

// ------------------------------------------------------------------ KV blocks

void Engine::FreeListPushBack(int b) {
  Block& k = blocks_[b];
  k.prev = free_tail_;
  k.next = -1;
  if (free_tail_ >= 0) {
    blocks_[free_tail_].next = b;
  } else {
    free_head_ = b;
  }
  free_tail_ = b;
  k.in_free = true;
  ++free_count_;
}

void Engine::FreeListPushFront(int b) {
  Block& k = blocks_[b];
  k.prev = -1;
  k.next = free_head_;
  if (free_head_ >= 0) {
    blocks_[free_head_].prev = b;
  } else {
    free_tail_ = b;
  }
  free_head_ = b;
  k.in_free = true;
  ++free_count_;
}

void Engine::FreeListRemove(int b) {
  Block& k = blocks_[b];
  if (k.prev >= 0) {
    blocks_[k.prev].next = k.next;
  } else {
    free_head_ = k.next;
  }
  if (k.next >= 0) {
    blocks_[k.next].prev = k.prev;
  } else {
    free_tail_ = k.prev;
  }
  k.prev = k.next = -1;
  k.in_free = false;
  --free_count_;
}

int Engine::AllocateBlock() {
  int b = free_head_;
  if (b < 0) return -1;
  FreeListRemove(b);
  Block& k = blocks_[b];
  if (k.hashed) {  // evict the cached content
    auto it = cached_.find(k.hash);
    if (it != cached_.end() && it->second == b) {
      cached_.erase(it);
      if (kv_events_on_) {
        // Consecutive evictions are one event, as vLLM batches them.
        auto* last =
            kv_events_.empty() ? nullptr : std::get_if<kvevents::BlockRemoved>(&kv_events_.back());
        if (!last) {
          kv_events_.emplace_back(kvevents::BlockRemoved{});
          last = std::get_if<kvevents::BlockRemoved>(&kv_events_.back());
        }
        last->block_hashes.push_back(k.hash);
      }
    }
    k.hashed = false;
  }
  k.ref = 1;
  return b;
}

void Engine::ReleaseBlocks(Seq& s) {
  // Tail blocks first, so a request's later blocks are evicted before its prefix (vLLM order).
  for (auto it = s.blocks.rbegin(); it != s.blocks.rend(); ++it) {
    Block& k = blocks_[*it];
    if (--k.ref > 0) continue;
    if (k.hashed && cfg_.enable_prefix_caching) {
      FreeListPushBack(*it);
    } else {
      FreeListPushFront(*it);
    }
  }
  s.blocks.clear();
  s.num_hashed_blocks = 0;
}

// Longest cached prefix of s's blocks (in blocks); *blocks_in_free counts those now free.
int Engine::LookupPrefix(const Seq& s, int* blocks_in_free) const {
  *blocks_in_free = 0;
  if (!cfg_.enable_prefix_caching) return 0;
  int hits = 0;
  for (uint64_t h : s.hashes) {
    auto it = cached_.find(h);
    if (it == cached_.end()) break;
    if (blocks_[it->second].in_free) ++*blocks_in_free;
    ++hits;
  }
  // Never the whole request: the last token must be computed to sample the next one.
  int max_hits = (s.num_tokens() - 1) / cfg_.block_size;
  if (hits > max_hits) {
    // Recount the free ones within the allowed prefix.
    *blocks_in_free = 0;
    for (int i = 0; i < max_hits; ++i) {
      if (blocks_[cached_.at(s.hashes[i])].in_free) ++*blocks_in_free;
    }
    hits = max_hits;
  }
  return hits;
}

// Makes room for num_new more tokens in s's block table. False if out of blocks.
bool Engine::Grow(Seq& s, int num_new) {
  int need_total = (s.num_computed + num_new + cfg_.block_size - 1) / cfg_.block_size;
  int need = need_total - static_cast<int>(s.blocks.size());
  if (need <= 0) return true;
  if (need > free_count_) return false;
  for (int i = 0; i < need; ++i) s.blocks.push_back(AllocateBlock());
  return true;
}

void Engine::RegisterFullBlocks(Seq& s) {
  if (!cfg_.enable_prefix_caching) return;
  int full = std::min<int>(s.num_computed / cfg_.block_size, static_cast<int>(s.hashes.size()));
  if (kv_events_on_ && full > s.num_hashed_blocks) {
    const int from = s.num_hashed_blocks;
    const size_t bs = static_cast<size_t>(cfg_.block_size);
    kvevents::BlockStored ev;
    ev.block_hashes.assign(s.hashes.begin() + from, s.hashes.begin() + full);
    if (from > 0) ev.parent_block_hash = s.hashes[from - 1];
    const size_t lo = static_cast<size_t>(from) * bs, hi = static_cast<size_t>(full) * bs;
    if (s.token_ids.size() >= hi)
      ev.token_ids.assign(s.token_ids.begin() + static_cast<ptrdiff_t>(lo),
                          s.token_ids.begin() + static_cast<ptrdiff_t>(hi));
    ev.block_size = cfg_.block_size;
    ev.lora_name = s.lora_name;
    kv_events_.emplace_back(std::move(ev));
  }
  for (int i = s.num_hashed_blocks; i < full; ++i) {
    Block& k = blocks_[s.blocks[i]];
    if (!k.hashed) {
      k.hash = s.hashes[i];
      k.hashed = true;
      cached_.emplace(k.hash, s.blocks[i]);  // keeps an existing identical block if any
    }
  }
  s.num_hashed_blocks = std::max(s.num_hashed_blocks, full);
}

double Engine::KvUsage() const {
  return 1.0 - static_cast<double>(free_count_) / static_cast<double>(cfg_.num_gpu_blocks);
}

// ------------------------------------------------------------------ queues

bool Engine::Before(const Seq* a, const Seq* b) const {
  if (cfg_.policy == SchedulingPolicy::kPriority && a->priority != b->priority)
    return a->priority < b->priority;
  return a->arrival_seq < b->arrival_seq;
}

void Engine::InsertWaiting(Seq* s, bool front) {
  s->running = false;
  if (cfg_.policy == SchedulingPolicy::kFcfs) {
    if (front) {
      waiting_.push_front(s);
    } else {
      waiting_.push_back(s);
    }
    return;
  }
  auto it = std::upper_bound(waiting_.begin(), waiting_.end(), s,
                             [this](const Seq* a, const Seq* b) { return Before(a, b); });
  waiting_.insert(it, s);
}

int Engine::LoraIndex(const std::string& name) {
  for (size_t i = 0; i < lora_names_.size(); ++i)
    if (lora_names_[i] == name) return static_cast<int>(i);
  lora_names_.push_back(name);
  return static_cast<int>(lora_names_.size() - 1);
}

void Engine::Preempt(Seq& s) {
  ReleaseBlocks(s);
  s.num_computed = 0;
  ++s.preemptions;
  ++stats_.preemptions;
  ++result_.preempted;
  InsertWaiting(&s, /*front=*/true);
}

// ------------------------------------------------------------------ requests

uint64_t Engine::Add(RequestSpec spec, std::string* error) {
  int64_t capacity = static_cast<int64_t>(cfg_.num_gpu_blocks) * cfg_.block_size;
  int64_t limit = std::min<int64_t>(cfg_.max_model_len, capacity);
  spec.prompt_tokens = std::max(1, spec.prompt_tokens);
  spec.max_tokens = std::max(1, spec.max_tokens);
  int64_t total = static_cast<int64_t>(spec.prompt_tokens) + spec.max_tokens;
  if (total > limit) {
    if (error) {
      *error = "This model's maximum context length is " + std::to_string(limit) +
               " tokens. However, you requested " + std::to_string(total) + " tokens (" +
               std::to_string(spec.prompt_tokens) + " in the messages, " +
               std::to_string(spec.max_tokens) +
               " in the completion). Please reduce the length of the messages or completion.";
    }
    return 0;
  }
  auto s = std::make_unique<Seq>();
  s->id = next_id_++;
  s->arrival_seq = next_arrival_++;
  s->prompt_len = spec.prompt_tokens;
  s->max_tokens = spec.max_tokens;
  s->priority = spec.priority;
  s->lora = spec.lora.empty() ? -1 : LoraIndex(spec.lora);
  s->hashes = std::move(spec.block_hashes);
  int max_blocks = s->prompt_len / cfg_.block_size;
  if (static_cast<int>(s->hashes.size()) > max_blocks) s->hashes.resize(max_blocks);
  if (kv_events_on_) {
    s->token_ids = std::move(spec.token_ids);
    s->lora_name = spec.lora;
  }
  s->arrival = clock_.Now();
  uint64_t id = s->id;
  Seq* raw = s.get();
  seqs_.emplace(id, std::move(s));
  InsertWaiting(raw, /*front=*/false);
  return id;
}

bool Engine::Abort(uint64_t id) {
  auto it = seqs_.find(id);
  if (it == seqs_.end()) return false;
  Seq* s = it->second.get();
  if (s->running) {
    running_.erase(std::find(running_.begin(), running_.end(), s));
  } else {
    auto w = std::find(waiting_.begin(), waiting_.end(), s);
    if (w != waiting_.end()) waiting_.erase(w);
  }
  ReleaseBlocks(*s);
  ++stats_.aborted;
  seqs_.erase(it);
  return true;
}

std::optional<RequestView> Engine::Get(uint64_t id) const {
  auto it = seqs_.find(id);
  if (it == seqs_.end()) return std::nullopt;
  const Seq& s = *it->second;
  return RequestView{s.prompt_len,    s.num_output,  s.num_computed,
                     s.cached_tokens, s.preemptions, s.running};
}

std::vector<std::string> Engine::RunningLoras() const {
  std::vector<std::string> out;
  for (const Seq* s : running_)
    if (s->lora >= 0) out.push_back(lora_names_[s->lora]);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

void Engine::CountByPriority(std::map<int, int>* running, std::map<int, int>* waiting) const {
  running->clear();
  waiting->clear();
  for (const Seq* s : running_) ++(*running)[s->priority];
  for (const Seq* s : waiting_) ++(*waiting)[s->priority];
}

int Engine::num_prefilling() const {
  int n = 0;
  for (const Seq* s : running_) n += s->num_computed < s->prompt_len;
  return n;
}

std::vector<std::string> Engine::WaitingLoras() const {
  std::vector<std::string> out;
  for (const Seq* s : waiting_)
    if (s->lora >= 0) out.push_back(lora_names_[s->lora]);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

void Engine::Finish(Seq& s, Nanos end) {
  ReleaseBlocks(s);
  ++stats_.finished;
  if (sinks_.e2e) sinks_.e2e->Observe(ToSeconds(end - s.arrival));
}

// ------------------------------------------------------------------ the step

const StepResult& Engine::Step() {
  StepResult& r = result_;
  r.duration = Nanos{0};
  r.prefill_tokens = r.decode_seqs = 0;
  r.scheduled_seqs = r.preempted = r.lora_loads = 0;
  r.events.clear();
  scheduled_.clear();
  if (!HasWork()) return r;

  const Nanos now = clock_.Now();
  int budget = cfg_.max_num_batched_tokens;
  int64_t decode_context = 0;

  // 1. Running requests, in policy order (so the preemption victim, the last one, has not been
  // scheduled yet in this step).
  if (cfg_.policy == SchedulingPolicy::kPriority) {
    std::stable_sort(running_.begin(), running_.end(),
                     [this](const Seq* a, const Seq* b) { return Before(a, b); });
  }
  // Priority preemption (as vLLM's priority scheduler): while the batch is full, a waiting
  // request that outranks the lowest-priority running one takes its place; the victim goes back
  // to waiting (its KV is freed and recomputed later). Admission is not held back by these.
  int priority_preempted = 0;
  if (cfg_.policy == SchedulingPolicy::kPriority) {
    for (size_t k = 0; k < waiting_.size() && !running_.empty(); ++k) {
      if (waiting_[k]->priority >= running_.back()->priority) break;
      if (cfg_.max_num_seqs - static_cast<int>(running_.size()) > static_cast<int>(k)) continue;
      Seq* victim = running_.back();
      running_.pop_back();
      Preempt(*victim);
      ++priority_preempted;
    }
  }
  for (size_t i = 0; i < running_.size() && budget > 0;) {
    Seq* s = running_[i];
    int num_new = std::min(s->num_tokens() - s->num_computed, budget);
    if (num_new <= 0) {
      ++i;
      continue;
    }
    bool self_preempted = false;
    while (!Grow(*s, num_new)) {
      Seq* victim = running_.back();
      running_.pop_back();
      Preempt(*victim);
      if (victim == s) {
        self_preempted = true;
        break;
      }
    }
    if (self_preempted) break;  // s was the last one
    scheduled_.emplace_back(s, num_new);
    budget -= num_new;
    ++i;
  }

  // 2. Waiting requests, unless this step had to preempt (as vLLM: no admission then).
  std::vector<int> step_loras;  // adapters among running requests after admission
  for (const Seq* s : running_) {
    if (s->lora >= 0 &&
        std::find(step_loras.begin(), step_loras.end(), s->lora) == step_loras.end())
      step_loras.push_back(s->lora);
  }
  if (r.preempted == priority_preempted) {
    for (size_t i = 0; i < waiting_.size();) {
      if (budget <= 0 || static_cast<int>(running_.size()) >= cfg_.max_num_seqs) break;
      Seq* s = waiting_[i];
      bool new_lora = s->lora >= 0 &&
                      std::find(step_loras.begin(), step_loras.end(), s->lora) == step_loras.end();
      if (new_lora && static_cast<int>(step_loras.size()) >= cfg_.max_loras) {
        ++i;  // no adapter slot: this one waits, later ones may go
        continue;
      }
      int in_free = 0;
      int hits = s->num_computed == 0 ? LookupPrefix(*s, &in_free) : 0;
      int start = hits * cfg_.block_size;
      int num_new = std::min(s->num_tokens() - start, budget);
      int need_blocks = (start + num_new + cfg_.block_size - 1) / cfg_.block_size - hits;
      if (need_blocks > free_count_ - in_free) break;  // out of KV: wait for blocks
      // Commit: take the cached prefix, then fresh blocks.
      for (int b = 0; b < hits; ++b) {
        int blk = cached_.at(s->hashes[b]);
        Block& k = blocks_[blk];
        if (k.in_free) FreeListRemove(blk);
        ++k.ref;
        s->blocks.push_back(blk);
      }
      s->num_hashed_blocks = hits;
      s->num_computed = start;
      Grow(*s, num_new);
      if (cfg_.enable_prefix_caching) {
        stats_.prefix_queries += s->num_tokens();
        stats_.prefix_hits += start;
      }
      if (s->cached_tokens < 0) s->cached_tokens = start;
      if (!s->admitted) {
        s->admitted = true;
        stats_.prompt_tokens += s->prompt_len;
      }
      if (new_lora) {
        step_loras.push_back(s->lora);
        if (std::find(loaded_loras_.begin(), loaded_loras_.end(), s->lora) == loaded_loras_.end()) {
          if (static_cast<int>(loaded_loras_.size()) >= cfg_.max_loras) {
            // Evict the least recently loaded adapter that no running request uses.
            for (auto it = loaded_loras_.begin(); it != loaded_loras_.end(); ++it) {
              if (std::find(step_loras.begin(), step_loras.end(), *it) == step_loras.end()) {
                loaded_loras_.erase(it);
                break;
              }
            }
          }
          loaded_loras_.push_back(s->lora);
          ++r.lora_loads;
        }
      }
      waiting_.erase(waiting_.begin() + static_cast<std::ptrdiff_t>(i));
      s->running = true;
      running_.push_back(s);
      scheduled_.emplace_back(s, num_new);
      budget -= num_new;
    }
  }

  // 3. Cost of the batch.
  for (auto& [s, num_new] : scheduled_) {
    bool decode = num_new == 1 && s->num_output > 0 && s->num_computed + 1 == s->num_tokens();
    if (decode) {
      ++r.decode_seqs;
      decode_context += s->num_tokens();
    } else {
      r.prefill_tokens += num_new;
    }
  }
  r.scheduled_seqs = static_cast<int>(scheduled_.size());
  if (scheduled_.empty()) return r;
  double ms = cfg_.latency.StepMs(r.prefill_tokens, r.decode_seqs, decode_context, r.lora_loads);
  r.duration = Nanos{static_cast<int64_t>(ms * 1e6)};
  stats_.busy += r.duration;
  const Nanos end = now + r.duration;

  // 4. Effects: tokens computed, tokens sampled, requests finished.
  bool any_finished = false;
  for (auto& [s, num_new] : scheduled_) {
    s->num_computed += num_new;
    RegisterFullBlocks(*s);
    if (s->num_computed < s->num_tokens()) continue;  // a prefill chunk, no token yet
    int index = s->num_output++;
    ++stats_.generation_tokens;
    if (index == 0) {
      if (sinks_.ttft) sinks_.ttft->Observe(ToSeconds(end - s->arrival));
    } else if (sinks_.itl) {
      sinks_.itl->Observe(ToSeconds(end - s->last_token));
    }
    s->last_token = end;
    bool finished = s->num_output >= s->max_tokens;
    r.events.push_back(TokenEvent{s->id, index, finished});
    if (finished) {
      Finish(*s, end);
      s->running = false;
      any_finished = true;
    }
  }
  if (any_finished) {
    std::erase_if(running_, [this](Seq* s) {
      if (s->running) return false;
      seqs_.erase(s->id);
      return true;
    });
  }
  return r;
}

}  // namespace tidegate::sim
