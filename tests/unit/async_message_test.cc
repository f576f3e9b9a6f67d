// The async message format: llm-d-async and OpenAI Batch request messages, validation errors
// (always INVALID_REQUEST, keeping a recoverable id), result messages both ways, and the
// `tidegate submit` line builder.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "async/message.h"

namespace tidegate::async {
namespace {

using json = nlohmann::json;

TEST(AsyncRequest, ParsesLlmdAsyncMessage) {
  auto p = ParseRequestMessage(R"({"id":"req-1","created":1700000000,"deadline":1700003600,
      "payload":{"model":"m","messages":[{"role":"user","content":"hi"}]},
      "metadata":{"tenant":"a","n":3},"headers":{"X-Team":"blue"},
      "path":"/v1/chat/completions","extra":"ignored"})",
                               "q-77");
  ASSERT_TRUE(p.ok()) << p.error_message;
  const Request& r = p.request;
  EXPECT_EQ(r.format, RequestFormat::kLlmdAsync);
  EXPECT_EQ(r.id, "req-1");
  EXPECT_EQ(r.created, 1700000000);
  EXPECT_EQ(r.deadline, 1700003600);
  EXPECT_EQ(r.path, "/v1/chat/completions");
  EXPECT_EQ(json::parse(r.payload),
            json::parse(R"({"model":"m","messages":[{"role":"user","content":"hi"}]})"));
  EXPECT_EQ(r.metadata.at("tenant"), "a");
  EXPECT_EQ(r.metadata.at("n"), "3");
  ASSERT_EQ(r.headers.size(), 1u);
  EXPECT_EQ(r.headers[0].first, "X-Team");
  EXPECT_EQ(r.headers[0].second, "blue");
}

TEST(AsyncRequest, InfersPathFromPayloadShape) {
  struct Case {
    const char* payload;
    const char* path;
  } cases[] = {
      {R"({"model":"m","messages":[]})", "/v1/chat/completions"},
      {R"({"model":"m","prompt":"x"})", "/v1/completions"},
      {R"({"model":"m","input":"x"})", "/v1/embeddings"},
      {R"({"model":"m","messages":[],"prompt":"x"})", "/v1/chat/completions"},
  };
  for (const auto& c : cases) {
    auto p = ParseRequestMessage(std::string(R"({"id":"a","payload":)") + c.payload + "}", "q");
    ASSERT_TRUE(p.ok()) << c.payload << ": " << p.error_message;
    EXPECT_EQ(p.request.path, c.path) << c.payload;
    EXPECT_EQ(p.request.created, 0);
    EXPECT_EQ(p.request.deadline, 0);
  }
}

TEST(AsyncRequest, ParsesOpenAIBatchLine) {
  auto p = ParseRequestMessage(
      R"({"custom_id":"task-9","method":"POST","url":"/v1/embeddings","body":{"model":"e","input":"x"}})",
      "q");
  ASSERT_TRUE(p.ok()) << p.error_message;
  EXPECT_EQ(p.request.format, RequestFormat::kOpenAIBatch);
  EXPECT_EQ(p.request.id, "task-9");
  EXPECT_EQ(p.request.path, "/v1/embeddings");
  EXPECT_EQ(json::parse(p.request.payload), json::parse(R"({"model":"e","input":"x"})"));
  // url may be omitted (inferred) and method too.
  p = ParseRequestMessage(R"({"custom_id":"t","body":{"prompt":"x"}})", "q");
  ASSERT_TRUE(p.ok()) << p.error_message;
  EXPECT_EQ(p.request.path, "/v1/completions");
}

TEST(AsyncRequest, AcceptsFractionalAndStringTimes) {
  auto p = ParseRequestMessage(
      R"({"id":"a","created":"1700000000","deadline":1700000100.9,"payload":{"prompt":"x"}})", "q");
  ASSERT_TRUE(p.ok()) << p.error_message;
  EXPECT_EQ(p.request.created, 1700000000);
  EXPECT_EQ(p.request.deadline, 1700000100);
  // An already-passed deadline is not a parse error; the processor handles it.
  p = ParseRequestMessage(R"({"id":"a","created":1,"deadline":2,"payload":{"prompt":"x"}})", "q");
  EXPECT_TRUE(p.ok()) << p.error_message;
}

struct BadCase {
  const char* data;
  const char* needle;  // expected in the error message
  const char* id;      // expected request.id afterwards
};

