#include "gateway/request.h"

#include <gtest/gtest.h>

#include "wire/errors.h"

namespace tidegate::gateway {
namespace {

TEST(InspectBody, ExtractsModelAndStream) {
  std::string body =
      R"({"model":"llama","stream":true,"messages":[{"role":"user","content":"hi"}]})";
  auto info = InspectBody(body);
  EXPECT_EQ(info.error, "");
  EXPECT_EQ(info.model, "llama");
  EXPECT_TRUE(info.stream);
  EXPECT_EQ(body.substr(0, 10), R"({"model":")");  // body untouched
}

TEST(InspectBody, StreamDefaultsToFalse) {
  std::string body = R"({"model":"m","stream":null})";
  auto info = InspectBody(body);
  EXPECT_EQ(info.error, "");
  EXPECT_FALSE(info.stream);
}

TEST(InspectBody, RejectsMalformedJsonAnywhere) {
  std::string body = R"({"model":"m","messages":[{"role":"user",}]})";
  auto info = InspectBody(body);
  EXPECT_EQ(info.code, "invalid_json");
  EXPECT_NE(info.error.find("not valid JSON"), std::string::npos);
}

TEST(InspectBody, RejectsNonObjectsAndMissingModel) {
  std::string arr = "[1,2]";
  EXPECT_EQ(InspectBody(arr).code, "invalid_json");
  std::string empty;
  EXPECT_EQ(InspectBody(empty).code, "invalid_json");
  std::string nomodel = R"({"prompt":"x"})";
  EXPECT_EQ(InspectBody(nomodel).code, "missing_model");
  std::string numeric = R"({"model":7})";
  EXPECT_EQ(InspectBody(numeric).code, "missing_model");
  std::string badstream = R"({"model":"m","stream":"yes"})";
  EXPECT_EQ(InspectBody(badstream).code, "invalid_type");
}

TEST(InspectBody, RejectsARoutedKeyGivenTwice) {
  // Routed by one "model", served (vLLM keeps the last) as the other: refused.
  std::string two = R"({"model":"cheap","prompt":"x","model":"premium"})";
  auto info = InspectBody(two);
  EXPECT_EQ(info.code, "duplicate_key");
  EXPECT_NE(info.error.find("\"model\" more than once"), std::string::npos) << info.error;
  std::string stream = R"({"model":"m","stream":false,"stream":true})";
  EXPECT_EQ(InspectBody(stream).code, "duplicate_key");
  std::string prio = R"({"model":"m","priority":0,"priority":-5})";
  EXPECT_EQ(InspectBody(prio).code, "duplicate_key");
  // Keys routing does not read, and nested keys, may repeat (the engine decides).
  std::string other =
      R"({"model":"m","temperature":1,"temperature":0,"messages":[{"role":"user","role":"user","content":"x"}]})";
  EXPECT_EQ(InspectBody(other).error, "");
}

TEST(ApplyPriority, AClientCanOnlyLowerItsOwnPriority) {
  auto apply = [](std::string body, bool forward, int64_t value) {
    const bool has = InspectBody(body).has_priority;
    ApplyPriority(body, has, forward, value);
    return body;
  };
  // Without --forward-priority a client's priority never reaches the engine.
  EXPECT_EQ(apply(R"({"model":"m","priority":-1000,"prompt":"x"})", false, 0),
            R"({"model":"m","prompt":"x"})");
  // With it, a more urgent (smaller) value than the objective's is overwritten...
  EXPECT_EQ(apply(R"({"model":"m","priority":-1000})", true, -10),
            R"({"model":"m","priority":-10})");
  EXPECT_EQ(apply(R"({"model":"m","priority":"high"})", true, 0), R"({"model":"m","priority":0})");
  // ...a less urgent one stands, untouched byte for byte.
  EXPECT_EQ(apply(R"({"model":"m", "priority": 3})", true, -10), R"({"model":"m", "priority": 3})");
  // No priority in the body: inserted when there is one to send.
  EXPECT_EQ(apply(R"({"model":"m"})", true, -10), R"({"priority":-10,"model":"m"})");
  EXPECT_EQ(apply(R"({"model":"m"})", true, 0), R"({"model":"m"})");
  EXPECT_EQ(apply(R"({"model":"m"})", false, -10), R"({"model":"m"})");
}

TEST(InspectBody, IntegersBeyond64BitsAreValidJson) {
  std::string body = R"({"model":"m","seed":184467440737095516160,"stream":true,"prompt":"hello"})";
  const std::string sent = body;
  auto info = InspectBody(body);
  EXPECT_EQ(info.error, "");
  EXPECT_EQ(info.model, "m");
  EXPECT_TRUE(info.stream);
  EXPECT_EQ(info.prompt, "hello");
  EXPECT_EQ(body, sent);  // forwarded as sent
  std::string bad = R"({"model":"m","seed":184467440737095516160,})";
  EXPECT_EQ(InspectBody(bad).code, "invalid_json");
}

TEST(ErrorBody, EscapesMessage) {
  EXPECT_EQ(wire::ErrorBody("bad \"x\"\n", "t", "c"),
            R"({"error":{"message":"bad \"x\"\n","type":"t","code":"c"}})");
  EXPECT_EQ(wire::ErrorEvent("m", "t", "c"),
            "data: {\"error\":{\"message\":\"m\",\"type\":\"t\",\"code\":\"c\"}}\n\n");
}

}  // namespace
}  // namespace tidegate::gateway

namespace tidegate::gateway {
namespace {

TEST(InspectBody, FlattensChatMessagesForPrefixAffinity) {
  std::string body =
      R"({"model":"m","messages":[{"role":"system","content":"be brief"},)"
      R"({"role":"user","content":[{"type":"text","text":"hello"},{"type":"text","text":" there"}]}]})";
  auto info = InspectBody(body);
  ASSERT_EQ(info.error, "");
  EXPECT_EQ(info.prompt, "system:be brief\nuser:hello there\n");
  EXPECT_FALSE(info.has_priority);
}

TEST(InspectBody, PromptAndInputAndPriority) {
  std::string completion = R"({"model":"m","prompt":"once upon","priority":3})";
  auto a = InspectBody(completion);
  EXPECT_EQ(a.prompt, "once upon");
  EXPECT_TRUE(a.has_priority);
  std::string batch = R"({"model":"m","prompt":["a","b"]})";
  EXPECT_EQ(InspectBody(batch).prompt, "ab");
  std::string embed = R"({"model":"m","input":"vector me"})";
  EXPECT_EQ(InspectBody(embed).prompt, "vector me");
}

}  // namespace
}  // namespace tidegate::gateway
