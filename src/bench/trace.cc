#include "bench/trace.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

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

// Seconds since the epoch of "YYYY-MM-DD HH:MM:SS[.frac]" (UTC), or a plain number.
bool ParseTime(std::string_view s, double* out) {
  if (ParseNumber(s, out)) return true;
  if (s.size() < 19) return false;
  auto num = [&](size_t at, size_t n, int* v) {
    auto [p, ec] = std::from_chars(s.data() + at, s.data() + at + n, *v);
    return ec == std::errc() && p == s.data() + at + n;
  };
  int y, mo, d, h, mi, sec;
  if (!num(0, 4, &y) || s[4] != '-' || !num(5, 2, &mo) || s[7] != '-' || !num(8, 2, &d) ||
      (s[10] != ' ' && s[10] != 'T') || !num(11, 2, &h) || s[13] != ':' || !num(14, 2, &mi) ||
      s[16] != ':' || !num(17, 2, &sec))
    return false;
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60) return false;
  double frac = 0;
  std::string_view rest = s.substr(19);
  double offset_s = 0;  // "+HH:MM" / "-HH:MM" (the 2024 Azure traces write "+00:00"), or "Z"
  if (!rest.empty() && rest.back() == 'Z') {
    rest.remove_suffix(1);
  } else if (rest.size() >= 6 && (rest[rest.size() - 6] == '+' || rest[rest.size() - 6] == '-') &&
             rest[rest.size() - 3] == ':') {
    std::string_view z = rest.substr(rest.size() - 6);
    int oh, om;
    auto r1 = std::from_chars(z.data() + 1, z.data() + 3, oh);
    auto r2 = std::from_chars(z.data() + 4, z.data() + 6, om);
    if (r1.ec != std::errc() || r2.ec != std::errc() || r1.ptr != z.data() + 3 ||
        r2.ptr != z.data() + 6 || oh > 23 || om > 59)
      return false;
    offset_s = (z[0] == '+' ? 1 : -1) * (oh * 3600.0 + om * 60.0);
    rest.remove_suffix(6);
  }
  if (!rest.empty()) {
    if (rest[0] != '.' || rest.size() < 2) return false;
    double scale = 0.1;
    for (char c : rest.substr(1)) {
      if (c < '0' || c > '9') return false;
      frac += (c - '0') * scale;
      scale /= 10;
    }
  }
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = sec;
  *out = static_cast<double>(timegm(&tm)) + frac - offset_s;
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
