// sim/text.h — the simulator's stand-in tokenizer, prefix hashing and output text.
//
// Contract (all pure functions, deterministic, thread-safe):
//  - Tokenisation: one token per kCharsPerToken (4) bytes of text, rounded up, at least 1 —
//    the usual rule of thumb for English with Llama-3's tokenizer. Token i is bytes
//    [4i, 4i+4) of the text, so equal text prefixes are equal token prefixes.
//  - BlockHashes(): the chained 64-bit hashes of the prompt's full KV blocks (block_size token
//    ids each), seeded with the model/adapter name as vLLM seeds its block hashes with the LoRA
//    id: hash_i = H(hash_{i-1}, ids of block i).
//  - Chat prompts without a tokenizer are rendered to one text (ChatPromptText): "role:content\n"
//    per message, then "assistant:", the same text the gateway flattens a chat request to, so
//    the stand-in ids of a gateway without a tokenizer match the simulator's.
//  - FillerToken(): deterministic output text (a space and a short word) from a seed and the
//    token index; EchoToken() returns token i of a prompt, its ends moved forward to UTF-8
//    character boundaries (so tokens never split a character and still tile the prompt).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tidegate::sim {

inline constexpr int kCharsPerToken = 4;

int CountTokens(std::string_view text);
uint64_t HashBytes(uint64_t seed, std::string_view bytes);
std::vector<uint64_t> BlockHashes(std::span<const uint32_t> token_ids, int block_size,
                                  uint64_t seed);
// Messages as (role, content) pairs.
std::string ChatPromptText(const std::vector<std::pair<std::string, std::string>>& messages);
std::string_view FillerToken(uint64_t seed, int index);
std::string_view EchoToken(std::string_view prompt, int index);

}  // namespace tidegate::sim
