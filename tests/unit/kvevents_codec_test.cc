// The KV event codec (kvevents/events.h) and the sequence decision (kvevents/sequence.h).
#include <gtest/gtest.h>

#include "kvevents/config.h"
#include "kvevents/events.h"
#include "kvevents/sequence.h"

namespace tidegate::kvevents {
namespace {

using namespace std::string_literals;

EventBatch Sample() {
  EventBatch b;
  b.ts = 1733000000.25;
  BlockStored s;
  s.block_hashes = {0x0102030405060708ULL, 0xfffffffffffffff0ULL};
  s.parent_block_hash = 42;
  for (uint32_t i = 0; i < 32; ++i) s.token_ids.push_back(128000 + i);
  s.block_size = 16;
  s.lora_name = "sql-adapter";
  s.lora_id = 3;
  s.medium = "GPU";
  b.events.emplace_back(s);
  BlockStored root;  // a prompt's first block: no parent
  root.block_hashes = {7};
  root.token_ids.assign(16, 9);
  root.block_size = 16;
  b.events.emplace_back(root);
  b.events.emplace_back(BlockRemoved{{0x0102030405060708ULL}, "CPU"});
  b.events.emplace_back(AllBlocksCleared{});
  b.data_parallel_rank = 1;
  return b;
}

void ExpectSame(const EventBatch& a, const EventBatch& b) {
  EXPECT_DOUBLE_EQ(a.ts, b.ts);
  ASSERT_EQ(a.events.size(), b.events.size());
  EXPECT_EQ(a.data_parallel_rank, b.data_parallel_rank);
  for (size_t i = 0; i < a.events.size(); ++i) {
    ASSERT_EQ(a.events[i].index(), b.events[i].index()) << i;
    if (const auto* x = std::get_if<BlockStored>(&a.events[i])) {
      const auto& y = std::get<BlockStored>(b.events[i]);
      EXPECT_EQ(x->block_hashes, y.block_hashes);
      EXPECT_EQ(x->parent_block_hash, y.parent_block_hash);
      EXPECT_EQ(x->token_ids, y.token_ids);
      EXPECT_EQ(x->block_size, y.block_size);
      EXPECT_EQ(x->lora_id, y.lora_id);
      EXPECT_EQ(x->lora_name, y.lora_name);
      EXPECT_EQ(x->medium, y.medium);
    } else if (const auto* x = std::get_if<BlockRemoved>(&a.events[i])) {
      const auto& y = std::get<BlockRemoved>(b.events[i]);
      EXPECT_EQ(x->block_hashes, y.block_hashes);
      EXPECT_EQ(x->medium, y.medium);
    }
  }
}

TEST(KvEventsCodec, BothEncodingsRoundTrip) {
  for (Encoding enc : {Encoding::kArray, Encoding::kMap}) {
    const EventBatch b = Sample();
    const std::string bytes = Encode(b, enc);
    EventBatch out;
    std::string err;
    ASSERT_TRUE(Decode(bytes, &out, &err)) << err;
    ExpectSame(b, out);
    EXPECT_EQ(out.unknown_events, 0u);
  }
  // The two encodings differ on the wire (tagged arrays vs maps with "type").
  EXPECT_NE(Encode(Sample(), Encoding::kArray), Encode(Sample(), Encoding::kMap));
  EXPECT_NE(Encode(Sample(), Encoding::kMap).find("type"), std::string::npos);
  EXPECT_EQ(Encode(Sample(), Encoding::kArray).find("type"), std::string::npos);
}

// Hand-built msgpack, byte by byte, in the shapes older and newer engines send: an array event
// with trailing default fields omitted, negative integer hashes, 32-byte digests, no rank.
TEST(KvEventsCodec, ReadsShortArraysDigestsAndNegativeHashes) {
  std::string m;
  m += '\x92';  // [ts, events] (rank omitted)
  m += '\x05';  // ts = 5 (an int)
  m += '\x92';  // two events
  // ["BlockStored", [-1], nil, [1,2], 2]  (lora_id, medium, lora_name omitted)
  m += '\x95';
  m += "\xab"
       "BlockStored";
  m += "\x91\xff";  // [-1]
  m += '\xc0';      // nil parent
  m += "\x92\x01\x02";
  m += '\x02';
  // {"type":"BlockRemoved","block_hashes":[<32-byte bin>]}
  m += '\x82';
  m += "\xa4"
       "type";
  m += "\xac"
       "BlockRemoved";
  m += "\xac"
       "block_hashes";
  m += "\x91\xc4\x20";
  for (int i = 0; i < 32; ++i) m += static_cast<char>(i);
  EventBatch b;
  std::string err;
  ASSERT_TRUE(Decode(m, &b, &err)) << err;
  EXPECT_DOUBLE_EQ(b.ts, 5);
  EXPECT_FALSE(b.data_parallel_rank);
  ASSERT_EQ(b.events.size(), 2u);
  const auto& s = std::get<BlockStored>(b.events[0]);
  EXPECT_EQ(s.block_hashes, std::vector<EngineHash>{~uint64_t{0}});
  EXPECT_FALSE(s.parent_block_hash);
  EXPECT_EQ(s.token_ids, (std::vector<uint32_t>{1, 2}));
  EXPECT_EQ(s.block_size, 2);
  EXPECT_TRUE(s.medium.empty());
  const auto& r = std::get<BlockRemoved>(b.events[1]);
  ASSERT_EQ(r.block_hashes.size(), 1u);
  // The first 8 bytes big-endian, with the rest folded in: not just the prefix.
  EXPECT_NE(r.block_hashes[0], 0x0001020304050607ULL);
  // The same 32 bytes always give the same hash.
  EventBatch again;
  ASSERT_TRUE(Decode(m, &again, &err));
  EXPECT_EQ(std::get<BlockRemoved>(again.events[1]).block_hashes, r.block_hashes);
}

TEST(KvEventsCodec, SkipsUnknownEventTypes) {
  std::string m = "\x93\x01\x92";
  m += "\x91\xa9"
       "NewThingy";  // ["NewThingy"]
  m += "\x81\xa4"
       "type"
       "\xb0"
       "AllBlocksCleared";  // {"type":"AllBlocksCleared"}
  m += '\xc0';
  EventBatch b;
  std::string err;
  ASSERT_TRUE(Decode(m, &b, &err)) << err;
  EXPECT_EQ(b.unknown_events, 1u);
  ASSERT_EQ(b.events.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<AllBlocksCleared>(b.events[0]));
}

TEST(KvEventsCodec, RefusesWhatIsNotABatchAndSaysWhy) {
  struct Case {
    std::string bytes, want;
  };
  const std::vector<Case> cases = {
      {"", "not msgpack"},
      {"\x01", "not an array"},
      {"\x92\xa1x\x90", "ts is not a number"},
      {"\x92\x01\x01", "events are not an array"},
      {"\x92\x01\x91\x01", "event 0: an event is neither an array nor a map"},
      {"\x92\x01\x91\x91\x01", "does not start with its type name"},
      {"\x92\x01\x91\x95\xab"
       "BlockStored"
       "\x01\xc0\x90\x10"s,
       "block_hashes is not an array"},
      {"\x92\x01\x91\x95\xab"
       "BlockStored"
       "\x90\xc0\x91\xa1x\x10"s,
       "token_ids[0] is not a token id"},
      {"\x92\x01\x91\x95\xab"
       "BlockStored"
       "\x90\xc0\x90\x00"s,
       "block_size is not a positive int"},
      {"\x92\x01\x91\x93\xab"
       "BlockStored"
       "\x90\xc0"s,
       "fewer than 4 fields"},
      {"\x92\x01\x91\x81\xa1t\x01", "has no \"type\""},
      {"\x92\x01\x90\x01"s, "trailing bytes"},
  };
  for (const auto& c : cases) {
    EventBatch b;
    std::string err;
    EXPECT_FALSE(Decode(c.bytes, &b, &err)) << c.want;
    EXPECT_NE(err.find(c.want), std::string::npos) << "got: " << err << " want: " << c.want;
    EXPECT_TRUE(b.events.empty());
  }
}

TEST(KvEventsCodec, SequenceFrames) {
  int64_t seq = 0;
  EXPECT_EQ(EncodeSeq(1), "\0\0\0\0\0\0\0\x01"s);
  ASSERT_TRUE(DecodeSeq(EncodeSeq(-1), &seq));
  EXPECT_EQ(seq, -1);
  ASSERT_TRUE(DecodeSeq(EncodeSeq(0x0102030405060708LL), &seq));
  EXPECT_EQ(seq, 0x0102030405060708LL);
  EXPECT_FALSE(DecodeSeq("1234567", &seq));
}

TEST(KvEventsSequence, AppliesInOrderAndNamesGapsDuplicatesAndRestarts) {
  SeqTracker t;
  EXPECT_EQ(t.Check(17), SeqVerdict::kApply);  // the first one seen: anything
  t.Applied(17);
  EXPECT_EQ(t.Check(18), SeqVerdict::kApply);
  t.Applied(18);
  EXPECT_EQ(t.Check(21), SeqVerdict::kGap);
  EXPECT_EQ(t.Check(3), SeqVerdict::kRestart);  // no replay ran: going back is a new publisher
  t.ReplayFrom(19);
  t.Applied(19);
  t.Applied(20);
  t.Applied(21);
  EXPECT_EQ(t.Check(19), SeqVerdict::kDuplicate);  // the live copy of a replayed batch
  EXPECT_EQ(t.Check(21), SeqVerdict::kDuplicate);
  EXPECT_EQ(t.Check(0), SeqVerdict::kRestart);
  EXPECT_EQ(t.Check(22), SeqVerdict::kApply);
  t.Reset();
  EXPECT_EQ(t.Check(0), SeqVerdict::kApply);
  // After a replay, once a live batch past it is applied, going back is a restart again.
  t.ReplayFrom(0);
  t.Applied(0);
  t.Applied(1);
  EXPECT_EQ(t.Check(0), SeqVerdict::kDuplicate);
  t.LiveApplied(2);
  EXPECT_EQ(t.Check(0), SeqVerdict::kRestart);
  // No overflow at the top of the range.
  t.Applied(INT64_MAX);
  EXPECT_NE(t.Check(INT64_MAX), SeqVerdict::kApply);
  EXPECT_NE(t.Check(INT64_MAX), SeqVerdict::kGap);
}

TEST(KvEventsConfig, ParsesVllmJsonAndRefusesTypos) {
  PublisherConfig c;
  std::string err;
  ASSERT_TRUE(ParsePublisherConfig(
      R"({"enable_kv_cache_events":true,"publisher":"zmq","endpoint":"tcp://*:5557",
          "replay_endpoint":"tcp://*:5558","buffer_steps":500,"hwm":1000,"topic":"kv@x"})",
      &c, &err))
      << err;
  EXPECT_TRUE(c.enabled);
  EXPECT_EQ(c.endpoint, "tcp://*:5557");
  EXPECT_EQ(c.replay_endpoint, "tcp://*:5558");
  EXPECT_EQ(c.buffer_steps, 500);
  EXPECT_EQ(c.topic, "kv@x");
  EXPECT_FALSE(ParsePublisherConfig(R"({"enable_kv_cache_event":true})", &c, &err));
  EXPECT_NE(err.find("unknown key \"enable_kv_cache_event\""), std::string::npos) << err;
  EXPECT_FALSE(ParsePublisherConfig(R"({"publisher":"kafka"})", &c, &err));
  EXPECT_FALSE(ParsePublisherConfig("not json", &c, &err));
  EXPECT_FALSE(ParsePublisherConfig(R"({"buffer_steps":-1})", &c, &err));
  EXPECT_EQ(WithPortOffset("tcp://*:5557", 3, &err), "tcp://*:5560");
  EXPECT_EQ(WithPortOffset("tcp://127.0.0.1:5557", 0, &err), "tcp://127.0.0.1:5557");
  EXPECT_EQ(WithPortOffset("ipc:///tmp/kv", 2, &err), "ipc:///tmp/kv-2");
  EXPECT_EQ(WithPortOffset("tcp://host", 1, &err), "");
  EXPECT_NE(err.find("cannot offset"), std::string::npos);
  EXPECT_EQ(WithPortOffset("tcp://h:65535", 1, &err), "");
}

}  // namespace
}  // namespace tidegate::kvevents
