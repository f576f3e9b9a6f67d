// libFuzzer target: the RESP2 reply parser of the Redis Streams queue (queue/resp.h) and the
// shaping of stream replies into messages (queue/redis_queue.h). Build with `make fuzz`; run e.g.
//   build-fuzz/resp_fuzz -max_total_time=60 fuzz/corpus/resp
// The first byte picks a split point; the rest is the bytes a server sent. Properties checked
// (abort on violation): no crash or sanitizer report; the replies read in one piece equal those
// read when the bytes arrive in two pieces (and the error, if any, is reported in both); every
// reply survives encode → parse unchanged; a stream reply that is accepted yields messages whose
// ack ids parse back to their entry ids and delivery counts.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "queue/redis_queue.h"
#include "queue/resp.h"

namespace {

using namespace tidegate::queue;

void Check(bool ok) {
  if (!ok) std::abort();
}

// Every reply in `in` read in one piece, then whether the reader failed.
std::vector<RespReply> ReadAll(std::string_view in, size_t split, bool* failed) {
  RespReader reader;
  std::vector<RespReply> out;
  *failed = false;
  auto drain = [&] {
    RespReply r;
    std::string err;
    for (;;) {
      RespReader::Result res = reader.Next(&r, &err);
      if (res == RespReader::Result::kOk) {
        out.push_back(r);
        continue;
      }
      if (res == RespReader::Result::kError) {
        Check(!err.empty());
        *failed = true;
      }
      return;
    }
  };
  reader.Feed(in.substr(0, split));
  drain();
  if (*failed) return out;
  reader.Feed(in.substr(split));
  drain();
  return out;
}

void CheckShapes(const RespReply& r) {
  std::vector<Message> msgs;
  std::string err, cursor;
  if (ParseRedisReadReply(r, &msgs, &err)) {
    for (const Message& m : msgs) {
      std::string id;
      int64_t n = 0;
      Check(ParseRedisAckId(m.ack_id, &id, &n) && id == m.id && n == m.delivery_attempt);
    }
  }
  msgs.clear();
  int64_t dead = 0;
  if (ParseRedisClaimReply(r, &cursor, &msgs, &dead, &err)) {
    Check(ValidRedisEntryId(cursor));
    for (const Message& m : msgs) {
      std::string id;
      int64_t n = 0;
      Check(ParseRedisAckId(m.ack_id, &id, &n) && id == m.id);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  const size_t split = in.empty() ? 0 : data[0] % (in.size() + 1);
  bool whole_failed = false, split_failed = false;
  std::vector<RespReply> whole = ReadAll(in, in.size(), &whole_failed);
  std::vector<RespReply> parts = ReadAll(in, split, &split_failed);
  Check(whole_failed == split_failed);
  Check(whole == parts);
  for (const RespReply& r : whole) {
    std::string wire = EncodeReply(r);
    RespReply again;
    size_t used = 0;
    std::string err;
    Check(ParseRespReply(wire, &again, &used, &err) == RespReader::Result::kOk);
    Check(used == wire.size() && again == r);
    CheckShapes(r);
  }
  return 0;
}
