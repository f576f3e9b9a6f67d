#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "pool/prom_text.h"

namespace tidegate::pool {
namespace {

struct Row {
  std::string name, family;
  MetricType type;
  std::vector<std::pair<std::string, std::string>> labels;
  double value;
  bool has_ts;
  int64_t ts;
};

class Recorder final : public PromVisitor {
 public:
  bool OnSample(const PromSample& s) override {
    Row r{std::string(s.name), std::string(s.family), s.type, {}, s.value,
          s.has_timestamp,     s.timestamp_ms};
    for (const auto& l : s.labels) r.labels.emplace_back(l.name, l.value);
    rows.push_back(std::move(r));
    return true;
  }
  void OnType(std::string_view f, MetricType t) override { types.emplace_back(f, t); }
  std::vector<Row> rows;
  std::vector<std::pair<std::string, MetricType>> types;
};

PromParseError Parse(std::string_view text, Recorder* rec) { return ParsePromText(text, *rec); }

TEST(PromText, ParsesSamplesLabelsValuesAndTimestamps) {
  Recorder r;
  auto err = Parse(
      "# HELP http_requests_total The total number of HTTP requests.\n"
      "# TYPE http_requests_total counter\n"
      "http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\n"
      "http_requests_total{method=\"post\",code=\"400\",}    3   1395066363000\n"
      "# a plain comment\n"
      "\n"
      "msdos_file_access_time_seconds{path=\"C:\\\\DIR\\\\FILE.TXT\",error=\"Cannot find file:\\n"
      "\\\"FILE.TXT\\\"\"} 1.458255915e9\n"
      "metric_without_timestamp_and_labels 12.47\n"
      "something_weird{problem=\"division by zero\"} +Inf -3982045\n"
      "neg -Inf\n"
      "nan NaN\n"
      "plus +1.5e3\n",
      &r);
  ASSERT_TRUE(err.ok()) << err.ToString();
  ASSERT_EQ(r.rows.size(), 8u);
  EXPECT_EQ(r.rows[0].name, "http_requests_total");
  EXPECT_EQ(r.rows[0].type, MetricType::kCounter);
  EXPECT_EQ(r.rows[0].labels.size(), 2u);
  EXPECT_EQ(r.rows[0].labels[1].second, "200");
  EXPECT_TRUE(r.rows[0].has_ts);
  EXPECT_EQ(r.rows[0].ts, 1395066363000);
  EXPECT_EQ(r.rows[1].value, 3);
  EXPECT_EQ(r.rows[2].labels[0].second, "C:\\DIR\\FILE.TXT");
  EXPECT_EQ(r.rows[2].labels[1].second, "Cannot find file:\n\"FILE.TXT\"");
  EXPECT_DOUBLE_EQ(r.rows[2].value, 1.458255915e9);
  EXPECT_EQ(r.rows[3].type, MetricType::kUntyped);
  EXPECT_TRUE(r.rows[3].labels.empty());
  EXPECT_TRUE(std::isinf(r.rows[4].value) && r.rows[4].value > 0);
  EXPECT_EQ(r.rows[4].ts, -3982045);
  EXPECT_TRUE(std::isinf(r.rows[5].value) && r.rows[5].value < 0);
  EXPECT_TRUE(std::isnan(r.rows[6].value));
  EXPECT_EQ(r.rows[7].value, 1500);
  ASSERT_EQ(r.types.size(), 1u);
}

TEST(PromText, HistogramAndSummarySeriesKeepTheirFamily) {
  Recorder r;
  auto err = Parse(
      "# TYPE lat histogram\n"
      "lat_bucket{le=\"0.05\"} 24054\n"
      "lat_bucket{le=\"+Inf\"} 144320\n"
      "lat_sum 53423\n"
      "lat_count 144320\n"
      "# TYPE rpc summary\n"
      "rpc{quantile=\"0.99\"} 76656\n"
      "rpc_sum 1.7560473e+07\n"
      "rpc_count 2693\n"
      "other 1\n",
      &r);
  ASSERT_TRUE(err.ok()) << err.ToString();
  ASSERT_EQ(r.rows.size(), 8u);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(r.rows[i].family, "lat");
    EXPECT_EQ(r.rows[i].type, MetricType::kHistogram);
  }
  for (int i = 4; i < 7; ++i) {
    EXPECT_EQ(r.rows[i].family, "rpc");
    EXPECT_EQ(r.rows[i].type, MetricType::kSummary);
  }
  EXPECT_EQ(r.rows[7].family, "other");
  EXPECT_EQ(r.rows[7].type, MetricType::kUntyped);
}

TEST(PromText, CrlfBlankLinesIndentationAndEof) {
  Recorder r;
  auto err = Parse("a 1\r\n\r\n   \t b{x=\"y\"}\t2\r\n# EOF\nc 3\n", &r);
  ASSERT_TRUE(err.ok()) << err.ToString();
  ASSERT_EQ(r.rows.size(), 2u);  // stops at # EOF
  EXPECT_EQ(r.rows[1].name, "b");
  EXPECT_EQ(r.rows[1].value, 2);
}

TEST(PromText, VisitorCanStopEarly) {
  struct First final : PromVisitor {
    int n = 0;
    bool OnSample(const PromSample&) override { return ++n < 1; }
  } v;
  EXPECT_TRUE(ParsePromText("a 1\nb 2\n!!! garbage\n", v).ok());
  EXPECT_EQ(v.n, 1);
}

TEST(PromText, EmptyInputIsFine) {
  Recorder r;
  EXPECT_TRUE(Parse("", &r).ok());
  EXPECT_TRUE(Parse("\n\n# only comments\n", &r).ok());
  EXPECT_TRUE(r.rows.empty());
}

struct BadCase {
  const char* text;
  size_t line;
  const char* reason_contains;
};

TEST(PromText, MalformedInputsReportLineAndReason) {
  const BadCase cases[] = {
      {"ok 1\nbad{a=\"unterminated} 1\n", 2, "unterminated"},
      {"x{a=\"1\" b=\"2\"} 1\n", 1, "expected ',' or '}'"},
      {"x{a=1} 1\n", 1, "expected '\"'"},
      {"x{a} 1\n", 1, "expected '='"},
      {"x{1a=\"v\"} 1\n", 1, "invalid label name"},
      {"x{a=\"v\",a=\"w\"} 1\n", 1, "duplicate label"},
      {"x{a=\"\\q\"} 1\n", 1, "invalid escape"},
      {"x{a=\"v\"\n", 1, "unterminated"},
      {"x\n", 1, "missing value"},
      {"x{a=\"v\"}\n", 1, "missing value"},
      {"x abc\n", 1, "invalid value"},
      {"x 1 2 3\n", 1, "unexpected text after timestamp"},
      {"x 1 12.5\n", 1, "invalid timestamp"},
      {"x-y 1\n", 1, "invalid character '-'"},
      {"{a=\"b\"} 1\n", 1, "expected a metric name"},
      {"1abc 1\n", 1, "expected a metric name"},
      {"# TYPE x\n", 1, "missing type"},
      {"# TYPE x nonsense\n", 1, "unknown metric type"},
      {"# TYPE x gauge extra\n", 1, "unexpected text"},
      {"# TYPE\n", 1, "expected a metric name"},
      {"# HELP bad-name text\n", 1, "invalid character"},
      {"a 1\nb 2\n# TYPE h histogram\nh_bucket 1\n", 4, "le"},
      {"# TYPE h histogram\nh_bucket{le=\"x\"} 1\n", 2, "invalid \"le\""},
      {"# TYPE s summary\ns{quantile=\"q\"} 1\n", 2, "invalid quantile"},
      {"x ++1\n", 1, "invalid value"},
      {"x 1e\n", 1, "invalid value"},
  };
  for (const auto& c : cases) {
    Recorder r;
    auto err = Parse(c.text, &r);
    EXPECT_FALSE(err.ok()) << c.text;
    EXPECT_EQ(err.line, c.line) << c.text << " → " << err.ToString();
    EXPECT_NE(err.reason.find(c.reason_contains), std::string::npos)
        << c.text << " → " << err.ToString();
    EXPECT_EQ(err.ToString().rfind("line " + std::to_string(c.line) + ": ", 0), 0u);
  }
}

TEST(PromText, ValueParsing) {
  double v;
  EXPECT_TRUE(ParsePromValue("1e400", &v));
  EXPECT_TRUE(std::isinf(v));
  EXPECT_TRUE(ParsePromValue("-0", &v));
  EXPECT_TRUE(ParsePromValue("Inf", &v));
  EXPECT_FALSE(ParsePromValue("", &v));
  EXPECT_FALSE(ParsePromValue("+", &v));
  EXPECT_FALSE(ParsePromValue("1.0x", &v));
}

}  // namespace
}  // namespace tidegate::pool
