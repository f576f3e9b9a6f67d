// `tidegate submit` and `tidegate results` called as functions (RunSubmit / RunResults) against
// temporary SQLite queues: the three line formats, invalid lines, generated ids, publish retries,
// usage errors; results printed once per id, duplicate / conflicting / malformed counting,
// --wait, --timeout, --keep and the summary line. The binary's own plumbing (stdin, exit codes
// seen by a shell) is covered by tests/integration/submit_results.test.mjs.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "async/message.h"
#include "cli/commands.h"
#include "queue/queue.h"

namespace tidegate::cli {
namespace {

using json = nlohmann::json;
using std::chrono::milliseconds;

class CmdTestBase : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("tidegate_submit_cmd_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Uri(const std::string& name) const {
    return "sqlite://" + (dir_ / "q.db").string() + "?queue=" + name;
  }
  std::unique_ptr<queue::Queue> Open(const std::string& name) {
    std::string error;
    auto q = queue::OpenQueue(Uri(name), &error);
    EXPECT_NE(q, nullptr) << error;
    return q;
  }
  std::string WriteFile(const std::string& name, const std::string& text) {
    std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }
  std::vector<std::string> ReadLines(const std::string& path) {
    std::ifstream in(path);
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
  }
  // Everything in queue `name`, leased (so a second call sees nothing), in publish order.
  std::vector<queue::Message> PullAll(const std::string& name) {
    auto q = Open(name);
    std::vector<queue::Message> all, batch;
    if (!q) return all;
    do {
      EXPECT_TRUE(q->Pull(100, milliseconds(60000), milliseconds(0), &batch).ok);
      all.insert(all.end(), batch.begin(), batch.end());
    } while (!batch.empty());
    return all;
  }

  struct Run {
    int code;
    std::string out, err;
  };
  Run Submit(const std::vector<std::string>& args) {
    ::testing::internal::CaptureStdout();
    ::testing::internal::CaptureStderr();
    int code = RunSubmit(args);
    std::string out = ::testing::internal::GetCapturedStdout();
    return {code, out, ::testing::internal::GetCapturedStderr()};
  }
  Run Results(const std::vector<std::string>& args) {
    ::testing::internal::CaptureStdout();
    ::testing::internal::CaptureStderr();
    int code = RunResults(args);
    std::string out = ::testing::internal::GetCapturedStdout();
    return {code, out, ::testing::internal::GetCapturedStderr()};
  }

