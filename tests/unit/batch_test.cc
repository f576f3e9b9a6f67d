// The Batch API: input validation, windows, ids and output lines (batch/batch.h), and the
// service end to end on the embedded queue with a manual clock (batch/service.h): the test plays
// the async processor, pulling the published lines and publishing their results.
#include "batch/batch.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "async/message.h"
#include "batch/service.h"
#include "batch/store.h"
#include "queue/queue.h"

namespace tidegate::batch {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string Line(const std::string& id, const std::string& url = "/v1/chat/completions") {
  return json{
      {"custom_id", id},
      {"method", "POST"},
      {"url", url},
      {"body", {{"model", "m"}, {"messages", {{{"role", "user"}, {"content", "hi " + id}}}}}}}
      .dump();
}

TEST(BatchValidate, AcceptsAGoodFileAndRecordsWhereEachLineIs) {
  std::string content = Line("a") + "\n\n" + Line("b") + "\r\n" + Line("c");
  Validation v = ValidateInput(content, "/v1/chat/completions", {});
  ASSERT_TRUE(v.ok()) << v.errors.front().message;
  ASSERT_EQ(v.lines.size(), 3u);
  EXPECT_EQ(v.lines[0].custom_id, "a");
  EXPECT_EQ(v.lines[1].line, 3);  // the blank line counts
  EXPECT_EQ(v.lines[2].line, 4);
  EXPECT_EQ(content.substr(v.lines[1].offset, v.lines[1].length), Line("b"));  // no \r
  EXPECT_EQ(content.substr(v.lines[2].offset, v.lines[2].length), Line("c"));
}

TEST(BatchValidate, NamesTheLineOfEachError) {
  std::string content = Line("a") + "\n" + "{not json\n" + Line("b", "/v1/embeddings") + "\n" +
                        Line("a") + "\n" + R"({"method":"POST","url":"/v1/chat/completions",)" +
                        R"("body":{}})" + "\n" + "[1,2]\n" +
                        R"({"custom_id":"x","method":"GET","url":"/v1/chat/completions",)" +
                        R"("body":{"messages":[]}})";
  Validation v = ValidateInput(content, "/v1/chat/completions", {});
  ASSERT_FALSE(v.ok());
  EXPECT_TRUE(v.lines.empty());
  ASSERT_EQ(v.errors.size(), 6u);
  EXPECT_EQ(v.errors[0].line, 2);
  EXPECT_EQ(v.errors[0].code, "invalid_json");
  EXPECT_EQ(v.errors[1].line, 3);
  EXPECT_EQ(v.errors[1].code, "mismatched_url");
  EXPECT_NE(v.errors[1].message.find("/v1/embeddings"), std::string::npos);
  EXPECT_EQ(v.errors[2].line, 4);
  EXPECT_EQ(v.errors[2].code, "duplicate_custom_id");
  EXPECT_EQ(v.errors[3].line, 5);
  EXPECT_EQ(v.errors[3].code, "missing_required_parameter");
  EXPECT_EQ(v.errors[3].param, "custom_id");
  EXPECT_EQ(v.errors[4].line, 6);
  EXPECT_EQ(v.errors[5].line, 7);
  EXPECT_NE(v.errors[5].message.find("POST"), std::string::npos) << v.errors[5].message;
}

TEST(BatchValidate, EnforcesTheLineAndByteLimits) {
  InputLimits limits;
  limits.max_lines = 2;
  Validation v = ValidateInput(Line("a") + "\n" + Line("b") + "\n" + Line("c") + "\n",
                               "/v1/chat/completions", limits);
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.errors.front().code, "too_many_requests");
  EXPECT_EQ(v.errors.front().line, 3);
  limits = {};
  limits.max_bytes = 10;
  v = ValidateInput(Line("a"), "/v1/chat/completions", limits);
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.errors.front().code, "file_too_large");
  v = ValidateInput("\n \n", "/v1/chat/completions", {});
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.errors.front().code, "empty_file");
}

TEST(BatchValidate, KeepsTheFirstHundredErrorsAndCountsAll) {
  std::string content;
  for (int i = 0; i < 150; ++i) content += "nope\n";
  Validation v = ValidateInput(content, "/v1/chat/completions", {});
  EXPECT_EQ(v.error_count, 150u);
  EXPECT_EQ(v.errors.size(), kMaxReportedErrors);
}

