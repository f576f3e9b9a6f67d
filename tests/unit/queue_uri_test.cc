// queue/uri.h: the URI pieces every queue backend shares.
#include <gtest/gtest.h>

#include "queue/uri.h"

namespace tidegate::queue {
namespace {

TEST(QueueUri, DottedPairsArePositiveIntegers) {
  uint64_t a = 0, b = 0;
  ASSERT_TRUE(ParseDottedPair("12.3", &a, &b));
  EXPECT_EQ(a, 12u);
  EXPECT_EQ(b, 3u);
  for (const char* bad :
       {"", ".", "1.", ".1", "0.1", "1.0", "1.2.3", "a.1", "1.b", "-1.2", "18446744073709551616.1"})
    EXPECT_FALSE(ParseDottedPair(bad, &a, &b)) << bad;
}

TEST(QueueUri, DeadLetterRules) {
  int attempts = 0;
  EXPECT_EQ(CheckDeadLetter(false, "", "q", "queue", &attempts), "");
  EXPECT_EQ(attempts, 0);  // no dead-lettering: redelivered indefinitely
  EXPECT_EQ(CheckDeadLetter(false, "dlq", "q", "queue", &attempts), "");
  EXPECT_EQ(attempts, kDefaultDeadLetterAttempts);
  attempts = 3;
  EXPECT_EQ(CheckDeadLetter(true, "dlq", "q", "stream", &attempts), "");
  EXPECT_EQ(attempts, 3);
  EXPECT_EQ(CheckDeadLetter(true, "", "q", "stream", &attempts),
            "max_attempts needs dead_letter=STREAM (without a dead-letter stream messages are "
            "redelivered indefinitely, never dropped)");
  EXPECT_EQ(CheckDeadLetter(false, "q", "q", "subject", &attempts),
            "dead_letter must differ from the subject");
}

}  // namespace
}  // namespace tidegate::queue