TEST(AsyncRequest, InvalidMessagesAreInvalidRequestWithRecoveredId) {
  const BadCase cases[] = {
      {"", "not valid JSON", "qid"},
      {"{\"id\":\"a\",", "not valid JSON", "qid"},
      {"[1,2]", "not a JSON object (got array)", "qid"},
      {"\"id\"", "not a JSON object (got string)", "qid"},
      {R"({"payload":{"prompt":"x"}})", "missing \"id\"", "qid"},
      {R"({"id":7,"payload":{"prompt":"x"}})", "\"id\" must be a string, got number", "qid"},
      {R"({"id":"","payload":{"prompt":"x"}})", "\"id\" is empty", "qid"},
      {"{\"id\":\"a\\r\\nX-Evil: 1\",\"payload\":{\"prompt\":\"x\"}}", "control character", "qid"},
      {R"({"id":"r1"})", "missing \"payload\"", "r1"},
      {R"({"id":"r1","payload":"{\"prompt\":1}"})", "\"payload\" must be an object", "r1"},
      {R"({"id":"r1","payload":[1]})", "\"payload\" must be an object", "r1"},
      {R"({"id":"r1","payload":{"model":"m"}})", "to infer it from", "r1"},
      {R"({"id":"r1","path":"/v1/models","payload":{"prompt":"x"}})", "unknown path \"/v1/models\"",
       "r1"},
      {R"({"id":"r1","path":5,"payload":{"prompt":"x"}})", "\"path\" must be a string", "r1"},
      {R"({"id":"r1","created":200,"deadline":100,"payload":{"prompt":"x"}})",
       "\"deadline\" (100) is before \"created\" (200)", "r1"},
      {R"({"id":"r1","deadline":-5,"payload":{"prompt":"x"}})", "out of range", "r1"},
      {R"({"id":"r1","deadline":100,"soft_deadline":200,"payload":{"prompt":"x"}})",
       "\"soft_deadline\" (200) is after \"deadline\" (100)", "r1"},
      {R"({"id":"r1","soft_deadline":"later","payload":{"prompt":"x"}})", "not a number", "r1"},
      {R"({"id":"r1","deadline":1e300,"payload":{"prompt":"x"}})", "out of range", "r1"},
      {R"({"id":"r1","deadline":18446744073709551615,"payload":{"prompt":"x"}})", "out of range",
       "r1"},
      {R"({"id":"r1","deadline":"soon","payload":{"prompt":"x"}})", "not a number", "r1"},
      {R"({"id":"r1","deadline":"nan","payload":{"prompt":"x"}})", "out of range", "r1"},
      {R"({"id":"r1","deadline":true,"payload":{"prompt":"x"}})", "must be a number", "r1"},
      {R"({"id":"r1","metadata":[],"payload":{"prompt":"x"}})", "\"metadata\" must be an object",
       "r1"},
      {R"({"id":"r1","headers":{"X":1},"payload":{"prompt":"x"}})", "must be a string", "r1"},
      {R"({"id":"r1","headers":{"Bad Name":"v"},"payload":{"prompt":"x"}})", "valid HTTP token",
       "r1"},
      {R"({"id":"r1","headers":{"X":"a\r\nb"},"payload":{"prompt":"x"}})", "CR, LF or NUL", "r1"},
      {R"({"id":"r1","headers":{"Content-Length":"5"},"payload":{"prompt":"x"}})",
       "set by the processor", "r1"},
      {R"({"custom_id":"b1","method":"GET","url":"/v1/completions","body":{"prompt":"x"}})",
       "\"method\" must be \"POST\"", "b1"},
      {R"({"custom_id":"b1","url":"/v1/nope","body":{"prompt":"x"}})", "unknown url", "b1"},
      {R"({"custom_id":"b1","body":7})", "\"body\" must be an object", "b1"},
      {R"({"body":{"prompt":"x"}})", "missing \"custom_id\"", "qid"},
      {R"({"custom_id":"b1"})", "missing \"body\"", "b1"},
  };
  for (const auto& c : cases) {
    auto p = ParseRequestMessage(c.data, "qid");
    EXPECT_FALSE(p.ok()) << c.data;
    EXPECT_EQ(p.error, ErrorCode::kInvalidRequest) << c.data;
    EXPECT_NE(p.error_message.find(c.needle), std::string::npos)
        << c.data << " → " << p.error_message;
    EXPECT_EQ(p.request.id, c.id) << c.data;
  }
}

TEST(AsyncRequest, RefusesAbsurdNesting) {
  std::string deep = R"({"id":"d","payload":{"prompt":)" + std::string(100000, '[') + "}}";
  auto p = ParseRequestMessage(deep, "qid");
  EXPECT_EQ(p.error, ErrorCode::kInvalidRequest);
  EXPECT_NE(p.error_message.find("nested deeper"), std::string::npos) << p.error_message;
  EXPECT_EQ(p.request.id, "qid");
  // Brackets inside strings do not count.
  std::string ok = R"({"id":"d","payload":{"prompt":")" + std::string(1000, '[') + "\"}}";
  EXPECT_TRUE(ParseRequestMessage(ok, "qid").ok());
}