  std::filesystem::path dir_;
};

// ---- submit ----

using SubmitCmdTest = CmdTestBase;

TEST_F(SubmitCmdTest, PublishesAllThreeFormatsAndReportsTheInvalidLine) {
  std::string file = WriteFile(
      "jobs.jsonl",
      R"({"id":"a-1","deadline":4102444800,"payload":{"model":"m","messages":[{"role":"user","content":"hi"}]}})"
      "\n\n"
      R"({"custom_id":"b-1","method":"POST","url":"/v1/completions","body":{"model":"m","prompt":"hi"}})"
      "\n"
      R"({"model":"m","input":"embed me"})"
      "\n"
      "{not json\n"
      R"({"model":"m","messages":[{"role":"user","content":"x"}]})"
      "\r\n   \n");
  auto before = std::chrono::system_clock::now();
  Run r = Submit({"--queue", Uri("requests"), "--id-prefix", "run7", "--deadline", "2h", file});
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find(file + ":5: invalid line, not published: not valid JSON"), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("the 4 valid requests were published"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "submitted 4 requests to " + Uri("requests") + " (1 invalid line)\n");

  auto msgs = PullAll("requests");
  ASSERT_EQ(msgs.size(), 4u);
  std::vector<async::Request> reqs;
  for (const auto& m : msgs) {
    auto p = async::ParseRequestMessage(m.data, m.id);
    ASSERT_TRUE(p.ok()) << p.error_message << ": " << m.data;
    EXPECT_EQ(p.request.format, async::RequestFormat::kLlmdAsync) << m.data;  // normalized
    reqs.push_back(p.request);
  }
  EXPECT_EQ(reqs[0].id, "a-1");
  EXPECT_EQ(reqs[0].path, "/v1/chat/completions");
  EXPECT_EQ(reqs[0].deadline, 4102444800);
  EXPECT_EQ(reqs[1].id, "b-1");
  EXPECT_EQ(reqs[1].path, "/v1/completions");
  EXPECT_EQ(json::parse(reqs[1].payload), json::parse(R"({"model":"m","prompt":"hi"})"));
  EXPECT_EQ(reqs[2].id, "run7-4");
  EXPECT_EQ(reqs[2].path, "/v1/embeddings");
  EXPECT_EQ(reqs[2].deadline - reqs[2].created, 7200);
  auto before_s =
      std::chrono::duration_cast<std::chrono::seconds>(before.time_since_epoch()).count();
  EXPECT_GE(reqs[2].created, before_s);
  EXPECT_LE(reqs[2].created, before_s + 5);
  EXPECT_EQ(reqs[3].id, "run7-6");  // CRLF line; the blank lines still count as lines
  EXPECT_EQ(reqs[3].path, "/v1/chat/completions");
}

TEST_F(SubmitCmdTest, DefaultIdPrefixComesFromTheFileNameAndDiffersPerRun) {
  std::string file = WriteFile("my batch.v2.jsonl", "{\"model\":\"m\",\"prompt\":\"p\"}\n");
  Run r1 = Submit({"--queue", Uri("requests"), file});
  Run r2 = Submit({"--queue", Uri("requests"), file});
  EXPECT_EQ(r1.code, 0) << r1.err;
  EXPECT_EQ(r2.code, 0) << r2.err;
  EXPECT_NE(r1.err.find("1 line had no id; they got my_batch-"), std::string::npos) << r1.err;
  auto msgs = PullAll("requests");
  ASSERT_EQ(msgs.size(), 2u);
  std::string id1 = async::ParseRequestMessage(msgs[0].data, "").request.id;
  std::string id2 = async::ParseRequestMessage(msgs[1].data, "").request.id;
  EXPECT_EQ(id1.rfind("my_batch-", 0), 0u) << id1;
  EXPECT_EQ(id1.substr(id1.size() - 2), "-1") << id1;
  EXPECT_EQ(id2.rfind("my_batch-", 0), 0u) << id2;
  EXPECT_NE(id1, id2);
}

TEST_F(SubmitCmdTest, EmptyInputAndRepeatedIds) {
  std::string blank = WriteFile("blank.jsonl", "\n  \n\n");
  Run r = Submit({"--queue", Uri("requests"), blank});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "submitted 0 requests to " + Uri("requests") + " (0 invalid lines)\n");

  std::string dup = WriteFile("dup.jsonl",
                              "{\"id\":\"x\",\"payload\":{\"model\":\"m\",\"prompt\":\"1\"}}\n"
                              "{\"id\":\"x\",\"payload\":{\"model\":\"m\",\"prompt\":\"2\"}}\n");
  r = Submit({"--queue", Uri("requests"), dup});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("dup.jsonl:2: id \"x\" is also used on line 1"), std::string::npos) << r.err;
  EXPECT_EQ(PullAll("requests").size(), 2u);  // a warning, not an error
}

TEST_F(SubmitCmdTest, UsageErrorsExit2AndPublishNothing) {
  std::string good = WriteFile("good.jsonl", "{\"model\":\"m\",\"prompt\":\"p\"}\n");
  Run r = Submit({good});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--queue is required"), std::string::npos) << r.err;

  r = Submit({"--queue", Uri("requests"), (dir_ / "missing.jsonl").string()});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("cannot read " + (dir_ / "missing.jsonl").string()), std::string::npos)
      << r.err;
  r = Submit({"--queue", Uri("requests"), dir_.string()});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("is a directory"), std::string::npos) << r.err;

  r = Submit({"--queue", "nosuch://x/y", good});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("cannot open queue nosuch://x/y"), std::string::npos) << r.err;
  r = Submit({"--queue", "sqlite://" + (dir_ / "q.db").string(), good});  // no ?queue=
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("cannot open queue sqlite://"), std::string::npos) << r.err;

  EXPECT_EQ(Submit({"--queue", Uri("requests"), good, good}).code, 2);
  EXPECT_EQ(Submit({"--queue", Uri("requests"), "--deadline", "0", good}).code, 2);
  EXPECT_EQ(Submit({"--queue", Uri("requests"), "--deadline", "soon", good}).code, 2);
  EXPECT_EQ(Submit({"--queue", Uri("requests"), "--nope", good}).code, 2);
  r = Submit({"--help"});
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("example: tidegate submit"), std::string::npos);
  EXPECT_TRUE(PullAll("requests").empty());
}

