// pool/prom_text.h — a streaming parser for the Prometheus text exposition format (0.0.4).
//
// Contract: ParsePromText() walks a /metrics page line by line and hands every sample to a
// visitor as views into the input (plus, for label values that contain escapes, views into a
// scratch buffer owned by the parser). Views are valid only during the OnSample() call. It
// understands comments, `# HELP` / `# TYPE` lines (and the OpenMetrics `# EOF` terminator), label
// sets with `\\`, `\"` and `\n` escapes and an optional trailing comma, values including NaN,
// +Inf/-Inf and a leading '+', optional integer millisecond timestamps, CRLF line endings, and
// histogram/summary series (`_bucket`/`_sum`/`_count`/quantile samples are reported with the
// family and type declared by the preceding `# TYPE`). The first malformed line stops parsing
// with a 1-based line number and a reason; it never reads past the input or throws. After the
// parser has grown its buffers it does not allocate per sample.
// Thread-safety: a PromTextParser is not thread-safe (it owns scratch buffers); use one per
// thread. The free function ParsePromText() uses a thread-local parser.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace tidegate::pool {

enum class MetricType : uint8_t {
  kUntyped,
  kCounter,
  kGauge,
  kHistogram,
  kSummary,
  kGaugeHistogram,
  kInfo,
  kStateSet,
};
std::string_view MetricTypeName(MetricType t);

struct PromLabel {
  std::string_view name;
  std::string_view value;  // unescaped
};

struct PromSample {
  std::string_view name;    // the series name as written, e.g. "x_bucket"
  std::string_view family;  // the # TYPE family it belongs to ("x"), or `name` if none
  MetricType type = MetricType::kUntyped;
  std::span<const PromLabel> labels;
  double value = 0;
  bool has_timestamp = false;
  int64_t timestamp_ms = 0;

  // Value of a label, or empty when absent (use HasLabel to tell "absent" from "").
  std::string_view Label(std::string_view label_name) const;
  bool HasLabel(std::string_view label_name) const;
};

class PromVisitor {
 public:
  virtual ~PromVisitor() = default;
  // Return false to stop parsing early (ParsePromText then reports success).
  virtual bool OnSample(const PromSample& sample) = 0;
  // A `# TYPE name type` line (optional to handle).
  virtual void OnType(std::string_view family, MetricType type) {}
};

struct PromParseError {
  size_t line = 0;     // 1-based; 0 means no error
  std::string reason;  // e.g. "expected '=' after label name"
  bool ok() const { return line == 0; }
  std::string ToString() const;  // "line 12: expected ..."
};

class PromTextParser {
 public:
  PromParseError Parse(std::string_view text, PromVisitor& visitor);

 private:
  std::vector<PromLabel> labels_;
  std::string scratch_;
};

// Parses with a thread-local PromTextParser.
PromParseError ParsePromText(std::string_view text, PromVisitor& visitor);

// Parses a Prometheus float ("1.5e3", "NaN", "+Inf", "-Inf"). Returns false if malformed.
bool ParsePromValue(std::string_view text, double* out);

}  // namespace tidegate::pool