TEST(BatchWindow, ParsesDurationsAndRefusesTheRest) {
  std::string err;
  EXPECT_EQ(ParseWindow("24h", &err), 86400);
  EXPECT_EQ(ParseWindow("90s", &err), 90);
  EXPECT_EQ(ParseWindow("30m", &err), 1800);
  EXPECT_EQ(ParseWindow("30d", &err), 30 * 86400);
  for (const char* bad : {"", "24", "h", "0h", "-1h", "24x", "31d", "1.5h", "24hh"}) {
    err.clear();
    EXPECT_FALSE(ParseWindow(bad, &err).has_value()) << bad;
    EXPECT_FALSE(err.empty()) << bad;
  }
}

TEST(BatchIds, LineRequestIdsRoundTrip) {
  const std::string b = NewBatchId();
  EXPECT_EQ(b.size(), 6u + 24u);
  EXPECT_NE(b, NewBatchId());
  EXPECT_EQ(NewFileId().substr(0, 5), "file-");
  std::string id = LineRequestId(b, 42), back;
  int64_t line = 0;
  ASSERT_TRUE(ParseLineRequestId(id, &back, &line));
  EXPECT_EQ(back, b);
  EXPECT_EQ(line, 42);
  for (const char* bad : {"batch_req_", "batch_req_abc", "batch_req__1", "batch_req_abc_x",
                          "batch_req_abc_0", "req_abc_1", "batch_req_abc_1x"})
    EXPECT_FALSE(ParseLineRequestId(bad, &back, &line)) << bad;
}

TEST(BatchOutput, LinesHaveOpenAIsShape) {
  LineOutcome ok{3, "c1", "batch_req_x_3", 200, R"({"id":"chatcmpl-1"})", "", ""};
  json j = json::parse(OutputLine(ok));
  EXPECT_EQ(j["custom_id"], "c1");
  EXPECT_EQ(j["id"], "batch_req_x_3");
  EXPECT_EQ(j["response"]["status_code"], 200);
  EXPECT_EQ(j["response"]["request_id"], "batch_req_x_3");
  EXPECT_EQ(j["response"]["body"]["id"], "chatcmpl-1");  // the body as JSON, not a string
  EXPECT_TRUE(j["error"].is_null());
  LineOutcome expired{4, "c2", "batch_req_x_4", 0, "", "batch_expired", "too late"};
  j = json::parse(OutputLine(expired));
  EXPECT_TRUE(j["response"].is_null());
  EXPECT_EQ(j["error"]["code"], "batch_expired");
  EXPECT_EQ(j["error"]["message"], "too late");
  LineOutcome http{5, "c3", "r", 400, "not json", "invalid_request", "the gateway answered 400"};
  j = json::parse(OutputLine(http));
  EXPECT_EQ(j["response"]["status_code"], 400);
  EXPECT_EQ(j["response"]["body"], "not json");
  EXPECT_FALSE(IsSuccess(http));
}

// ---------------------------------------------------------------------------------------------
// The service on the embedded queue.

class BatchServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("tidegate_batch_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    opts_.dir = (dir_ / "store").string();
    opts_.requests = "sqlite://" + (dir_ / "q.db").string() + "?queue=requests";
    opts_.results = "sqlite://" + (dir_ / "q.db").string() + "?queue=batch-results";
    opts_.now = [this] { return now_; };
    opts_.cancel_grace = std::chrono::seconds(60);
    Reopen();
    std::string err;
    requests_ = queue::OpenQueue(opts_.requests, &err);
    results_ = queue::OpenQueue(opts_.results, &err);
    ASSERT_TRUE(requests_ && results_) << err;
  }
  void TearDown() override {
    svc_.reset();
    fs::remove_all(dir_);
  }
  void Reopen() {
    svc_.reset();
    std::string err;
    svc_ = Service::Open(opts_, &err);
    ASSERT_NE(svc_, nullptr) << err;
  }

  ApiReply Call(std::string_view method, std::string_view target, std::string_view body = "",
                std::string_view content_type = "application/json") {
    std::string_view path = target.substr(0, target.find('?'));
    std::string_view query =
        target.size() > path.size() ? target.substr(path.size() + 1) : std::string_view();
    return svc_->Handle({method, path, query, content_type, body, ""});
  }
  std::string Upload(const std::string& content, const std::string& purpose = "batch") {
    const std::string b = "----formdata-undici-0123456789";
    body_ = "--" + b + "\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n" + purpose +
            "\r\n--" + b +
            "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n" +
            content + "\r\n--" + b + "--\r\n";
    ApiReply r = Call("POST", "/v1/files", body_, "multipart/form-data; boundary=" + b);
    EXPECT_EQ(r.status, 200) << r.body;
    if (r.status != 200) return "";
    json j = json::parse(r.body);
    EXPECT_EQ(j["object"], "file");
    EXPECT_EQ(j["purpose"], purpose);
    EXPECT_EQ(j["bytes"], content.size());
    return j["id"];
  }
  json Create(const std::string& file_id, const std::string& window = "24h") {
    ApiReply r = Call("POST", "/v1/batches",
                      json{{"input_file_id", file_id},
                           {"endpoint", "/v1/chat/completions"},
                           {"completion_window", window},
                           {"metadata", {{"job", "nightly"}}}}
                          .dump());
    EXPECT_EQ(r.status, 200) << r.body;
    return json::parse(r.body);
  }
  json Get(const std::string& batch_id) {
    ApiReply r = Call("GET", "/v1/batches/" + batch_id);
    EXPECT_EQ(r.status, 200) << r.body;
    return json::parse(r.body);
  }
  std::vector<json> Content(const json& file_id) {
    std::vector<json> out;
    if (file_id.is_null()) return out;
    ApiReply r = Call("GET", "/v1/files/" + file_id.get<std::string>() + "/content");
    EXPECT_EQ(r.status, 200) << r.body;
    size_t at = 0;
    while (at < r.body.size()) {
      size_t end = r.body.find('\n', at);
      out.push_back(json::parse(r.body.substr(at, end - at)));
      at = end + 1;
    }
    return out;
  }
  // The async processor's part: takes the published lines.
  std::vector<async::Request> TakeLines() {
    std::vector<queue::Message> msgs;
    EXPECT_TRUE(
        requests_->Pull(1000, std::chrono::seconds(60), std::chrono::milliseconds(0), &msgs).ok);
    std::vector<std::string> acks;
    std::vector<async::Request> out;
    for (auto& m : msgs) {
      auto p = async::ParseRequestMessage(m.data, m.id);
      EXPECT_TRUE(p.ok()) << p.error_message;
      out.push_back(p.request);
      acks.push_back(m.ack_id);
    }
    requests_->Ack(acks);
    return out;
  }
  void Answer(const async::Request& r, int status = 200,
              async::ErrorCode code = async::ErrorCode::kNone, std::string body = "") {
    async::Result res;
    res.id = r.id;
    res.status_code = status;
    res.payload =
        body.empty() ? json{{"id", "cmpl-" + r.id}, {"object", "chat.completion"}}.dump() : body;
    res.error_code = code;
    if (code != async::ErrorCode::kNone) res.error_message = "failed";
    ASSERT_TRUE(results_->Publish(async::RenderResultMessage(res), {}, nullptr).ok);
  }

  fs::path dir_;
  ServiceOptions opts_;
  int64_t now_ = 1'800'000'000;
  std::unique_ptr<Service> svc_;
  std::unique_ptr<queue::Queue> requests_, results_;
  std::string body_;
};