TEST(AsyncRequest, RenderRoundTrips) {
  auto p = ParseRequestMessage(R"({"id":"r","created":10,"deadline":20,"path":"/v1/completions",
      "payload":{"prompt":"x","model":"m"},"metadata":{"k":"v"},"headers":{"A":"b"}})",
                               "q");
  ASSERT_TRUE(p.ok());
  std::string rendered = RenderRequestMessage(p.request);
  auto again = ParseRequestMessage(rendered, "q");
  ASSERT_TRUE(again.ok()) << again.error_message;
  EXPECT_EQ(again.request.id, "r");
  EXPECT_EQ(again.request.created, 10);
  EXPECT_EQ(again.request.deadline, 20);
  EXPECT_EQ(again.request.path, "/v1/completions");
  EXPECT_EQ(again.request.payload, p.request.payload);
  EXPECT_EQ(again.request.metadata, p.request.metadata);
  EXPECT_EQ(again.request.headers, p.request.headers);
}

TEST(AsyncErrorCode, NamesRoundTrip) {
  for (ErrorCode c :
       {ErrorCode::kNone, ErrorCode::kDeadlineExceeded, ErrorCode::kCancelled,
        ErrorCode::kInvalidRequest, ErrorCode::kInferenceError, ErrorCode::kShedExhausted}) {
    ErrorCode back = ErrorCode::kCancelled;
    ASSERT_TRUE(ParseErrorCode(ErrorCodeName(c), &back)) << ErrorCodeName(c);
    EXPECT_EQ(back, c);
  }
  EXPECT_EQ(ErrorCodeName(ErrorCode::kShedExhausted), "SHED_EXHAUSTED");
  EXPECT_EQ(ErrorCodeName(ErrorCode::kNone), "");
  ErrorCode c;
  EXPECT_FALSE(ParseErrorCode("OOPS", &c));
}

TEST(AsyncResult, SuccessOmitsErrorFields) {
  Result r{"r1", 200, R"({"choices":[]})", ErrorCode::kNone, ""};
  json j = json::parse(RenderResultMessage(r));
  EXPECT_EQ(j, json::parse(R"({"id":"r1","status_code":200,"payload":"{\"choices\":[]}"})"));
  Result back;
  std::string error;
  ASSERT_TRUE(ParseResultMessage(RenderResultMessage(r), &back, &error)) << error;
  EXPECT_EQ(back.id, "r1");
  EXPECT_EQ(back.status_code, 200);
  EXPECT_EQ(back.payload, R"({"choices":[]})");
  EXPECT_EQ(back.error_code, ErrorCode::kNone);
}

TEST(AsyncResult, ErrorRoundTripsAndInvalidUtf8IsReplaced) {
  Result r{"r2", 0, std::string("bad \xff byte"), ErrorCode::kDeadlineExceeded, "too late"};
  std::string text = RenderResultMessage(r);
  json j = json::parse(text);
  EXPECT_EQ(j["error_code"], "DEADLINE_EXCEEDED");
  EXPECT_EQ(j["error_message"], "too late");
  Result back;
  std::string error;
  ASSERT_TRUE(ParseResultMessage(text, &back, &error)) << error;
  EXPECT_EQ(back.error_code, ErrorCode::kDeadlineExceeded);
  EXPECT_EQ(back.error_message, "too late");
  EXPECT_EQ(back.payload, "bad \xEF\xBF\xBD byte");
}

TEST(AsyncResult, ParseAcceptsEmptyOrNullErrorCodeAndRejectsGarbage) {
  Result back;
  std::string error;
  ASSERT_TRUE(ParseResultMessage(R"({"id":"a","status_code":200,"payload":"x","error_code":"",
      "error_message":""})",
                                 &back, &error))
      << error;
  EXPECT_EQ(back.error_code, ErrorCode::kNone);
  ASSERT_TRUE(
      ParseResultMessage(R"({"id":"a","status_code":429,"error_code":null})", &back, &error));
  EXPECT_EQ(back.status_code, 429);
  EXPECT_EQ(back.payload, "");
  const char* bad[] = {
      "nope",
      "[]",
      R"({"status_code":200})",
      R"({"id":1,"status_code":200})",
      R"({"id":"a"})",
      R"({"id":"a","status_code":"200"})",
      R"({"id":"a","status_code":1000})",
      R"({"id":"a","status_code":-1})",
      R"({"id":"a","status_code":200,"payload":{}})",
      R"({"id":"a","status_code":200,"error_code":"WHAT"})",
      R"({"id":"a","status_code":200,"error_message":5})",
  };
  for (const char* b : bad) {
    EXPECT_FALSE(ParseResultMessage(b, &back, &error)) << b;
    EXPECT_FALSE(error.empty()) << b;
  }
}

