#include <gtest/gtest.h>

#include <map>

#include "auth/keys.h"

namespace tidegate::auth {
namespace {

const std::map<std::string, std::string> kEnv = {
    {"A_KEY", "aaaaaaaaaaaaaaaaaaaa"}, {"B_KEY", "bbbbbbbbbbbbbbbbbbbb"}, {"SHORT", "tooshort"}};
const char* FakeEnv(const char* name) {
  auto it = kEnv.find(name);
  return it == kEnv.end() ? nullptr : it->second.c_str();
}

std::shared_ptr<KeyTable> Load(const std::string& yaml, std::string* err = nullptr) {
  std::shared_ptr<KeyTable> t;
  std::string e = ParseKeyFile(yaml, &t, FakeEnv);
  if (err) *err = e;
  return t;
}

constexpr Nanos kT0{1'000'000'000};

TEST(AuthKeys, MissingWrongAndGoodKeys) {
  auto t = Load("keys:\n  - {tenant: team-a, key_env: A_KEY}\n");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->Check("", "standard", 0, kT0).verdict, Verdict::kMissing);
  EXPECT_EQ(t->Check("Basic abc", "standard", 0, kT0).verdict, Verdict::kMissing);
  auto wrong = t->Check("Bearer aaaaaaaaaaaaaaaaaaab", "standard", 0, kT0);
  EXPECT_EQ(wrong.verdict, Verdict::kInvalid);
  EXPECT_EQ(VerdictStatus(wrong.verdict), 401);
  EXPECT_EQ(wrong.message.find("aaaa"), std::string::npos) << "a key never appears in a message";
  auto ok = t->Check("bearer  aaaaaaaaaaaaaaaaaaaa ", "standard", 0, kT0);
  ASSERT_EQ(ok.verdict, Verdict::kOk);
  EXPECT_EQ(ok.tenant->config().tenant, "team-a");
}

TEST(AuthKeys, ObjectivesDefaultToNothingAboveStandard) {
  auto t = Load(
      "keys:\n  - {tenant: a, key_env: A_KEY}\n"
      "  - {tenant: b, key_env: B_KEY, objectives: [premium]}\n");
  ASSERT_TRUE(t);
  const std::string a = "Bearer aaaaaaaaaaaaaaaaaaaa", b = "Bearer bbbbbbbbbbbbbbbbbbbb";
  EXPECT_EQ(t->Check(a, "standard", 0, kT0).verdict, Verdict::kOk);
  EXPECT_EQ(t->Check(a, "sheddable", -1, kT0).verdict, Verdict::kOk);
  auto denied = t->Check(a, "premium", 10, kT0);
  EXPECT_EQ(denied.verdict, Verdict::kObjectiveDenied);
  EXPECT_EQ(VerdictStatus(denied.verdict), 403);
  EXPECT_NE(denied.message.find("tenant 'a' may not use objective 'premium'"), std::string::npos);
  EXPECT_EQ(t->Check(b, "premium", 10, kT0).verdict, Verdict::kOk);
  EXPECT_EQ(t->Check(b, "standard", 0, kT0).verdict, Verdict::kObjectiveDenied);  // its list only
  EXPECT_EQ(t->Check(a, "premium", 10, kT0, /*check_objective=*/false).verdict, Verdict::kOk);
}

TEST(AuthKeys, RateAndConcurrencyLimits) {
  auto t = Load(
      "keys:\n  - {tenant: a, key_env: A_KEY, rate: 2, burst: 2}\n"
      "  - {tenant: b, key_env: B_KEY, concurrency: 1}\n");
  ASSERT_TRUE(t);
  const std::string a = "Bearer aaaaaaaaaaaaaaaaaaaa", b = "Bearer bbbbbbbbbbbbbbbbbbbb";
  EXPECT_EQ(t->Check(a, "standard", 0, kT0).verdict, Verdict::kOk);
  EXPECT_EQ(t->Check(a, "standard", 0, kT0).verdict, Verdict::kOk);
  auto over = t->Check(a, "standard", 0, kT0);
  EXPECT_EQ(over.verdict, Verdict::kRateLimited);
  EXPECT_EQ(over.retry_after_s, 1);
  // Half a second later one token has come back (2/s).
  EXPECT_EQ(t->Check(a, "standard", 0, kT0 + std::chrono::milliseconds(500)).verdict, Verdict::kOk);

  auto first = t->Check(b, "standard", 0, kT0);
  ASSERT_EQ(first.verdict, Verdict::kOk);
  EXPECT_EQ(t->Check(b, "standard", 0, kT0).verdict, Verdict::kConcurrencyLimited);
  KeyTable::Release(first);
  auto again = t->Check(b, "standard", 0, kT0);
  EXPECT_EQ(again.verdict, Verdict::kOk);
  KeyTable::Release(again);
  EXPECT_EQ(again.tenant->in_flight.load(), 0);
}

TEST(AuthKeys, FileErrorsNameTheEntryNotTheKey) {
  std::string err;
  EXPECT_FALSE(Load("nope: 1\n", &err));
  EXPECT_NE(err.find("'keys:'"), std::string::npos);
  EXPECT_FALSE(Load("keys:\n  - {tenant: a, key_env: NOT_SET}\n", &err));
  EXPECT_EQ(err, "keys[1] (tenant 'a'): environment variable NOT_SET is not set");
  EXPECT_FALSE(Load("keys:\n  - {tenant: a, key_env: SHORT}\n", &err));
  EXPECT_NE(err.find("shorter than 16"), std::string::npos);
  EXPECT_EQ(err.find("tooshort"), std::string::npos);
  EXPECT_FALSE(
      Load("keys:\n  - {tenant: a, key_env: A_KEY}\n  - {tenant: b, key_env: A_KEY}\n", &err));
  EXPECT_NE(err.find("keys[2] (tenant 'b'): the same key is given twice"), std::string::npos);
  EXPECT_FALSE(Load("keys:\n  - {tenant: a, key_env: A_KEY, colour: red}\n", &err));
  EXPECT_NE(err.find("unknown field 'colour'"), std::string::npos);
  EXPECT_FALSE(Load("keys: []\n", &err));
}

}  // namespace
}  // namespace tidegate::auth
