#include "bench/trace.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/datetime.h"

namespace tidegate::bench {
namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '"'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '"'))
    s.remove_suffix(1);
  return s;
}

std::vector<std::string_view> SplitCsv(std::string_view line) {
  std::vector<std::string_view> out;
  size_t at = 0;
  while (true) {
    size_t comma = line.find(',', at);
    out.push_back(Trim(
        line.substr(at, comma == std::string_view::npos ? std::string_view::npos : comma - at)));
    if (comma == std::string_view::npos) break;
    at = comma + 1;
  }
  return out;
}

bool ParseNumber(std::string_view s, double* v) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *v);
  return ec == std::errc() && p == s.data() + s.size() && std::isfinite(*v);
}

// Seconds since the epoch of a date-time (common/datetime.h, lenient), or a plain number.
bool ParseTime(std::string_view s, double* out) {
  if (ParseNumber(s, out)) return true;
  std::chrono::system_clock::time_point tp;
  if (!ParseRfc3339(s, &tp, /*lenient=*/true)) return false;
  *out = std::chrono::duration<double>(tp.time_since_epoch()).count();
  return true;
}

constexpr int kMaxTokens = 1 << 20;  // per request, either way

bool ParseCount(std::string_view s, int* v) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *v);
  return ec == std::errc() && p == s.data() + s.size() && *v >= 0 && *v <= kMaxTokens;
}

}  // namespace

bool ParseTrace(std::string_view text, std::vector<TraceRow>* out, std::string* error) {
  out->clear();
  std::vector<std::pair<double, TraceRow>> rows;
  int ts_col = -1, ctx_col = -1, gen_col = -1;
  bool csv = false, decided = false;
  size_t line_no = 0;
  for (size_t at = 0; at <= text.size();) {
    size_t nl = text.find('\n', at);
    std::string_view line =
        text.substr(at, nl == std::string_view::npos ? std::string_view::npos : nl - at);
    at = nl == std::string_view::npos ? text.size() + 1 : nl + 1;
    ++line_no;
    if (Trim(line).empty()) continue;
    const std::string where = "line " + std::to_string(line_no) + ": ";
    if (!decided) {
      decided = true;
      csv = Trim(line).front() != '{';
      if (csv) {
        auto cols = SplitCsv(line);
        for (size_t i = 0; i < cols.size(); ++i) {
          const std::string c = Lower(cols[i]);
          if (c == "timestamp") ts_col = static_cast<int>(i);
          if (c == "contexttokens") ctx_col = static_cast<int>(i);
          if (c == "generatedtokens") gen_col = static_cast<int>(i);
        }
        if (ts_col < 0 || ctx_col < 0 || gen_col < 0) {
          *error = where + "the CSV header must name TIMESTAMP, ContextTokens and GeneratedTokens";
          return false;
        }
        continue;
      }
    }
    if (rows.size() >= kMaxTraceRows) {
      *error = where + "more than " + std::to_string(kMaxTraceRows) + " requests";
      return false;
    }
    double t = 0;
    TraceRow r;
    if (csv) {
      auto cols = SplitCsv(line);
      const size_t need = static_cast<size_t>(std::max({ts_col, ctx_col, gen_col})) + 1;
      if (cols.size() < need) {
        *error = where + "expected at least " + std::to_string(need) + " columns";
        return false;
      }
      if (!ParseTime(cols[ts_col], &t)) {
        *error = where + "TIMESTAMP \"" + std::string(cols[ts_col]) + "\" is not a time";
        return false;
      }
      if (!ParseCount(cols[ctx_col], &r.context_tokens) ||
          !ParseCount(cols[gen_col], &r.generated_tokens)) {
        *error = where + "token counts must be non-negative integers";
        return false;
      }
    } else {
      nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_discarded() || !j.is_object()) {
        *error = where + "not a JSON object";
        return false;
      }
      auto field = [&](const char* a, const char* b) -> const nlohmann::json* {
        if (j.contains(a)) return &j[a];
        if (j.contains(b)) return &j[b];
        return nullptr;
      };
      const auto* ts = field("timestamp", "TIMESTAMP");
      const auto* ctx = field("context_tokens", "ContextTokens");
      const auto* gen = field("generated_tokens", "GeneratedTokens");
      if (!ts || !ctx || !gen) {
        *error = where + "needs timestamp, context_tokens and generated_tokens";
        return false;
      }
      if (ts->is_number()) {
        t = ts->get<double>();
      } else if (!ts->is_string() || !ParseTime(ts->get<std::string>(), &t)) {
        *error = where + "timestamp is not a time";
        return false;
      }
      auto count = [](const nlohmann::json& v, int* out) {
        if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > kMaxTokens)
          return false;
        *out = static_cast<int>(v.get<int64_t>());
        return true;
      };
      if (!count(*ctx, &r.context_tokens) || !count(*gen, &r.generated_tokens)) {
        *error = where + "token counts must be non-negative integers";
        return false;
      }
    }
    rows.emplace_back(t, r);
  }
  if (rows.empty()) {
    *error = "the trace holds no requests";
    return false;
  }
  std::stable_sort(rows.begin(), rows.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  const double t0 = rows.front().first;
  out->reserve(rows.size());
  for (auto& [t, r] : rows) {
    r.t_s = t - t0;
    out->push_back(r);
  }
  return true;
}

bool LoadTrace(const std::string& path, std::vector<TraceRow>* out, std::string* error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *error = "cannot read trace file " + path;
    return false;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  if (!ParseTrace(ss.str(), out, error)) {
    *error = path + ": " + *error;
    return false;
  }
  return true;
}

}  // namespace tidegate::bench
