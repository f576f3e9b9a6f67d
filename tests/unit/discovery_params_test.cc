// discovery/source.h: the Params helpers every source's factory uses, and the built-in
// registrations (spec parsing is in discovery_test.cc).
#include <gtest/gtest.h>

#include <algorithm>

#include "discovery/source.h"

namespace tidegate::discovery {
namespace {

TEST(DiscoveryRegistry, BuiltinsAreRegistered) {
  const auto types = RegisteredSources();
  for (const char* t : {"static", "file", "dns", "kubernetes"})
    EXPECT_NE(std::find(types.begin(), types.end(), t), types.end()) << t;
  std::string error;
  EXPECT_EQ(MakeSource(SourceSpec{"nope", {}}, &error), nullptr);
  EXPECT_EQ(error.rfind("unknown discovery source 'nope'", 0), 0u);
}

TEST(DiscoveryParams, TakesKeysAndReportsLeftovers) {
  Params p(SourceSpec{"t", {{"a", "x"}, {"d", "250ms"}, {"n", "7"}, {"b", "off"}, {"z", "?"}}});
  EXPECT_EQ(p.String("a"), "x");
  EXPECT_EQ(p.String("missing", "dflt"), "dflt");
  double d = 0;
  std::string err;
  ASSERT_TRUE(p.Seconds("d", 1, &d, &err));
  EXPECT_DOUBLE_EQ(d, 0.25);
  long n = 0;
  ASSERT_TRUE(p.Int("n", 0, 1, 10, &n, &err));
  EXPECT_EQ(n, 7);
  bool b = true;
  ASSERT_TRUE(p.Bool("b", true, &b, &err));
  EXPECT_FALSE(b);
  EXPECT_EQ(p.Leftover({"a", "d", "n", "b"}),
            "unknown key 'z' for discovery source 't' (known: "
            "a, d, n, b)");
  EXPECT_EQ(p.String("z"), "?");
  EXPECT_EQ(p.Leftover({}), "");
}

TEST(DiscoveryParams, DurationsIntsAndBools) {
  double d = 0;
  std::string err;
  for (auto [text, want] : {std::pair{"5s", 5.0}, {"2m", 120.0}, {"1h", 3600.0}, {"1.5", 1.5}}) {
    Params p(SourceSpec{"t", {{"d", text}}});
    ASSERT_TRUE(p.Seconds("d", 0, &d, &err)) << text;
    EXPECT_DOUBLE_EQ(d, want) << text;
  }
  for (const char* bad : {"0", "-1s", "soon", "5x", ""}) {
    Params p(SourceSpec{"t", {{"d", bad}}});
    EXPECT_FALSE(p.Seconds("d", 0, &d, &err)) << bad;
    EXPECT_EQ(err, std::string("d: '") + bad +
                       "' is not a positive duration (such as 500ms, 5s "
                       "or 2m)");
  }
  long n = 0;
  Params pi(SourceSpec{"t", {{"n", "11"}}});
  EXPECT_FALSE(pi.Int("n", 0, 1, 10, &n, &err));
  EXPECT_EQ(err, "n: '11' is not an integer from 1 to 10");
  bool b = false;
  Params pb(SourceSpec{"t", {{"b", "perhaps"}}});
  EXPECT_FALSE(pb.Bool("b", false, &b, &err));
  EXPECT_EQ(err, "b: 'perhaps' is not true or false");
  Params none(SourceSpec{"t", {}});
  ASSERT_TRUE(none.Bool("b", true, &b, &err));
  EXPECT_TRUE(b);  // the fallback
}

}  // namespace
}  // namespace tidegate::discovery
