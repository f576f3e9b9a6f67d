// kvevents/events.h — vLLM's KV-cache events and their msgpack wire encoding.
//
// An engine that publishes KV events sends, per scheduler step, one EventBatch: the step's time,
// the events, and its data-parallel rank. The events say which KV blocks the engine's prefix
// cache now holds:
//  - BlockStored: blocks just filled (a request's prefill reached them). `block_hashes` are the
//    engine's own hashes, `parent_block_hash` the hash of the block before the first one (none
//    for a prompt's first block), `token_ids` the tokens of all the blocks (block_size each),
//    `lora_id`/`lora_name` the adapter whose KV they are, `medium` the tier ("GPU", "CPU", ...;
//    absent = GPU).
//  - BlockRemoved: blocks evicted from `medium`.
//  - AllBlocksCleared: the engine dropped its whole prefix cache (a reset).
//
// Encodings (both decoded; either encoded):
//  - kArray (older vLLM, msgspec array_like with tag): each event is an array whose first item is
//    the type name and the rest are the fields in declaration order; trailing fields left at
//    their default may be omitted.
//  - kMap (current vLLM): each event is a map with a "type" key and the fields by name.
//  The batch itself is an array [ts, events, data_parallel_rank] (the rank may be omitted or nil)
//  in both. A block hash is an integer (older vLLM, 64-bit, possibly negative) or bytes (current
//  vLLM: a digest); both become a 64-bit EngineHash (an integer's bits; the first 8 bytes of a
//  digest, big-endian, mixed with the rest when it is longer).
//
// Decode never throws and never trusts the input: anything not an EventBatch gives false and a
// message saying what was wrong (the position of the event and the field). Unknown event types
// are skipped and counted, as a newer engine may add some.
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace tidegate::kvevents {

using EngineHash = uint64_t;

struct BlockStored {
  std::vector<EngineHash> block_hashes;
  std::optional<EngineHash> parent_block_hash;
  std::vector<uint32_t> token_ids;
  int64_t block_size = 0;
  std::optional<int64_t> lora_id;
  std::string medium;  // "" = not sent (GPU)
  std::string lora_name;
};

struct BlockRemoved {
  std::vector<EngineHash> block_hashes;
  std::string medium;
};

struct AllBlocksCleared {};

using Event = std::variant<BlockStored, BlockRemoved, AllBlocksCleared>;

struct EventBatch {
  double ts = 0;  // seconds since the epoch
  std::vector<Event> events;
  std::optional<int64_t> data_parallel_rank;
  size_t unknown_events = 0;  // decoded only: events of a type this build does not know
};

enum class Encoding { kArray, kMap };
// "array" | "map"; false for anything else.
bool ParseEncoding(std::string_view s, Encoding* out);

// kMap sends block hashes as 8-byte big-endian bytes (as current vLLM sends digests), kArray as
// integers (as older vLLM did), so each encoding exercises one of the decoder's hash forms.
std::string Encode(const EventBatch& batch, Encoding encoding);
bool Decode(std::string_view bytes, EventBatch* out, std::string* error);

// The big-endian 8-byte sequence number frame; false unless exactly 8 bytes.
bool DecodeSeq(std::string_view frame, int64_t* seq);
std::string EncodeSeq(int64_t seq);

}  // namespace tidegate::kvevents
