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

    // Llama-3.1-70B-Instruct with FP8 weights (bf16 KV cache) on 4× H100 80GB SXM, tensor
    // parallelism 4, vLLM. Measured (LambdaLabsML/vllm-benchmark, vLLM 0.6.0 benchmark_serving.py
    // with ShareGPT prompts, results/prompt_10 and results/prompt_320,
    // 4xH100-80GB-SXM/Meta-Llama-3.1-70B-Instruct-FP8_tp4): 124-129 ms per 10-token chunk of
    // decode at <= 10 sequences (10-step scheduling: ~12.5 ms a step), 230-240 ms per chunk with a
    // full batch of ~256 (~23.5 ms a step), median TTFT 125 ms for a batch of 10 prompts of 1,369
    // tokens in all. Hence decode_base 12 ms and 0.045 ms per sequence ((23.5 - 12.5) / 251, an
    // upper bound: prefills were still admitted then). Prefill: the linear term from Microsoft
    // Vidur's H100 profiles of the same layer shapes (data/profiling/compute/h100/meta-llama/
    // Llama-2-70b-hf/mlp.csv: 0.382 ms a layer for 512 tokens at TP4, × 80 layers → 0.06 ms a
    // token in bf16), ~1.7× faster with FP8 GEMMs (an estimate) → 0.040; the N² term is the 8B
    // default's scaled by attention FLOPs (80 layers × 8192 wide against 32 × 4096, ÷ 4 ranks:
    // × 1.25); the constant the default's plus the extra weight read (17.65 GB a GPU at
    // 3.35 TB/s). Check: 17 + 0.040 × 1,369 = 72 ms, under the 125 ms measured end to end. KV:
    // 80 layers × 8 KV heads × 128 × 2 × 2 bytes = 320 KiB a token over the 4 GPUs' 13.4 TB/s;
    // 39,000 blocks (0.9 × 80 GiB − 16.4 GiB of weights − 8 GiB of activations and graphs, as
    // in the default, = 47.6 GiB a GPU ÷ 80 KiB a token).
    Profile big = p;
    big.name = "llama-3.1-70b-fp8-h100-tp4";
    big.description = "Llama-3.1-70B FP8 on 4× H100 80GB, TP4 (calibrated)";
    big.model = "meta-llama/Llama-3.1-70B-Instruct";
    big.engine.latency = {.prefill_a = 5.3e-7,
                          .prefill_b = 0.040,
                          .prefill_c = 17,
                          .decode_base_ms = 12,
                          .decode_per_seq_ms = 0.045,
                          .kv_bytes_per_token = 327680,
                          .mem_bandwidth_bytes_per_s = 13.4e12};
    big.engine.num_gpu_blocks = 39000;
    v.push_back(big);

    // Llama-3.1-8B-Instruct (bf16) on one A100 80GB SXM (2.0 TB/s), vLLM. Measured
    // (LambdaLabsML/vllm-benchmark as above, 1xA100-80GB-SXM/Meta-Llama-3-8B-Instruct_tp1, the
    // same architecture as 3.1): 112-119 ms per 10-token decode chunk at <= 10 sequences
    // (~11.5 ms a step), 250-290 ms with ~256 (~27 ms), median TTFT 127 ms for 1,369 prompt
    // tokens in all. Hence decode_base 11 ms, 0.06 ms per sequence (an upper bound, as above).
    // Prefill: the linear term from Vidur's A100 profile of Meta-Llama-3-8B (data/profiling/
    // compute/a100/meta-llama/Meta-Llama-3-8B/mlp.csv: 67.9 ms a layer for 32,768 tokens, × 32
    // layers → 0.066 ms a token); the N² term the H100 default's × 2.5 (attention throughput,
    // an estimate); the constant the default's plus the slower weight read (16 GB at 2.0 TB/s,
    // 8 ms, against 4.8). Check: 20 + 0.066 × 1,369 = 110 ms against 127 ms measured. The KV
    // cache is the default's: the same 80 GB and model.
    Profile a100 = p;
    a100.name = "llama-3.1-8b-a100";
    a100.description = "Llama-3.1-8B on one A100 80GB (calibrated)";
    a100.engine.latency = {.prefill_a = 1.05e-6,
                           .prefill_b = 0.066,
                           .prefill_c = 20,
                           .decode_base_ms = 11,
                           .decode_per_seq_ms = 0.06,
                           .mem_bandwidth_bytes_per_s = 2.0e12};
    v.push_back(a100);

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

std::vector<std::string> ProfileNames() {
  std::vector<std::string> names;
  for (const auto& p : Profiles()) names.push_back(p.name);
  return names;
}

}  // namespace tidegate::sim