TEST_F(BatchServiceTest, ABatchRunsToCompletedWithEachCustomIdAnsweredOnce) {
  const std::string file = Upload(Line("a") + "\n" + Line("b") + "\n" + Line("c") + "\n");
  json b = Create(file);
  EXPECT_EQ(b["status"], "validating");
  EXPECT_EQ(b["expires_at"], now_ + 86400);
  EXPECT_EQ(b["metadata"]["job"], "nightly");
  const std::string id = b["id"];
  svc_->RunOnce();
  b = Get(id);
  EXPECT_EQ(b["status"], "in_progress");
  EXPECT_EQ(b["request_counts"]["total"], 3);
  EXPECT_EQ(b["in_progress_at"], now_);
  std::vector<async::Request> lines = TakeLines();
  ASSERT_EQ(lines.size(), 3u);
  std::set<std::string> customs;
  for (const auto& r : lines) {
    EXPECT_EQ(r.deadline, now_ + 86400);
    EXPECT_EQ(r.soft_deadline, now_ + 86400);
    EXPECT_EQ(r.path, "/v1/chat/completions");
    EXPECT_EQ(r.metadata.at(std::string(async::kBatchIdMetadata)), id);
    customs.insert(r.metadata.at("custom_id"));
  }
  EXPECT_EQ(customs, (std::set<std::string>{"a", "b", "c"}));
  Answer(lines[0]);
  Answer(lines[0]);  // a duplicate delivery counts once
  Answer(lines[1], 500, async::ErrorCode::kInferenceError, R"({"error":{"message":"boom"}})");
  svc_->RunOnce();
  b = Get(id);
  EXPECT_EQ(b["status"], "in_progress");
  EXPECT_EQ(b["request_counts"]["completed"], 1);
  EXPECT_EQ(b["request_counts"]["failed"], 1);
  Answer(lines[2]);
  svc_->RunOnce();  // stores the last result
  svc_->RunOnce();  // finalizes
  b = Get(id);
  EXPECT_EQ(b["status"], "completed");
  EXPECT_EQ(b["completed_at"], now_);
  EXPECT_EQ(b["request_counts"]["completed"], 2);
  std::vector<json> out = Content(b["output_file_id"]);
  std::vector<json> errors = Content(b["error_file_id"]);
  ASSERT_EQ(out.size(), 2u);
  ASSERT_EQ(errors.size(), 1u);
  std::multiset<std::string> answered;
  for (const auto& l : out) {
    answered.insert(l["custom_id"].get<std::string>());
    EXPECT_EQ(l["response"]["status_code"], 200);
    EXPECT_EQ(l["response"]["body"]["object"], "chat.completion");
  }
  answered.insert(errors[0]["custom_id"].get<std::string>());
  EXPECT_EQ(answered, (std::multiset<std::string>{"a", "b", "c"}));
  EXPECT_EQ(errors[0]["response"]["status_code"], 500);
  EXPECT_EQ(errors[0]["error"]["code"], "inference_error");
  // The metrics count the batch and its lines.
  const std::string m = svc_->MetricsText();
  EXPECT_NE(m.find("tidegate_batches{status=\"completed\"} 1\n"), std::string::npos) << m;
  EXPECT_NE(m.find("tidegate_batches{status=\"in_progress\"} 0\n"), std::string::npos) << m;
  EXPECT_NE(m.find("tidegate_batch_lines_published_total 3\n"), std::string::npos) << m;
  EXPECT_NE(m.find("tidegate_batch_lines_answered_total{outcome=\"completed\"} 2\n"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("tidegate_batch_lines_answered_total{outcome=\"failed\"} 1\n"),
            std::string::npos)
      << m;
  // The output file is listed as the batch's output.
  ApiReply f = Call("GET", "/v1/files/" + b["output_file_id"].get<std::string>());
  EXPECT_EQ(json::parse(f.body)["purpose"], "batch_output");
}

TEST_F(BatchServiceTest, AMalformedFileFailsWithItsLineNumbers) {
  const std::string file = Upload(Line("a") + "\n{oops\n" + Line("a") + "\n");
  const std::string id = Create(file)["id"];
  svc_->RunOnce();
  json b = Get(id);
  EXPECT_EQ(b["status"], "failed");
  EXPECT_EQ(b["failed_at"], now_);
  ASSERT_TRUE(b["errors"].is_object());
  EXPECT_EQ(b["errors"]["object"], "list");
  ASSERT_EQ(b["errors"]["data"].size(), 2u);
  EXPECT_EQ(b["errors"]["data"][0]["line"], 2);
  EXPECT_EQ(b["errors"]["data"][0]["code"], "invalid_json");
  EXPECT_EQ(b["errors"]["data"][1]["line"], 3);
  EXPECT_EQ(b["errors"]["data"][1]["code"], "duplicate_custom_id");
  EXPECT_TRUE(TakeLines().empty());  // nothing was sent
}

TEST_F(BatchServiceTest, CancelStopsWhatHasNotStartedAndKeepsWhatFinished) {
  const std::string file = Upload(Line("a") + "\n" + Line("b") + "\n" + Line("c") + "\n");
  const std::string id = Create(file)["id"];
  svc_->RunOnce();
  std::vector<async::Request> lines = TakeLines();
  ASSERT_EQ(lines.size(), 3u);
  Answer(lines[0]);
  svc_->RunOnce();
  EXPECT_FALSE(svc_->Refuses(lines[1].id));
  ApiReply r = Call("POST", "/v1/batches/" + id + "/cancel");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)["status"], "cancelling");
  // The gateway now refuses the lines that have not started, and nothing else.
  EXPECT_TRUE(svc_->Refuses(lines[1].id));
  EXPECT_FALSE(svc_->Refuses("batch_req_000000000000000000000000_1"));
  EXPECT_FALSE(svc_->Refuses("some-other-request"));
  // The processor's result for a refused line: the gateway's 409.
  Answer(
      lines[1], 409, async::ErrorCode::kInvalidRequest,
      R"({"error":{"message":"cancelled","type":"invalid_request_error","code":"batch_cancelled"}})");
  svc_->RunOnce();
  EXPECT_EQ(Get(id)["status"], "cancelling");  // line c may still be in flight
  now_ += 61;                                  // past --batch-cancel-grace
  svc_->RunOnce();
  json b = Get(id);
  EXPECT_EQ(b["status"], "cancelled");
  EXPECT_EQ(b["cancelled_at"], now_);
  EXPECT_EQ(b["request_counts"]["completed"], 1);
  EXPECT_EQ(b["request_counts"]["failed"], 2);
  std::vector<json> out = Content(b["output_file_id"]);
  std::vector<json> errors = Content(b["error_file_id"]);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0]["custom_id"], "a");
  ASSERT_EQ(errors.size(), 2u);
  for (const auto& e : errors) {
    EXPECT_EQ(e["error"]["code"], "batch_cancelled");
    EXPECT_TRUE(e["response"].is_null());
  }
  // A late result changes nothing; a second cancel is refused.
  Answer(lines[2]);
  svc_->RunOnce();
  EXPECT_EQ(Get(id)["request_counts"]["completed"], 1);
  EXPECT_EQ(Call("POST", "/v1/batches/" + id + "/cancel").status, 409);
}