// A queue whose Publish fails on chosen calls (by 1-based call number).
class FlakyQueue final : public queue::Queue {
 public:
  struct State {
    std::mutex mu;
    int calls = 0;
    std::vector<int> fail_calls;
    int fail_from = 0;  // every call from this one on fails (0 = never)
    std::vector<std::string> published;
  };
  FlakyQueue(std::string uri, std::shared_ptr<State> s) : uri_(std::move(uri)), s_(std::move(s)) {}
  std::string_view kind() const override { return "flaky"; }
  const std::string& uri() const override { return uri_; }
  queue::Status Publish(std::string_view data, const std::map<std::string, std::string>&,
                        std::string*) override {
    std::lock_guard lock(s_->mu);
    int n = ++s_->calls;
    if ((s_->fail_from && n >= s_->fail_from) ||
        std::find(s_->fail_calls.begin(), s_->fail_calls.end(), n) != s_->fail_calls.end())
      return queue::Status::Error("flaky publish: injected failure #" + std::to_string(n));
    s_->published.emplace_back(data);
    return queue::Status::Ok();
  }
  queue::Status Pull(int, milliseconds, milliseconds, std::vector<queue::Message>* out) override {
    out->clear();
    return queue::Status::Ok();
  }
  queue::Status Ack(const std::vector<std::string>&) override { return queue::Status::Ok(); }
  queue::Status Nack(const std::vector<std::string>&) override { return queue::Status::Ok(); }
  queue::Status Extend(const std::vector<std::string>&, milliseconds) override {
    return queue::Status::Ok();
  }

 private:
  std::string uri_;
  std::shared_ptr<State> s_;
};

