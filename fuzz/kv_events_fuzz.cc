// libFuzzer target: the KV event decoder (kvevents/events.h Decode) and the precise block index
// it feeds (sched/kv_block_index.h). Build with `make fuzz`; run e.g.
//   build-fuzz/kv_events_fuzz -max_total_time=60 fuzz/corpus/kv_events
// Properties checked (abort on violation): no crash, hang or sanitizer report; a rejection comes
// with a message and leaves no events; an accepted batch, encoded again in either encoding,
// decodes to the same batch; applying it to an index (as endpoint 0) keeps the index within its
// cap and makes every stored-and-not-removed block's hash listed, every cleared endpoint empty.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <variant>

#include "kvevents/events.h"
#include "sched/kv_block_index.h"

namespace {

using namespace tidegate;

void Check(bool ok) {
  if (!ok) std::abort();
}

bool Same(const kvevents::EventBatch& a, const kvevents::EventBatch& b) {
  if (!(a.ts == b.ts || (std::isnan(a.ts) && std::isnan(b.ts)))) return false;
  if (a.data_parallel_rank != b.data_parallel_rank || a.events.size() != b.events.size())
    return false;
  for (size_t i = 0; i < a.events.size(); ++i) {
    if (a.events[i].index() != b.events[i].index()) return false;
    if (const auto* x = std::get_if<kvevents::BlockStored>(&a.events[i])) {
      const auto& y = std::get<kvevents::BlockStored>(b.events[i]);
      if (x->block_hashes != y.block_hashes || x->parent_block_hash != y.parent_block_hash ||
          x->token_ids != y.token_ids || x->block_size != y.block_size || x->lora_id != y.lora_id ||
          x->medium != y.medium || x->lora_name != y.lora_name)
        return false;
    } else if (const auto* x = std::get_if<kvevents::BlockRemoved>(&a.events[i])) {
      const auto& y = std::get<kvevents::BlockRemoved>(b.events[i]);
      if (x->block_hashes != y.block_hashes || x->medium != y.medium) return false;
    }
  }
  return true;
}

}  // namespace

// The corpus replay test includes this file and calls the body under its own name.
#ifndef TIDEGATE_FUZZ_ENTRY
#define TIDEGATE_FUZZ_ENTRY LLVMFuzzerTestOneInput
#endif
extern "C" int TIDEGATE_FUZZ_ENTRY(const uint8_t* data, size_t size) {
  if (size > 1 << 16) return 0;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  kvevents::EventBatch batch;
  std::string error;
  if (!kvevents::Decode(bytes, &batch, &error)) {
    Check(!error.empty());
    Check(batch.events.empty());
    return 0;
  }
  for (kvevents::Encoding enc : {kvevents::Encoding::kArray, kvevents::Encoding::kMap}) {
    kvevents::EventBatch again;
    std::string err2;
    Check(kvevents::Decode(kvevents::Encode(batch, enc), &again, &err2));
    Check(again.unknown_events == 0);
    Check(Same(batch, again));
  }
  sched::KvBlockIndex index(/*max_blocks_per_endpoint=*/64);
  for (const kvevents::Event& ev : batch.events) {
    if (const auto* s = std::get_if<kvevents::BlockStored>(&ev)) {
      auto r = index.Store(0, s->block_hashes, s->parent_block_hash, s->token_ids,
                           static_cast<size_t>(s->block_size), s->lora_name, s->medium);
      Check(r.stored + r.orphaned + r.refused <= s->block_hashes.size());
    } else if (const auto* rm = std::get_if<kvevents::BlockRemoved>(&ev)) {
      index.Remove(0, rm->block_hashes, rm->medium);
    } else {
      index.Clear(0);
      Check(index.Blocks(0) == 0);
    }
    Check(index.Blocks(0) <= 64);
    Check(index.EngineHashes(0).size() == index.Blocks(0));
  }
  return 0;
}
