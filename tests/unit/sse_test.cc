#include "gateway/sse.h"

#include <gtest/gtest.h>

#include <string>

namespace tidegate::gateway {
namespace {

const std::string kStream =
    "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n"
    "data: {\"choices\":[{\"delta\":{\"content\":\"b\"}}]}\r\n\r\n"
    ": a comment\n\n"
    "event: x\ndata:{\"c\":1}\n\n"
    "data: [DONE]\n\n";

TEST(SseScanner, CountsDataEventsButNotDone) {
  SseScanner s;
  EXPECT_TRUE(s.AtEventBoundary());  // nothing yet
  s.Feed(kStream);
  EXPECT_EQ(s.DataEvents(), 3);
  EXPECT_TRUE(s.AtEventBoundary());
}

TEST(SseScanner, AnySplitGivesTheSameAnswer) {
  SseScanner whole;
  whole.Feed(kStream);
  for (size_t a = 0; a <= kStream.size(); ++a) {
    for (size_t b = a; b <= kStream.size(); b += 7) {
      SseScanner s;
      s.Feed(std::string_view(kStream).substr(0, a));
      s.Feed(std::string_view(kStream).substr(a, b - a));
      s.Feed(std::string_view(kStream).substr(b));
      ASSERT_EQ(s.DataEvents(), whole.DataEvents()) << a << "," << b;
      ASSERT_EQ(s.TrailingNewlines(), whole.TrailingNewlines()) << a << "," << b;
    }
  }
}

TEST(SseScanner, TellsAPartialEventFromABoundary) {
  SseScanner s;
  s.Feed("data: {\"a\":1}\n\ndata: {\"partial");
  EXPECT_FALSE(s.AtEventBoundary());
  EXPECT_EQ(s.TrailingNewlines(), 0);
  s.Feed("\n");
  EXPECT_EQ(s.TrailingNewlines(), 1);
  EXPECT_EQ(s.DataEvents(), 2);  // the partial line counts once it ends
  s.Feed("\r\n");
  EXPECT_TRUE(s.AtEventBoundary());
}

TEST(SseScanner, LongLinesTakeNoMemoryAndStillCount) {
  SseScanner s;
  s.Feed("data: ");
  for (int i = 0; i < 1000; ++i) s.Feed(std::string(1000, 'x'));
  s.Feed("\n\n");
  EXPECT_EQ(s.DataEvents(), 1);
}

}  // namespace
}  // namespace tidegate::gateway