TEST_F(SubmitCmdTest, RetriesPublishThenStopsSayingHowManyWerePublished) {
  auto state = std::make_shared<FlakyQueue::State>();
  // Lines are published as one batch; a retry resumes after what was published.
  state->fail_calls = {3};  // line 3's first attempt fails, its retry (call 4) succeeds
  state->fail_from = 5;     // line 4 (call 5 on) never succeeds: calls 5, 6, 7 = 3 more attempts
  queue::RegisterQueueBackend("flakysubmit", [state](const std::string& uri, std::string*) {
    return std::make_unique<FlakyQueue>(uri, state);
  });
  std::string file;
  for (int i = 1; i <= 5; ++i)
    file += "{\"model\":\"m\",\"prompt\":\"" + std::to_string(i) + "\"}\n";
  std::string path = WriteFile("five.jsonl", file);
  auto t0 = std::chrono::steady_clock::now();
  Run r = Submit({"--queue", "flakysubmit://x", "--id-prefix", "f", path});
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_LT(took, std::chrono::seconds(2));
  EXPECT_NE(r.err.find("five.jsonl:4: publish to flakysubmit://x failed after 4 attempts: "
                       "flaky publish: injected failure #7"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("3 requests were published"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");  // no success summary
  ASSERT_EQ(state->published.size(), 3u);
  EXPECT_EQ(async::ParseRequestMessage(state->published[2], "").request.id, "f-3");
}

// ---- results ----

using ResultsCmdTest = CmdTestBase;

void PublishResult(queue::Queue& q, const std::string& id, int status,
                   async::ErrorCode code = async::ErrorCode::kNone,
                   const std::string& body = "{}") {
  async::Result r;
  r.id = id;
  r.status_code = status;
  r.payload = body;
  r.error_code = code;
  if (code != async::ErrorCode::kNone) r.error_message = "failed: " + id;
  ASSERT_TRUE(q.Publish(async::RenderResultMessage(r), {}, nullptr).ok);
}

std::vector<std::string> Ids(const std::vector<std::string>& lines) {
  std::vector<std::string> ids;
  for (const auto& l : lines) ids.push_back(json::parse(l).at("id").get<std::string>());
  return ids;
}

TEST_F(ResultsCmdTest, PrintsEachIdOnceCountsDuplicatesAndMalformedAndAcks) {
  auto q = Open("results");
  ASSERT_NE(q, nullptr);
  PublishResult(*q, "r1", 200, async::ErrorCode::kNone, R"({"ok":1})");
  PublishResult(*q, "r2", 504, async::ErrorCode::kDeadlineExceeded);
  PublishResult(*q, "r3", 200);
  PublishResult(*q, "r1", 200, async::ErrorCode::kNone, R"({"ok":1})");  // identical duplicate
  ASSERT_TRUE(q->Publish("  {\"payload\":\"{\\\"ok\\\":1}\", \"status_code\":200, \"id\":\"r1\"}",
                         {}, nullptr)
                  .ok);                                             // identical after normalizing
  PublishResult(*q, "r2", 200);                                     // conflicting duplicate
  ASSERT_TRUE(q->Publish("garbage\n", {}, nullptr).ok);             // malformed
  ASSERT_TRUE(q->Publish(R"({"id":"r9"})", {}, nullptr).ok);        // malformed: no status
  PublishResult(*q, "r4", 503);                                     // failed, no error code
  PublishResult(*q, "r5", 400, async::ErrorCode::kInvalidRequest);  // failed
  std::string out = (dir_ / "out.jsonl").string();

  Run r = Results({"--queue", Uri("results"), "--out", out});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "");
  auto lines = ReadLines(out);
  EXPECT_EQ(Ids(lines), (std::vector<std::string>{"r1", "r2", "r3", "r4", "r5"}));
  json r2 = json::parse(lines[1]);
  EXPECT_EQ(r2["error_code"], "DEADLINE_EXCEEDED");  // the first copy is the one printed
  EXPECT_EQ(r2["status_code"], 504);
  EXPECT_EQ(json::parse(lines[0])["payload"], R"({"ok":1})");
  EXPECT_NE(r.err.find("results: 5 (succeeded 2, failed 3: DEADLINE_EXCEEDED 1, HTTP 503 1, "
                       "INVALID_REQUEST 1), duplicates 2, conflicting duplicates 1, malformed 2\n"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("result \"r2\" arrived again with different content"), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("(result message is not a JSON object), acknowledged and dropped: "
                       "garbage\\x0a"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("\"status_code\" must be an integer"), std::string::npos) << r.err;
  EXPECT_TRUE(PullAll("results").empty());  // everything acked, malformed included

  // A second run appends to --out.
  PublishResult(*q, "r6", 201);
  r = Results({"--queue", Uri("results"), "--out", out});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(Ids(ReadLines(out)), (std::vector<std::string>{"r1", "r2", "r3", "r4", "r5", "r6"}));
  EXPECT_NE(r.err.find("results: 1 (succeeded 1, failed 0), duplicates 0"), std::string::npos)
      << r.err;
}

TEST_F(ResultsCmdTest, PrintsToStdoutAndDrainsAnEmptyQueueAtOnce) {
  auto q = Open("results");
  ASSERT_NE(q, nullptr);
  auto t0 = std::chrono::steady_clock::now();
  Run r = Results({"--queue", Uri("results")});
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(1));
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err,
            "results: 0 (succeeded 0, failed 0), duplicates 0, conflicting duplicates 0, "
            "malformed 0\n");

  PublishResult(*q, "a", 200, async::ErrorCode::kNone, "line1\nline2");
  r = Results({"--queue", Uri("results")});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "{\"id\":\"a\",\"payload\":\"line1\\nline2\",\"status_code\":200}\n");
}

TEST_F(ResultsCmdTest, WaitStopsAtNAndLeavesTheRestQueued) {
  auto q = Open("results");
  ASSERT_NE(q, nullptr);
  for (const char* id : {"a", "b", "c"}) PublishResult(*q, id, 200);
  std::string out = (dir_ / "out.jsonl").string();
  Run r = Results({"--queue", Uri("results"), "--wait", "2", "--out", out});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(Ids(ReadLines(out)), (std::vector<std::string>{"a", "b"}));
  auto rest = PullAll("results");
  ASSERT_EQ(rest.size(), 1u);
  EXPECT_NE(rest[0].data.find("\"c\""), std::string::npos);
}

TEST_F(ResultsCmdTest, WaitPicksUpResultsPublishedWhileWaiting) {
  auto q = Open("results");
  ASSERT_NE(q, nullptr);
  PublishResult(*q, "early", 200);
  std::thread later([&] {
    std::this_thread::sleep_for(milliseconds(200));
    auto q2 = Open("results");
    if (q2) PublishResult(*q2, "late", 500, async::ErrorCode::kInferenceError);
  });
  std::string out = (dir_ / "out.jsonl").string();
  auto t0 = std::chrono::steady_clock::now();
  Run r = Results({"--queue", Uri("results"), "--wait", "2", "--timeout", "5s", "--out", out});
  later.join();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(1500));
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(Ids(ReadLines(out)), (std::vector<std::string>{"early", "late"}));
  EXPECT_NE(r.err.find("results: 2 (succeeded 1, failed 1: INFERENCE_ERROR 1)"), std::string::npos)
      << r.err;
}

