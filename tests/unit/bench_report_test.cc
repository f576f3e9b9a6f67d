#include <gtest/gtest.h>

#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "bench/report.h"

namespace tidegate::bench {
namespace {

using nlohmann::json;

json SampleRun(const std::string& name, int n = 10) {
  json ts = {{"interval_s", 1.0}};
  for (int i = 0; i < n; ++i) {
    ts["t"].push_back(i);
    ts["util_realtime"].push_back(0.5);
    ts["util_async"].push_back(0.3);
    ts["realtime_rps"].push_back(20 + i);
    ts["ttft_p50_ms"].push_back(40);
    ts["ttft_p99_ms"].push_back(200 + i);
    ts["async_completed"].push_back(i * 5);
  }
  return {{"name", name},
          {"policy", "tidegate-default"},
          {"async_mode", "via-processor"},
          {"target", "tidegate"},
          {"duration_s", 30},
          {"realtime",
           {{"sent", 1200},
            {"succeeded", 1187},
            {"failed", 13},
            {"ttft_ms", {{"p50", 45.04}, {"p90", 120.36}, {"p99", 300.2}}},
            {"tpot_ms", {{"p50", 8.12}, {"p90", 10}, {"p99", 12.3}}},
            {"slo_attainment", 0.98}}},
          {"async",
           {{"submitted", 500},
            {"succeeded", 480},
            {"shed", 20},
            {"failed", 0},
            {"lost", 0},
            {"on_time", 470}}},
          {"utilization", 0.87},
          {"tokens_per_s", 1234.5},
          {"timeseries", ts}};
}

json Report(std::vector<json> runs) {
  return {{"scenario", "seed"},
          {"generated_at", "2026-11-23T10:00:00Z"},
          {"command", "tidegate bench --scenario seed"},
          {"runs", runs}};
}

// The <svg> element of one chart (data-chart, and data-run unless it is the comparison).
std::string Chart(const std::string& html, const std::string& kind, const std::string& run = "") {
  std::string key = "data-chart=\"" + kind + "\"";
  if (!run.empty()) key += " data-run=\"" + run + "\"";
  size_t at = html.find(key);
  if (at == std::string::npos) return {};
  size_t start = html.rfind("<svg", at);
  size_t end = html.find("</svg>", at);
  return html.substr(start, end + 6 - start);
}

int Count(const std::string& text, const std::string& needle) {
  int n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

int SeriesCount(const std::string& svg) { return Count(svg, "<path class=\"series"); }

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

TEST(BenchReport, HtmlEscapeEscapesMarkupAndQuotes) {
  EXPECT_EQ(HtmlEscape("a<b>&\"c\"'d'"), "a&lt;b&gt;&amp;&quot;c&quot;&#39;d&#39;");
  EXPECT_EQ(HtmlEscape("plain – text"), "plain – text");
  EXPECT_EQ(HtmlEscape(""), "");
}

TEST(BenchReport, EscapesEveryTextFromTheJson) {
  json r = Report({SampleRun("<script>alert(1)</script>")});
  r["scenario"] = "a&b<i>";
  r["command"] = "tidegate bench </pre><img src=x>";
  r["runs"][0]["policy"] = "\"><svg onload=x>";
  r["runs"][0]["target"] = "http://h/?a=1&b=<2>";
  std::string html = RenderReportHtml(r);
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("<img"), std::string::npos);
  EXPECT_EQ(html.find("<i>"), std::string::npos);
  EXPECT_EQ(html.find("\"><svg onload"), std::string::npos);
  EXPECT_NE(html.find("<title>tidegate bench: a&amp;b&lt;i&gt;</title>"), std::string::npos);
  EXPECT_NE(html.find("&lt;script&gt;alert(1)&lt;/script&gt;"), std::string::npos);
  EXPECT_NE(html.find("data-run=\"&lt;script&gt;alert(1)&lt;/script&gt;\""), std::string::npos);
  EXPECT_NE(html.find("http://h/?a=1&amp;b=&lt;2&gt;"), std::string::npos);
}

TEST(BenchReport, HtmlIsSelfContained) {
  std::string html = RenderReportHtml(Report({SampleRun("a"), SampleRun("b")}));
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("<link"), std::string::npos);
  EXPECT_EQ(html.find("url("), std::string::npos);
  EXPECT_EQ(html.find("@import"), std::string::npos);
  EXPECT_NE(html.find("<meta charset=\"utf-8\">"), std::string::npos);
}

TEST(BenchReport, SummaryTableHasEveryRunAndColumn) {
  std::string html = RenderReportHtml(Report({SampleRun("via-processor"), SampleRun("direct")}));
  size_t start = html.find("<table class=\"summary\">");
  size_t end = html.find("</table>", start);
  ASSERT_NE(start, std::string::npos);
  std::string table = html.substr(start, end - start);
  EXPECT_EQ(Count(table, "<tr data-run="), 2);
  EXPECT_NE(table.find("<tr data-run=\"via-processor\">"), std::string::npos);
  EXPECT_NE(table.find("<tr data-run=\"direct\">"), std::string::npos);
  for (const char* col : {">run<", ">policy<", ">async mode<", ">sent<", ">ok<", ">p50<", ">p90<",
                          ">p99<", ">shed<", ">lost<", ">on-time<", ">tokens/s<"})
    EXPECT_NE(table.find(col), std::string::npos) << col;
  for (const char* v : {">1200<", ">1187<", ">45.0<", ">120.4<", ">300.2<", ">8.1<", ">12.3<",
                        ">98.0<", ">500<", ">480<", ">470<", ">87.0<", ">1234.5<"})
    EXPECT_NE(table.find(v), std::string::npos) << v;
}

TEST(BenchReport, TrafficClassesHaveARowEachUnderTheirRun) {
  json run = SampleRun("mixed");
  run["realtime"]["classes"] = {
      {{"name", "chat"},
       {"objective", "standard"},
       {"sent", 900},
       {"succeeded", 900},
       {"ttft_ms", {{"p50", 40}, {"p90", 90}, {"p99", 150}}},
       {"slo_attainment", 0.995}},
      {{"name", "long"}, {"tenant", "docs"}, {"sent", 60}, {"succeeded", 59}}};
  const std::string table = RenderReportTable(Report({run}));
  const std::vector<std::string> lines = Lines(table);
  ASSERT_EQ(lines.size(), 6u) << table;  // title, header, rule, the run, its two classes
  EXPECT_EQ(lines[4].rfind("  chat", 0), 0u) << table;
  EXPECT_NE(lines[4].find("900/900"), std::string::npos) << table;
  EXPECT_NE(lines[4].find("40.0/90.0/150.0"), std::string::npos) << table;
  EXPECT_NE(lines[4].find("99.5"), std::string::npos) << table;
  EXPECT_EQ(lines[5].rfind("  long", 0), 0u) << table;
  EXPECT_NE(lines[5].find("tenant docs"), std::string::npos) << table;
}

TEST(BenchReport, FailureReasonsShowInTheTableAndThePage) {
  json run = SampleRun("a");
  run["realtime"]["failures"] = {{"HTTP 503 ttl-expired", 9}, {"transport: connect: refused", 4}};
  json clean = SampleRun("b");
  clean["realtime"]["failures"] = json::object();
  const json report = Report({run, clean});
  const std::string table = RenderReportTable(report);
  EXPECT_NE(table.find("real-time failures in a: 9 × HTTP 503 ttl-expired; 4 × transport: "
                       "connect: refused"),
            std::string::npos)
      << table;
  EXPECT_EQ(table.find("real-time failures in b"), std::string::npos);
  const std::string html = RenderReportHtml(report);
  EXPECT_NE(html.find("real-time failures: 9 × HTTP 503 ttl-expired"), std::string::npos);
}

TEST(BenchReport, EveryRunHasFourChartsWithTheirSeries) {
  std::string html = RenderReportHtml(Report({SampleRun("a"), SampleRun("b"), SampleRun("c")}));
  EXPECT_EQ(Count(html, "<svg class=\"chart\""), 3 * 4);
  EXPECT_EQ(Count(html, "<section class=\"run\""), 3);
  for (const char* run : {"a", "b", "c"}) {
    EXPECT_EQ(SeriesCount(Chart(html, "utilization", run)), 2) << run;
    EXPECT_EQ(SeriesCount(Chart(html, "arrivals", run)), 1) << run;
    EXPECT_EQ(SeriesCount(Chart(html, "ttft", run)), 2) << run;
    EXPECT_EQ(SeriesCount(Chart(html, "async", run)), 1) << run;
    for (const char* kind : {"utilization", "arrivals", "ttft", "async"}) {
      std::string svg = Chart(html, kind, run);
      EXPECT_NE(svg.find("class=\"legend\""), std::string::npos) << kind;
      EXPECT_NE(svg.find("class=\"axis y\""), std::string::npos) << kind;
      EXPECT_NE(svg.find("time (s)"), std::string::npos) << kind;
      EXPECT_EQ(svg.find("no data"), std::string::npos) << kind;
    }
  }
  std::string cmp = Chart(html, "comparison");
  EXPECT_EQ(SeriesCount(cmp), 2);
  EXPECT_NE(cmp.find("data-series=\"ttft_p99_ms\""), std::string::npos);
  EXPECT_NE(cmp.find("data-series=\"utilization\""), std::string::npos);
  EXPECT_EQ(Count(cmp, "class=\"run-label\""), 3);
}

TEST(BenchReport, UtilisationIsStackedAndClampedToTheChart) {
  json run = SampleRun("u", 3);
  run["timeseries"]["util_realtime"] = {0.5, 0.9, 1.5};
  run["timeseries"]["util_async"] = {0.3, 0.5, 0.5};
  std::string svg = Chart(RenderReportHtml(Report({run})), "utilization", "u");
  // y = 42 (top of the plot, 100%) .. 254 (0%): nothing drawn above the top.
  std::regex y_of_point("[ML][0-9.]+,([0-9.]+)");
  int points = 0;
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), y_of_point);
       it != std::sregex_iterator(); ++it, ++points)
    EXPECT_GE(std::stod((*it)[1]), 42.0) << (*it)[0];
  EXPECT_EQ(points, 2 * 6);  // two areas of 3 points, upper and lower edges
}