TEST(AsyncSubmit, BuildsNormalizedMessagesWithDefaultDeadline) {
  const auto now = std::chrono::system_clock::time_point(std::chrono::seconds(1700000000));
  std::string message, id, error;
  // Bare OpenAI body.
  ASSERT_TRUE(BuildRequestMessage(R"({"model":"m","messages":[]})", now, std::chrono::hours(1),
                                  "line-1", &message, &id, &error))
      << error;
  EXPECT_EQ(id, "line-1");
  json j = json::parse(message);
  EXPECT_EQ(j["id"], "line-1");
  EXPECT_EQ(j["created"], 1700000000);
  EXPECT_EQ(j["deadline"], 1700003600);
  EXPECT_EQ(j["path"], "/v1/chat/completions");
  EXPECT_EQ(j["payload"], json::parse(R"({"model":"m","messages":[]})"));
  EXPECT_TRUE(ParseRequestMessage(message, "q").ok());

  // Batch line: custom_id and url kept, normalized to the llm-d-async format.
  ASSERT_TRUE(BuildRequestMessage(
      R"({"custom_id":"c7","method":"POST","url":"/v1/completions","body":{"prompt":"p"}})", now,
      std::chrono::seconds(60), "line-2", &message, &id, &error))
      << error;
  EXPECT_EQ(id, "c7");
  j = json::parse(message);
  EXPECT_EQ(j["id"], "c7");
  EXPECT_EQ(j["deadline"], 1700000060);
  EXPECT_EQ(j["path"], "/v1/completions");
  EXPECT_FALSE(j.contains("custom_id"));

  // llm-d-async line with its own times keeps them.
  ASSERT_TRUE(BuildRequestMessage(R"({"id":"x","created":5,"deadline":9,"payload":{"input":"e"}})",
                                  now, std::chrono::hours(1), "line-3", &message, &id, &error))
      << error;
  j = json::parse(message);
  EXPECT_EQ(j["created"], 5);
  EXPECT_EQ(j["deadline"], 9);
  EXPECT_EQ(j["path"], "/v1/embeddings");

  EXPECT_FALSE(
      BuildRequestMessage("not json", now, std::chrono::hours(1), "l", &message, &id, &error));
  EXPECT_NE(error.find("not valid JSON"), std::string::npos);
  EXPECT_FALSE(BuildRequestMessage(R"({"id":"x","payload":{"model":"m"}})", now,
                                   std::chrono::hours(1), "l", &message, &id, &error));
  EXPECT_NE(error.find("infer"), std::string::npos) << error;
}

}  // namespace
TEST(AsyncMessage, SoftDeadlineIsParsedRenderedAndKeptBySubmit) {
  auto p = ParseRequestMessage(
      R"({"id":"s","created":1700000000,"soft_deadline":1700001800,"deadline":1700003600,
          "payload":{"prompt":"x"}})",
      "q");
  ASSERT_TRUE(p.ok()) << p.error_message;
  EXPECT_EQ(p.request.soft_deadline, 1700001800);
  auto again = ParseRequestMessage(RenderRequestMessage(p.request), "q");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again.request.soft_deadline, 1700001800);
  // No soft deadline: none rendered, 0 parsed.
  p = ParseRequestMessage(R"({"id":"s","payload":{"prompt":"x"}})", "q");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p.request.soft_deadline, 0);
  EXPECT_EQ(RenderRequestMessage(p.request).find("soft_deadline"), std::string::npos);
  // tidegate submit: a soft deadline beyond the default hard one moves the hard one out to it.
  std::string msg, id, err;
  const auto now = std::chrono::system_clock::time_point(std::chrono::seconds(1700000000));
  ASSERT_TRUE(
      BuildRequestMessage(R"({"id":"s","soft_deadline":1700090000,"payload":{"prompt":"x"}})", now,
                          std::chrono::seconds(3600), "f", &msg, &id, &err))
      << err;
  auto built = ParseRequestMessage(msg, "q");
  ASSERT_TRUE(built.ok());
  EXPECT_EQ(built.request.soft_deadline, 1700090000);
  EXPECT_EQ(built.request.deadline, 1700090000);
}

}  // namespace tidegate::async