TEST_F(BatchServiceTest, AWindowThatPassesEndsExpiredWithBatchExpiredLines) {
  const std::string file = Upload(Line("a") + "\n" + Line("b") + "\n");
  const std::string id = Create(file, "10s")["id"];
  svc_->RunOnce();
  std::vector<async::Request> lines = TakeLines();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0].deadline, now_ + 10);
  Answer(lines[0]);
  svc_->RunOnce();
  now_ += 10;
  svc_->RunOnce();
  json b = Get(id);
  EXPECT_EQ(b["status"], "expired");
  EXPECT_EQ(b["expired_at"], now_);
  EXPECT_EQ(b["request_counts"]["completed"], 1);
  EXPECT_EQ(b["request_counts"]["failed"], 1);
  ASSERT_EQ(Content(b["output_file_id"]).size(), 1u);
  std::vector<json> errors = Content(b["error_file_id"]);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0]["error"]["code"], "batch_expired");
  EXPECT_EQ(errors[0]["custom_id"], lines[1].metadata.at("custom_id"));
  EXPECT_TRUE(svc_->Refuses(lines[1].id));
  EXPECT_NE(
      svc_->MetricsText().find("tidegate_batch_lines_answered_total{outcome=\"expired\"} 1\n"),
      std::string::npos);
}

TEST_F(BatchServiceTest, LinesThatMissedTheirDeadlineEndTheBatchExpired) {
  // The processor answers DEADLINE_EXCEEDED at the window's end, before the runner saw it pass.
  const std::string file = Upload(Line("a") + "\n" + Line("b") + "\n");
  const std::string id = Create(file, "10s")["id"];
  svc_->RunOnce();
  std::vector<async::Request> lines = TakeLines();
  ASSERT_EQ(lines.size(), 2u);
  Answer(lines[0]);
  Answer(lines[1], 0, async::ErrorCode::kDeadlineExceeded, "{}");
  svc_->RunOnce();
  svc_->RunOnce();
  json b = Get(id);
  EXPECT_EQ(b["status"], "expired");
  EXPECT_EQ(b["request_counts"]["completed"], 1);
  std::vector<json> errors = Content(b["error_file_id"]);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0]["error"]["code"], "batch_expired");
  EXPECT_TRUE(errors[0]["response"].is_null());
}

TEST_F(BatchServiceTest, ResultsThatAreNotBatchLinesAreDroppedWithoutHarm) {
  ASSERT_TRUE(results_->Publish("not a result", {}, nullptr).ok);
  async::Result other;
  other.id = "someone-else";
  other.status_code = 200;
  ASSERT_TRUE(results_->Publish(async::RenderResultMessage(other), {}, nullptr).ok);
  svc_->RunOnce();
  std::vector<queue::Message> left;
  ASSERT_TRUE(results_->Pull(10, std::chrono::seconds(1), std::chrono::milliseconds(0), &left).ok);
  EXPECT_TRUE(left.empty());  // acknowledged (and logged), not redelivered forever
}