TEST(BenchReport, MissingFieldsShowADashAndChartsSayNoData) {
  std::string html = RenderReportHtml(json{{"runs", {json::object()}}});
  EXPECT_NE(html.find("<tr data-run=\"run 1\">"), std::string::npos);
  EXPECT_NE(html.find("<title>tidegate bench: –</title>"), std::string::npos);
  EXPECT_GE(Count(html, ">–</td>"), 17);
  for (const char* kind : {"utilization", "arrivals", "ttft", "async"}) {
    std::string svg = Chart(html, kind, "run 1");
    ASSERT_FALSE(svg.empty()) << kind;
    EXPECT_EQ(SeriesCount(svg), 0) << kind;
    EXPECT_NE(svg.find("no data"), std::string::npos) << kind;
    EXPECT_NE(svg.find("class=\"axis-line\""), std::string::npos) << kind;
  }
  std::string cmp = Chart(html, "comparison");
  EXPECT_EQ(SeriesCount(cmp), 0);
  EXPECT_NE(cmp.find("no data"), std::string::npos);
}

TEST(BenchReport, PartialSeriesDrawWhatIsThere) {
  json run = SampleRun("p", 10);
  run["timeseries"].erase("util_async");
  run["timeseries"].erase("async_completed");
  run["timeseries"]["ttft_p99_ms"] = "not an array";
  run["timeseries"]["realtime_rps"][4] = nullptr;  // a gap: two sub-paths
  run["timeseries"]["realtime_rps"][5] = "x";
  std::string html = RenderReportHtml(Report({run}));
  EXPECT_EQ(SeriesCount(Chart(html, "utilization", "p")), 1);
  EXPECT_EQ(SeriesCount(Chart(html, "ttft", "p")), 1);
  EXPECT_EQ(SeriesCount(Chart(html, "async", "p")), 0);
  EXPECT_NE(Chart(html, "async", "p").find("no data"), std::string::npos);
  std::string arrivals = Chart(html, "arrivals", "p");
  ASSERT_EQ(SeriesCount(arrivals), 1);
  size_t d = arrivals.find("<path class=\"series");
  std::string path = arrivals.substr(d, arrivals.find('>', d) - d);
  EXPECT_EQ(Count(path, "M"), 2) << path;
}

