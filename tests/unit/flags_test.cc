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