TEST_F(ResultsCmdTest, WaitTimesOutWithExitCode1) {
  auto q = Open("results");
  ASSERT_NE(q, nullptr);
  PublishResult(*q, "only", 200);
  std::string out = (dir_ / "out.jsonl").string();
  auto t0 = std::chrono::steady_clock::now();
  Run r = Results({"--queue", Uri("results"), "--wait", "3", "--timeout", "300ms", "--out", out});
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_GE(took, milliseconds(290));
  EXPECT_LT(took, milliseconds(1500));
  EXPECT_NE(r.err.find("timed out after 300ms with 1 of 3 results"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("results: 1 (succeeded 1, failed 0)"), std::string::npos) << r.err;
  EXPECT_EQ(Ids(ReadLines(out)), (std::vector<std::string>{"only"}));
  EXPECT_TRUE(PullAll("results").empty());  // what was printed was acked
}

TEST_F(ResultsCmdTest, KeepLeavesEverythingInTheQueue) {
  auto q = Open("results");
  ASSERT_NE(q, nullptr);
  PublishResult(*q, "k1", 200);
  PublishResult(*q, "k2", 200);
  ASSERT_TRUE(q->Publish("not json", {}, nullptr).ok);
  std::string out = (dir_ / "out.jsonl").string();
  Run r = Results({"--queue", Uri("results"), "--keep", "--out", out});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(Ids(ReadLines(out)), (std::vector<std::string>{"k1", "k2"}));
  EXPECT_NE(r.err.find("left in the queue"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("results: 2 (succeeded 2, failed 0), duplicates 0, conflicting duplicates "
                       "0, malformed 1"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(PullAll("results").size(), 3u);  // handed back at once, not left to a lease
}

TEST_F(ResultsCmdTest, UsageErrorsExit2) {
  Run r = Results({});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--queue is required"), std::string::npos) << r.err;
  r = Results({"--queue", "nosuch://x"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("cannot open queue nosuch://x"), std::string::npos) << r.err;
  r = Results({"--queue", Uri("results"), "--out", (dir_ / "no" / "such" / "dir.jsonl").string()});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("cannot open --out"), std::string::npos) << r.err;
  EXPECT_EQ(Results({"--queue", Uri("results"), "--wait", "-1"}).code, 2);
  EXPECT_EQ(Results({"--queue", Uri("results"), "--timeout", "0"}).code, 2);
  EXPECT_EQ(Results({"--queue", Uri("results"), "extra"}).code, 2);
  r = Results({"--help"});
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("acknowledged too (dropped)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("example: tidegate results"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace tidegate::cli