TEST(BenchReport, TimeAxisIsRebuiltFromIntervalWhenTIsMissing) {
  json run = SampleRun("i", 10);
  run["timeseries"].erase("t");
  run["timeseries"]["interval_s"] = 0.5;  // t = 0 .. 4.5 s
  std::string svg = Chart(RenderReportHtml(Report({run})), "arrivals", "i");
  EXPECT_EQ(SeriesCount(svg), 1);
  size_t x = svg.find("<g class=\"axis x\">");
  std::string xaxis = svg.substr(x, svg.find("</g>", x) - x);
  EXPECT_NE(xaxis.find(">4</text>"), std::string::npos) << xaxis;
  EXPECT_EQ(xaxis.find(">5</text>"), std::string::npos) << xaxis;
}

TEST(BenchReport, OddInputNeverThrows) {
  for (const json& j : std::vector<json>{
           json(), json(42), json::array({1, 2}), json{{"runs", "x"}}, json{{"runs", {1, "a"}}},
           json{{"runs", {{{"name", 7}, {"realtime", 5}, {"timeseries", {1, 2}}}}}},
           json{{"runs",
                 {{{"timeseries",
                    {{"t", "abc"}, {"interval_s", -1}, {"realtime_rps", {1, 2, 3}}}}}}}},
           json{{"runs", {{{"timeseries", {{"t", {0, 0, 0}}, {"ttft_p50_ms", {5, 5, 5}}}}}}}},
           json{{"runs", {{{"timeseries", {{"t", {1}}, {"util_realtime", {0.4}}}}}}}}}) {
    std::string html, table;
    EXPECT_NO_THROW(html = RenderReportHtml(j)) << j.dump();
    EXPECT_NO_THROW(table = RenderReportTable(j)) << j.dump();
    EXPECT_EQ(html.find("nan"), std::string::npos) << j.dump();
    EXPECT_EQ(html.find("inf"), std::string::npos) << j.dump();
  }
}

