// Replays the RESP fuzz corpus (fuzz/corpus/resp) as an ordinary test, so every input the fuzzer
// ever kept keeps passing in CI: the same properties as fuzz/resp_fuzz.cc, checked with gtest
// (one piece and every two-piece split agree; encode → parse is the identity; accepted stream
// replies give ack ids that parse back).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "queue/redis_queue.h"
#include "queue/resp.h"

namespace tidegate::queue {
namespace {

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
        EXPECT_FALSE(err.empty());
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

TEST(RespFuzzCorpus, EverySplitAgreesAndRoundTrips) {
  const auto dir = std::filesystem::path(__FILE__).parent_path().parent_path().parent_path() /
                   "fuzz" / "corpus" / "resp";
  ASSERT_TRUE(std::filesystem::is_directory(dir)) << dir;
  int files = 0, replies = 0, failed_inputs = 0, messages = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::ifstream f(entry.path(), std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    const std::string data = ss.str();
    ++files;
    if (data.empty()) continue;
    const std::string_view in = std::string_view(data).substr(1);
    bool whole_failed = false;
    const std::vector<RespReply> whole = ReadAll(in, in.size(), &whole_failed);
    failed_inputs += whole_failed;
    for (size_t a = 0; a <= in.size(); ++a) {
      bool split_failed = false;
      ASSERT_EQ(ReadAll(in, a, &split_failed), whole) << entry.path() << " split at " << a;
      ASSERT_EQ(split_failed, whole_failed) << entry.path() << " split at " << a;
    }
    for (const RespReply& r : whole) {
      ++replies;
      const std::string wire = EncodeReply(r);
      RespReply again;
      size_t used = 0;
      std::string err;
      ASSERT_EQ(ParseRespReply(wire, &again, &used, &err), RespReader::Result::kOk) << err;
      EXPECT_EQ(used, wire.size());
      EXPECT_EQ(again, r) << entry.path();
      std::vector<Message> msgs;
      if (ParseRedisReadReply(r, &msgs, &err)) {
        for (const Message& m : msgs) {
          std::string id;
          int64_t n = 0;
          ++messages;
          ASSERT_TRUE(ParseRedisAckId(m.ack_id, &id, &n)) << m.ack_id;
          EXPECT_EQ(id, m.id);
          EXPECT_EQ(n, m.delivery_attempt);
        }
      }
    }
  }
  EXPECT_GE(files, 5);
  EXPECT_GE(replies, 5);
  EXPECT_GE(failed_inputs, 1);  // the corpus keeps malformed inputs too
  EXPECT_GE(messages, 1);
}

}  // namespace
}  // namespace tidegate::queue
