#include "pool/prom_text.h"

#include <charconv>
#include <cmath>
#include <limits>

namespace tidegate::pool {
namespace {

bool IsBlank(char c) { return c == ' ' || c == '\t'; }
bool IsNameStart(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
}
bool IsNameChar(char c) { return IsNameStart(c) || (c >= '0' && c <= '9'); }
bool IsLabelStart(char c) { return IsNameStart(c) && c != ':'; }
bool IsLabelChar(char c) { return IsNameChar(c) && c != ':'; }

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// Cursor over one line (without its terminator).
struct Cursor {
  std::string_view s;
  size_t i = 0;
  bool done() const { return i >= s.size(); }
  char peek() const { return s[i]; }
  void SkipBlanks() {
    while (i < s.size() && IsBlank(s[i])) ++i;
  }
  std::string_view Token() {  // up to the next blank
    size_t b = i;
    while (i < s.size() && !IsBlank(s[i])) ++i;
    return s.substr(b, i - b);
  }
  std::string_view MetricName() {
    size_t b = i;
    if (i < s.size() && IsNameStart(s[i])) {
      ++i;
      while (i < s.size() && IsNameChar(s[i])) ++i;
    }
    return s.substr(b, i - b);
  }
  std::string_view LabelName() {
    size_t b = i;
    if (i < s.size() && IsLabelStart(s[i])) {
      ++i;
      while (i < s.size() && IsLabelChar(s[i])) ++i;
    }
    return s.substr(b, i - b);
  }
};

bool ParseType(std::string_view word, MetricType* t) {
  static constexpr std::pair<std::string_view, MetricType> kTypes[] = {
      {"counter", MetricType::kCounter},
      {"gauge", MetricType::kGauge},
      {"histogram", MetricType::kHistogram},
      {"summary", MetricType::kSummary},
      {"untyped", MetricType::kUntyped},
      {"unknown", MetricType::kUntyped},
      {"gaugehistogram", MetricType::kGaugeHistogram},
      {"info", MetricType::kInfo},
      {"stateset", MetricType::kStateSet},
  };
  for (const auto& [name, type] : kTypes) {
    if (word == name) {
      *t = type;
      return true;
    }
  }
  return false;
}

// Does series `name` belong to family `family` of type `type`?
bool BelongsTo(std::string_view name, std::string_view family, MetricType type) {
  if (family.empty()) return false;
  if (name == family) return true;
  if (name.size() <= family.size() || name.substr(0, family.size()) != family) return false;
  std::string_view suffix = name.substr(family.size());
  switch (type) {
    case MetricType::kHistogram:
      return suffix == "_bucket" || suffix == "_sum" || suffix == "_count" || suffix == "_created";
    case MetricType::kGaugeHistogram:
      return suffix == "_bucket" || suffix == "_gsum" || suffix == "_gcount";
    case MetricType::kSummary:
      return suffix == "_sum" || suffix == "_count" || suffix == "_created";
    case MetricType::kCounter:
      return suffix == "_total" || suffix == "_created";
    case MetricType::kInfo:
      return suffix == "_info";
    default:
      return false;
  }
}

}  // namespace

std::string_view MetricTypeName(MetricType t) {
  switch (t) {
    case MetricType::kUntyped:
      return "untyped";
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
    case MetricType::kSummary:
      return "summary";
    case MetricType::kGaugeHistogram:
      return "gaugehistogram";
    case MetricType::kInfo:
      return "info";
    case MetricType::kStateSet:
      return "stateset";
  }
  return "untyped";
}

std::string_view PromSample::Label(std::string_view label_name) const {
  for (const auto& l : labels)
    if (l.name == label_name) return l.value;
  return {};
}

bool PromSample::HasLabel(std::string_view label_name) const {
  for (const auto& l : labels)
    if (l.name == label_name) return true;
  return false;
}

std::string PromParseError::ToString() const {
  if (ok()) return {};
  return "line " + std::to_string(line) + ": " + reason;
}

bool ParsePromValue(std::string_view text, double* out) {
  if (text.empty()) return false;
  bool negative = false;
  if (text.front() == '+' || text.front() == '-') {
    negative = text.front() == '-';
    text.remove_prefix(1);
    if (text.empty() || text.front() == '+' || text.front() == '-') return false;
  }
  double v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (p != text.data() + text.size()) return false;
  if (ec == std::errc::result_out_of_range) {
    // Overflow → ±Inf, underflow → 0, as Go's ParseFloat reports them (close enough here).
    v = (text.find_first_of("eE") != std::string_view::npos &&
         text.find("e-") == std::string_view::npos && text.find("E-") == std::string_view::npos)
            ? std::numeric_limits<double>::infinity()
            : 0.0;
  } else if (ec != std::errc()) {
    return false;
  }
  *out = negative ? -v : v;
  return true;
}

PromParseError PromTextParser::Parse(std::string_view text, PromVisitor& visitor) {
  std::string_view family;  // from the last # TYPE line
  MetricType family_type = MetricType::kUntyped;
  size_t line_no = 0;
  size_t pos = 0;
  auto fail = [&](std::string reason) { return PromParseError{line_no, std::move(reason)}; };

  while (pos < text.size()) {
    ++line_no;
    size_t nl = text.find('\n', pos);
    size_t end = nl == std::string_view::npos ? text.size() : nl;
    std::string_view line = text.substr(pos, end - pos);
    pos = nl == std::string_view::npos ? text.size() : nl + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);

    Cursor c{line};
    c.SkipBlanks();
    if (c.done()) continue;

    if (c.peek() == '#') {
      ++c.i;
      c.SkipBlanks();
      std::string_view keyword = c.Token();
      if (keyword == "EOF") {
        c.SkipBlanks();
        if (c.done()) return {};
        continue;  // just a comment
      }
      if (keyword != "HELP" && keyword != "TYPE") continue;  // a plain comment
      c.SkipBlanks();
      std::string_view name = c.MetricName();
      if (name.empty()) return fail("expected a metric name after # " + std::string(keyword));
      if (!c.done() && !IsBlank(c.peek()))
        return fail("invalid character '" + std::string(1, c.peek()) + "' in metric name");
      if (keyword == "HELP") {
        // The docstring may contain \\ and \n escapes; the scheduler does not need it.
        if (!line.empty() && line.back() == '\\') {
          // A lone trailing backslash is an incomplete escape.
          size_t n = 0;
          for (size_t k = line.size(); k > 0 && line[k - 1] == '\\'; --k) ++n;
          if (n % 2 == 1) return fail("incomplete escape at end of HELP text");
        }
        continue;
      }
      c.SkipBlanks();
      std::string_view word = c.Token();
      MetricType type;
      if (word.empty()) return fail("missing type in # TYPE line for " + std::string(name));
      if (!ParseType(word, &type)) return fail("unknown metric type \"" + std::string(word) + "\"");
      c.SkipBlanks();
      if (!c.done()) return fail("unexpected text after metric type");
      family = name;
      family_type = type;
      visitor.OnType(name, type);
      continue;
    }

    // A sample: name [{labels}] value [timestamp]
    PromSample sample;
    sample.name = c.MetricName();
    if (sample.name.empty())
      return fail("expected a metric name, found '" + std::string(1, c.peek()) + "'");
    labels_.clear();
    scratch_.clear();
    // Unescaped label values never grow, so reserving the line length keeps views stable.
    if (scratch_.capacity() < line.size()) scratch_.reserve(line.size());
    c.SkipBlanks();
    if (!c.done() && c.peek() == '{') {
      ++c.i;
      while (true) {
        c.SkipBlanks();
        if (c.done()) return fail("unterminated label set");
        if (c.peek() == '}') {
          ++c.i;
          break;
        }
        std::string_view lname = c.LabelName();
        if (lname.empty())
          return fail("invalid label name starting with '" + std::string(1, c.peek()) + "'");
        c.SkipBlanks();
        if (c.done() || c.peek() != '=')
          return fail("expected '=' after label name \"" + std::string(lname) + "\"");
        ++c.i;
        c.SkipBlanks();
        if (c.done() || c.peek() != '"')
          return fail("expected '\"' to open the value of label \"" + std::string(lname) + "\"");
        ++c.i;
        size_t vb = c.i;
        bool escaped = false;
        bool closed = false;
        while (c.i < line.size()) {
          char ch = line[c.i];
          if (ch == '"') {
            closed = true;
            break;
          }
          if (ch == '\\') {
            escaped = true;
            ++c.i;
            if (c.i >= line.size()) break;
            char e = line[c.i];
            if (e != '\\' && e != '"' && e != 'n')
              return fail("invalid escape sequence '\\" + std::string(1, e) + "' in label value");
          }
          ++c.i;
        }
        if (!closed) return fail("unterminated value of label \"" + std::string(lname) + "\"");
        std::string_view raw = line.substr(vb, c.i - vb);
        ++c.i;  // closing quote
        std::string_view value = raw;
        if (escaped) {
          size_t start = scratch_.size();
          for (size_t k = 0; k < raw.size(); ++k) {
            char ch = raw[k];
            if (ch == '\\') {
              char e = raw[++k];
              scratch_.push_back(e == 'n' ? '\n' : e);
            } else {
              scratch_.push_back(ch);
            }
          }
          value = std::string_view(scratch_).substr(start);
        }
        for (const auto& l : labels_)
          if (l.name == lname) return fail("duplicate label \"" + std::string(lname) + "\"");
        labels_.push_back({lname, value});
        c.SkipBlanks();
        if (c.done()) return fail("unterminated label set");
        if (c.peek() == ',') {
          ++c.i;
          continue;
        }
        if (c.peek() == '}') {
          ++c.i;
          break;
        }
        return fail("expected ',' or '}' after label value, found '" + std::string(1, c.peek()) +
                    "'");
      }
      c.SkipBlanks();
    }
    if (c.done()) return fail("missing value for " + std::string(sample.name));
    size_t before_value = c.i;
    std::string_view vtext = c.Token();
    if (before_value > 0 && !IsBlank(line[before_value - 1]) && line[before_value - 1] != '}')
      return fail("invalid character '" + std::string(1, line[before_value]) + "' in metric name");
    if (!ParsePromValue(vtext, &sample.value))
      return fail("invalid value \"" + std::string(vtext) + "\"");
    c.SkipBlanks();
    if (!c.done()) {
      std::string_view ts = c.Token();
      int64_t t = 0;
      auto [p, ec] = std::from_chars(ts.data(), ts.data() + ts.size(), t);
      if (ec != std::errc() || p != ts.data() + ts.size())
        return fail("invalid timestamp \"" + std::string(ts) + "\"");
      sample.has_timestamp = true;
      sample.timestamp_ms = t;
      c.SkipBlanks();
      if (!c.done()) return fail("unexpected text after timestamp");
    }
    sample.labels = labels_;
    if (BelongsTo(sample.name, family, family_type)) {
      sample.family = family;
      sample.type = family_type;
      if ((family_type == MetricType::kHistogram || family_type == MetricType::kGaugeHistogram) &&
          EndsWith(sample.name, "_bucket")) {
        double le;
        if (!sample.HasLabel("le")) return fail("histogram bucket without an \"le\" label");
        if (!ParsePromValue(sample.Label("le"), &le))
          return fail("invalid \"le\" bound \"" + std::string(sample.Label("le")) + "\"");
      } else if (family_type == MetricType::kSummary && sample.name == family &&
                 sample.HasLabel("quantile")) {
        double q;
        if (!ParsePromValue(sample.Label("quantile"), &q))
          return fail("invalid quantile \"" + std::string(sample.Label("quantile")) + "\"");
      }
    } else {
      sample.family = sample.name;
      sample.type = MetricType::kUntyped;
    }
    if (!visitor.OnSample(sample)) return {};
  }
  return {};
}

PromParseError ParsePromText(std::string_view text, PromVisitor& visitor) {
  thread_local PromTextParser parser;
  return parser.Parse(text, visitor);
}

}  // namespace tidegate::pool