TEST(BenchReport, TableHasOneAlignedRowPerRun) {
  json slow = SampleRun("a-much-longer-run-name");
  slow["realtime"]["ttft_ms"]["p90"] = nullptr;
  slow.erase("async");
  slow["tokens_per_s"] = 98765.43;
  slow["prefix_cache_hit_rate"] = 0.8567;
  slow["realtime"]["slo_tpot_attainment"] = 0.95;
  slow["realtime"]["goodput_rps"] = 39.53;
  slow["predictor"]["ttft_observed_over_predicted_mean"] = 1.234;
  std::string table = RenderReportTable(Report({SampleRun("via-processor"), slow}));
  auto lines = Lines(table);
  ASSERT_EQ(lines.size(), 5u) << table;
  EXPECT_EQ(lines[0], "scenario seed (2026-11-23T10:00:00Z): 2 runs");
  for (const char* col :
       {"run", "policy", "async mode", "RT sent/ok", "TTFT p50/p90/p99 ms", "TPOT p50/p99 ms",
        "SLO %", "async sub/ok/shed/fail/lost/on-time", "util %", "tok/s", "prefix hit %",
        "TPOT SLO %", "goodput/s", "TTFT obs/pred"})
    EXPECT_NE(lines[1].find(col), std::string::npos) << col;
  EXPECT_EQ(lines[2].find_first_not_of("- "), std::string::npos);
  // Columns line up: every row has its policy where the header says "policy".
  size_t policy_at = lines[1].find("policy");
  EXPECT_EQ(lines[3].find("tidegate-default"), policy_at);
  EXPECT_EQ(lines[4].find("tidegate-default"), policy_at);
  EXPECT_EQ(lines[3].rfind("via-processor", 0), 0u);
  EXPECT_NE(lines[3].find("1200/1187"), std::string::npos);
  EXPECT_NE(lines[3].find("45.0/120.4/300.2"), std::string::npos);
  EXPECT_NE(lines[3].find("8.1/12.3"), std::string::npos);
  EXPECT_NE(lines[3].find("500/480/20/0/0/470"), std::string::npos);
  EXPECT_NE(lines[4].find("45.0/–/300.2"), std::string::npos);
  EXPECT_NE(lines[4].find("–/–/–/–/–/–"), std::string::npos);
  // Right-aligned numbers end together (the last column ends each line; "–" is 3 bytes).
  // No hit rate, TPOT attainment, goodput or predictor error: four "–".
  EXPECT_EQ(lines[3].size(), lines[1].size() + 2 * 4);
  EXPECT_NE(lines[3].find("1234.5"), std::string::npos);
  EXPECT_TRUE(lines[3].ends_with("–"));
  EXPECT_NE(lines[4].find("98765.4"), std::string::npos);
  EXPECT_NE(lines[4].find("85.7"), std::string::npos);
  EXPECT_NE(lines[4].find("95.0"), std::string::npos);
  EXPECT_NE(lines[4].find("39.5"), std::string::npos);
  EXPECT_TRUE(lines[4].ends_with("1.23"));
  EXPECT_EQ(lines[4].size(), lines[1].size() + 2 * 7);  // seven "–" (3 bytes each) in the row
}

TEST(BenchReport, TableOfNoRunsAndControlCharacters) {
  EXPECT_NE(RenderReportTable(json{{"runs", json::array()}}).find("(no runs)"), std::string::npos);
  json run = SampleRun("tab\there\nnewline");
  std::string table = RenderReportTable(Report({run}));
  EXPECT_EQ(Lines(table).size(), 4u) << table;
  EXPECT_NE(table.find("tab here newline"), std::string::npos);
}

}  // namespace
}  // namespace tidegate::bench
