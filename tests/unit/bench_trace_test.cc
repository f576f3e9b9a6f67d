// Trace replay (bench/trace.h): the Azure CSV columns and JSON lines, errors naming the line, and
// a scenario that replays a trace file.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "bench/scenario.h"
#include "bench/trace.h"

namespace tidegate::bench {
namespace {

TEST(BenchTrace, ReadsAzureCsvInTimeOrderRelativeToTheFirstRow) {
  std::vector<TraceRow> rows;
  std::string err;
  ASSERT_TRUE(
      ParseTrace("TIMESTAMP,ContextTokens,GeneratedTokens\n"
                 "2023-11-16 18:15:46.6805900,374,44\n"
                 "2023-11-16 18:15:50.9951690,396,109\n"
                 "\n"
                 "2023-11-16 18:15:46.1805900,879,12\r\n",
                 &rows, &err))
      << err;
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_DOUBLE_EQ(rows[0].t_s, 0);
  EXPECT_EQ(rows[0].context_tokens, 879);
  EXPECT_NEAR(rows[1].t_s, 0.5, 1e-6);
  EXPECT_EQ(rows[1].generated_tokens, 44);
  EXPECT_NEAR(rows[2].t_s, 4.814579, 1e-5);
  // Columns in another order, other columns ignored, case-insensitive header, numeric times.
  ASSERT_TRUE(
      ParseTrace("id,generatedtokens,timestamp,contexttokens\n"
                 "a,5,10.5,100\nb,6,12,200\n",
                 &rows, &err))
      << err;
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_DOUBLE_EQ(rows[1].t_s, 1.5);
  EXPECT_EQ(rows[1].context_tokens, 200);
  EXPECT_EQ(rows[1].generated_tokens, 6);
}

TEST(BenchTrace, ReadsJsonLines) {
  std::vector<TraceRow> rows;
  std::string err;
  ASSERT_TRUE(ParseTrace(R"({"timestamp": 100.25, "context_tokens": 10, "generated_tokens": 2}
{"TIMESTAMP": "2024-05-01T00:00:00Z", "ContextTokens": 7, "GeneratedTokens": 1}
)",
                         &rows, &err))
      << err;
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].context_tokens, 10);  // 100.25 s (the epoch) comes first
  EXPECT_NEAR(rows[1].t_s, 1714521600.0 - 100.25, 1e-3);
  // The 2024 Azure traces' offsets.
  ASSERT_TRUE(
      ParseTrace("TIMESTAMP,ContextTokens,GeneratedTokens\n"
                 "2024-05-10 00:00:00.009930+00:00,1,1\n"
                 "2024-05-10 01:00:01.009930+01:00,2,2\n",
                 &rows, &err))
      << err;
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_NEAR(rows[1].t_s, 1.0, 1e-6);
  EXPECT_FALSE(ParseTrace("TIMESTAMP,ContextTokens,GeneratedTokens\n1,9999999,1\n", &rows, &err));
}

TEST(BenchTrace, ErrorsNameTheLine) {
  struct Case {
    std::string text, want;
  };
  for (const Case& c : std::vector<Case>{
           {"", "no requests"},
           {"time,tokens\n1,2\n", "line 1: the CSV header must name"},
           {"TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,1,2\n", "line 2: TIMESTAMP"},
           {"TIMESTAMP,ContextTokens,GeneratedTokens\n1,-3,2\n", "line 2: token counts"},
           {"TIMESTAMP,ContextTokens,GeneratedTokens\n1,3\n", "line 2: expected at least 3"},
           {"{\"timestamp\": 1, \"context_tokens\": 2}\n", "line 1: needs timestamp"},
           {"{\"timestamp\": 1, \"context_tokens\": 2, \"generated_tokens\": 1}\n{oops\n",
            "line 2: not a JSON object"},
           {"TIMESTAMP,ContextTokens,GeneratedTokens\n2023-13-01 00:00:00,1,1\n", "line 2"},
       }) {
    std::vector<TraceRow> rows;
    std::string err;
    EXPECT_FALSE(ParseTrace(c.text, &rows, &err)) << c.want;
    EXPECT_NE(err.find(c.want), std::string::npos) << "got: " << err;
  }
}

TEST(BenchTrace, AScenarioReplaysItsTraceFromItsOwnDirectory) {
  const auto dir = std::filesystem::temp_directory_path() / "tidegate-trace-test";
  std::filesystem::create_directories(dir / "traces");
  std::ofstream(dir / "traces" / "t.csv") << "TIMESTAMP,ContextTokens,GeneratedTokens\n"
                                             "0,100,10\n1,200,20\n2,0,0\n9,400,40\n";
  std::ofstream(dir / "s.yaml") << "name: t\nduration: 5s\n"
                                   "realtime: {trace: {path: traces/t.csv, speed: 2}}\n"
                                   "runs: [{name: a}]\n";
  Scenario sc;
  std::string err;
  ASSERT_TRUE(LoadScenario((dir / "s.yaml").string(), &sc, &err)) << err;
  auto plan = ArrivalSchedule(sc.runs[0].realtime, sc.duration_s, sc.seed, sc.max_requests);
  // Twice as fast: 0, 0.5, 1 s; the row at 9 s plays at 4.5 s, within the 5 s.
  ASSERT_EQ(plan.size(), 4u);
  EXPECT_DOUBLE_EQ(plan[1].at_s, 0.5);
  EXPECT_EQ(plan[1].prompt_tokens, 200);
  EXPECT_EQ(plan[1].output_tokens, 20);
  EXPECT_EQ(plan[2].prompt_tokens, 1);  // at least one token each way
  EXPECT_DOUBLE_EQ(plan[3].at_s, 4.5);
  // The duration cuts the trace; max_requests too.
  EXPECT_EQ(ArrivalSchedule(sc.runs[0].realtime, 2, 1, 100).size(), 3u);
  EXPECT_EQ(ArrivalSchedule(sc.runs[0].realtime, 5, 1, 2).size(), 2u);
  // A missing file is an error naming the key.
  std::ofstream(dir / "bad.yaml") << "name: t\nrealtime: {trace: nope.csv}\nruns: [{name: a}]\n";
  EXPECT_FALSE(LoadScenario((dir / "bad.yaml").string(), &sc, &err));
  EXPECT_NE(err.find("realtime.trace"), std::string::npos) << err;
  EXPECT_NE(err.find("cannot read trace file"), std::string::npos) << err;
  // The example trace that ships with the scenarios parses.
  std::vector<TraceRow> rows;
  const auto root = std::filesystem::path(__FILE__).parent_path().parent_path().parent_path();
  EXPECT_TRUE(LoadTrace((root / "scenarios" / "traces" / "example.csv").string(), &rows, &err))
      << err;
  EXPECT_GT(rows.size(), 500u);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tidegate::bench
