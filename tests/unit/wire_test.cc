#include "gateway/wire.h"

#include <gtest/gtest.h>

#include <set>

namespace tidegate::gateway {
namespace {

TEST(NewRequestId, UuidV4Shape) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    std::string id = NewRequestId();
    ASSERT_EQ(id.size(), 36u);
    EXPECT_EQ(id[8], '-');
    EXPECT_EQ(id[13], '-');
    EXPECT_EQ(id[14], '4');  // version
    EXPECT_EQ(id[18], '-');
    EXPECT_TRUE(id[19] == '8' || id[19] == '9' || id[19] == 'a' || id[19] == 'b');  // variant
    EXPECT_EQ(id[23], '-');
    for (char c : id) EXPECT_TRUE(c == '-' || isxdigit(static_cast<unsigned char>(c))) << id;
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 1000u);
}

}  // namespace
}  // namespace tidegate::gateway
