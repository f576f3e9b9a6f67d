#include "cli/flags.h"

#include <gtest/gtest.h>

namespace tidegate::cli {
namespace {

struct Fixture {
  FlagSet flags{"tidegate test", "a test command"};
  std::string name;
  bool verbose = false;
  Fixture() {
    flags.Add("name", "NAME", "a name", "x", [this](const std::string& v) -> std::string {
      if (v == "bad") return "names cannot be bad";
      name = v;
      return {};
    });
    flags.AddSwitch("verbose", "be loud", [this] { verbose = true; });
  }
};

TEST(FlagSet, ParsesBothForms) {
  Fixture f;
  EXPECT_FALSE(f.flags.Parse({"--name", "a", "--verbose", "pos"}));
  EXPECT_EQ(f.name, "a");
  EXPECT_TRUE(f.verbose);
  ASSERT_EQ(f.flags.positional().size(), 1u);
  EXPECT_TRUE(f.flags.WasSet("name"));
  Fixture g;
  EXPECT_FALSE(g.flags.Parse({"--name=b"}));
  EXPECT_EQ(g.name, "b");
  EXPECT_FALSE(g.verbose);
}

TEST(FlagSet, ErrorsNameTheFlag) {
  Fixture f;
  auto err = f.flags.Parse({"--nope"});
  ASSERT_TRUE(err);
  EXPECT_NE(err->find("--nope"), std::string::npos);
  Fixture g;
  err = g.flags.Parse({"--name"});
  ASSERT_TRUE(err);
  EXPECT_NE(err->find("needs a value"), std::string::npos);
  Fixture h;
  err = h.flags.Parse({"--name", "bad"});
  ASSERT_TRUE(err);
  EXPECT_NE(err->find("names cannot be bad"), std::string::npos);
}

TEST(FlagSet, UsageListsEveryFlagWithDefault) {
  Fixture f;
  std::string usage = f.flags.Usage();
  EXPECT_NE(usage.find("--name NAME"), std::string::npos);
  EXPECT_NE(usage.find("(default: x)"), std::string::npos);
  EXPECT_NE(usage.find("--verbose"), std::string::npos);
  EXPECT_NE(usage.find("--help"), std::string::npos);
}

}  // namespace
}  // namespace tidegate::cli

namespace tidegate::cli {
namespace {

TEST(FlagHelpers, StrictNumbersAndLists) {
  long long i = 0;
  EXPECT_TRUE(ParseIntIn("42", 0, 100, &i));
  EXPECT_EQ(i, 42);
  EXPECT_FALSE(ParseIntIn("42x", 0, 100, &i));
  EXPECT_FALSE(ParseIntIn("101", 0, 100, &i));
  double d = 0;
  EXPECT_TRUE(ParseDoubleIn("0.5", 0, 1, &d));
  EXPECT_EQ(d, 0.5);
  EXPECT_FALSE(ParseDoubleIn("nan", 0, 1, &d));
  EXPECT_FALSE(ParseDoubleIn("", 0, 1, &d));
  EXPECT_EQ(SplitList("a,,b,"), (std::vector<std::string>{"a", "b"}));
}

TEST(FlagHelpers, TypedSettersAndParseCommandLine) {
  FlagSet flags("tidegate t", "test");
  int n = 0;
  double f = 0;
  std::chrono::milliseconds dur{0};
  std::string level = "info";
  flags.Add("n", "N", "", "", IntSetter(&n, 1, 9));
  flags.Add("f", "F", "", "", DoubleSetter(&f, 0, 1));
  flags.Add("d", "DUR", "", "", DurationSetter(&dur));
  flags.Add("log-level", "L", "", "", LogLevelSetter(&level));
  EXPECT_EQ(ParseCommandLine(flags, {"--n", "3", "--f=0.25", "--d", "250ms", "--log-level=warn"}),
            std::nullopt);
  EXPECT_EQ(n, 3);
  EXPECT_EQ(f, 0.25);
  EXPECT_EQ(dur.count(), 250);
  EXPECT_EQ(level, "warn");
  FlagSet bad("tidegate t", "test");
  bad.Add("n", "N", "", "", IntSetter(&n, 1, 9));
  EXPECT_EQ(ParseCommandLine(bad, {"--n", "10"}), 2);
  FlagSet extra("tidegate t", "test");
  EXPECT_EQ(ParseCommandLine(extra, {"stray"}), 2);
}

}  // namespace
}  // namespace tidegate::cli
