#include "sim/profiles.h"

namespace tidegate::sim {

const std::vector<Profile>& Profiles() {
  static const std::vector<Profile> kProfiles = [] {
    std::vector<Profile> v;
    // Llama-3.1-8B (bf16) on one H100 80GB with vLLM defaults. From DESIGN.md: weights 16 GB,
    // 128 KiB of KV per token, ≈400k tokens of KV cache ≈ 25k blocks of 16 tokens,
    // max_num_seqs 256, max_num_batched_tokens 8192 (chunked prefill), 128k context; the
    // latency model's defaults (engine.h) are the published fits for this pair.
    Profile p;
    p.name = "llama-3.1-8b-h100";
    p.description = "Llama-3.1-8B on one H100 80GB (calibrated, the default)";
    p.model = "meta-llama/Llama-3.1-8B-Instruct";
    v.push_back(p);

    // A deliberately small server for tests and demos: the same latency model, but a KV cache
    // of 2,048 blocks (32k tokens) and 32 sequences, so queueing, KV pressure and preemption
    // appear with a few dozen requests. Not calibrated against hardware.
    Profile t = p;
    t.name = "tiny";
    t.description =
        "8B latency model with a 32k-token KV cache and 32 seqs (for tests; not calibrated)";
    t.engine.num_gpu_blocks = 2048;
    t.engine.max_num_seqs = 32;
    t.engine.max_num_batched_tokens = 2048;
    t.engine.max_model_len = 32768;
    v.push_back(t);
    return v;
  }();
  return kProfiles;
}

const Profile* FindProfile(const std::string& name) {
  for (const auto& p : Profiles())
    if (p.name == name) return &p;
  return nullptr;
}

}  // namespace tidegate::sim