TEST_F(BatchServiceTest, ARestartMidBatchLosesNothing) {
  const std::string file = Upload(Line("a") + "\n" + Line("b") + "\n");
  const std::string id = Create(file)["id"];
  svc_->RunOnce();
  std::vector<async::Request> lines = TakeLines();
  ASSERT_EQ(lines.size(), 2u);
  Answer(lines[0]);
  svc_->RunOnce();
  Reopen();  // the gateway restarts
  EXPECT_EQ(Get(id)["request_counts"]["completed"], 1);
  Answer(lines[1]);
  svc_->RunOnce();
  svc_->RunOnce();
  json b = Get(id);
  EXPECT_EQ(b["status"], "completed");
  EXPECT_EQ(Content(b["output_file_id"]).size(), 2u);
  EXPECT_TRUE(TakeLines().empty());  // no line was published twice
}

TEST_F(BatchServiceTest, TheApiRefusesBadRequestsClearly) {
  EXPECT_EQ(Call("GET", "/v1/files/file-nope").status, 404);
  EXPECT_EQ(Call("GET", "/v1/batches/batch_nope").status, 404);
  EXPECT_EQ(Call("PUT", "/v1/batches").status, 405);
  EXPECT_EQ(Call("PUT", "/v1/batches").allow, "GET, POST");
  ApiReply r = Call("POST", "/v1/files", "x", "application/json");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("multipart/form-data"), std::string::npos) << r.body;
  const std::string b = "XyZ";
  std::string body =
      "--XyZ\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n"
      "fine-tune\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; "
      "filename=\"a\"\r\n\r\nx\r\n--XyZ--\r\n";
  r = Call("POST", "/v1/files", body, "multipart/form-data; boundary=XyZ");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("purpose must be"), std::string::npos) << r.body;
  const std::string file = Upload(Line("a"));
  r = Call(
      "POST", "/v1/batches",
      json{{"input_file_id", file}, {"endpoint", "/v1/responses"}, {"completion_window", "24h"}}
          .dump());
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("endpoint must be"), std::string::npos);
  r = Call("POST", "/v1/batches",
           json{{"input_file_id", file},
                {"endpoint", "/v1/chat/completions"},
                {"completion_window", "1 day"}}
               .dump());
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("completion_window"), std::string::npos);
  r = Call("POST", "/v1/batches", "{");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(Call("GET", "/v1/batches?limit=0").status, 400);
  // Deleting a file hides it.
  EXPECT_EQ(Call("DELETE", "/v1/files/" + file).status, 200);
  EXPECT_EQ(Call("GET", "/v1/files/" + file).status, 404);
  EXPECT_EQ(Call("DELETE", "/v1/files/" + file).status, 404);
}

TEST_F(BatchServiceTest, ListsBatchesNewestFirstWithAfterAndLimit) {
  const std::string file = Upload(Line("a"));
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(Create(file)["id"]);
  json page = json::parse(Call("GET", "/v1/batches?limit=2").body);
  ASSERT_EQ(page["data"].size(), 2u);
  EXPECT_EQ(page["data"][0]["id"], ids[2]);
  EXPECT_EQ(page["data"][1]["id"], ids[1]);
  EXPECT_EQ(page["has_more"], true);
  EXPECT_EQ(page["last_id"], ids[1]);
  page = json::parse(Call("GET", "/v1/batches?limit=2&after=" + ids[1]).body);
  ASSERT_EQ(page["data"].size(), 1u);
  EXPECT_EQ(page["data"][0]["id"], ids[0]);
  EXPECT_EQ(page["has_more"], false);
}

TEST_F(BatchServiceTest, OwnersDoNotSeeEachOthersFilesOrBatches) {
  const std::string file = Upload(Line("a"));
  ApiReply r = svc_->Handle({"GET", "/v1/files/" + file, "", "", "", "tenant-b"});
  EXPECT_EQ(r.status, 404);
  const std::string id = Create(file)["id"];
  r = svc_->Handle({"GET", "/v1/batches/" + id, "", "", "", "tenant-b"});
  EXPECT_EQ(r.status, 404);
}

}  // namespace
}  // namespace tidegate::batch
