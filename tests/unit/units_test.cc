#include "common/units.h"

#include <gtest/gtest.h>

namespace tidegate {
namespace {

TEST(ParseDuration, AcceptsUnits) {
  EXPECT_EQ(ParseDuration("250ms")->count(), 250);
  EXPECT_EQ(ParseDuration("3s")->count(), 3000);
  EXPECT_EQ(ParseDuration("1.5s")->count(), 1500);
  EXPECT_EQ(ParseDuration("2m")->count(), 120000);
  EXPECT_EQ(ParseDuration("1h")->count(), 3600000);
  EXPECT_EQ(ParseDuration("7")->count(), 7000);  // bare number = seconds
}

TEST(ParseDuration, RejectsGarbage) {
  EXPECT_FALSE(ParseDuration(""));
  EXPECT_FALSE(ParseDuration("s"));
  EXPECT_FALSE(ParseDuration("3 parsecs"));
  EXPECT_FALSE(ParseDuration("-1s"));
  EXPECT_FALSE(ParseDuration("1.2.3s"));
}

TEST(ParseBytes, AcceptsSuffixes) {
  EXPECT_EQ(*ParseBytes("1048576"), 1048576u);
  EXPECT_EQ(*ParseBytes("512k"), 512u * 1024);
  EXPECT_EQ(*ParseBytes("16MiB"), 16u * 1024 * 1024);
  EXPECT_EQ(*ParseBytes("1G"), 1024ull * 1024 * 1024);
  EXPECT_FALSE(ParseBytes("12 apples"));
  EXPECT_FALSE(ParseBytes("MiB"));
}

TEST(FormatDuration, RoundTrips) {
  for (const char* s : {"250ms", "3s", "2m", "1h"}) EXPECT_EQ(FormatDuration(*ParseDuration(s)), s);
}

}  // namespace
}  // namespace tidegate
