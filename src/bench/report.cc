#include "bench/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <initializer_list>
#include <optional>
#include <sstream>
#include <vector>

namespace tidegate::bench {

namespace {

using nlohmann::json;
using OptD = std::optional<double>;

constexpr const char* kDash = "\xE2\x80\x93";  // "–": a value the report does not have

// ---------------------------------------------------------------------------------------------
// Reading the JSON defensively: any missing or mistyped field is nullopt / empty.

const json* Field(const json& j, const char* key) {
  if (!j.is_object()) return nullptr;
  auto it = j.find(key);
  return it == j.end() ? nullptr : &*it;
}

const json* PathOf(const json& j, std::initializer_list<const char*> keys) {
  const json* cur = &j;
  for (const char* k : keys) {
    cur = Field(*cur, k);
    if (!cur) return nullptr;
  }
  return cur;
}

OptD AsNum(const json& v) {
  if (!v.is_number()) return std::nullopt;
  double d = v.get<double>();
  if (!std::isfinite(d)) return std::nullopt;
  return d;
}

OptD Num(const json& j, std::initializer_list<const char*> keys) {
  const json* v = PathOf(j, keys);
  return v ? AsNum(*v) : std::nullopt;
}

std::string Str(const json& j, const char* key) {
  const json* v = Field(j, key);
  if (!v) return {};
  if (v->is_string()) return v->get<std::string>();
  if (v->is_number() || v->is_boolean()) return v->dump();
  return {};
}

using Values = std::vector<OptD>;

Values SeriesOf(const json* ts, const char* key) {
  Values out;
  const json* arr = ts ? Field(*ts, key) : nullptr;
  if (!arr || !arr->is_array()) return out;
  out.reserve(arr->size());
  for (const auto& v : *arr) out.push_back(AsNum(v));
  return out;
}

struct RunView {
  std::string name, policy, async_mode, target;
  OptD duration_s;
  OptD sent, ok, failed, ttft50, ttft90, ttft99, tpot50, tpot90, tpot99, slo;
  OptD a_sub, a_ok, a_shed, a_fail, a_lost, a_ontime;
  OptD util, tps;
  OptD prefix_hit;  // the simulators' prefix-cache hits ÷ queries (tokens) over the run
  OptD slo_tpot, goodput, pred_ttft;  // TPOT SLO attainment; requests/s within every SLO;
                                      // the predictor's mean observed ÷ predicted TTFT
  const json* ts = nullptr;
  const json* raw = nullptr;  // the run's object
};

RunView ReadRun(const json& r, size_t index) {
  RunView v;
  v.raw = &r;
  v.name = Str(r, "name");
  if (v.name.empty()) v.name = "run " + std::to_string(index + 1);
  v.policy = Str(r, "policy");
  v.async_mode = Str(r, "async_mode");
  v.target = Str(r, "target");
  v.duration_s = Num(r, {"duration_s"});
  v.sent = Num(r, {"realtime", "sent"});
  v.ok = Num(r, {"realtime", "succeeded"});
  v.failed = Num(r, {"realtime", "failed"});
  v.ttft50 = Num(r, {"realtime", "ttft_ms", "p50"});
  v.ttft90 = Num(r, {"realtime", "ttft_ms", "p90"});
  v.ttft99 = Num(r, {"realtime", "ttft_ms", "p99"});
  v.tpot50 = Num(r, {"realtime", "tpot_ms", "p50"});
  v.tpot90 = Num(r, {"realtime", "tpot_ms", "p90"});
  v.tpot99 = Num(r, {"realtime", "tpot_ms", "p99"});
  v.slo = Num(r, {"realtime", "slo_attainment"});
  v.a_sub = Num(r, {"async", "submitted"});
  v.a_ok = Num(r, {"async", "succeeded"});
  v.a_shed = Num(r, {"async", "shed"});
  v.a_fail = Num(r, {"async", "failed"});
  v.a_lost = Num(r, {"async", "lost"});
  v.a_ontime = Num(r, {"async", "on_time"});
  v.util = Num(r, {"utilization"});
  v.tps = Num(r, {"tokens_per_s"});
  v.prefix_hit = Num(r, {"prefix_cache_hit_rate"});
  v.slo_tpot = Num(r, {"realtime", "slo_tpot_attainment"});
  v.goodput = Num(r, {"realtime", "goodput_rps"});
  v.pred_ttft = Num(r, {"predictor", "ttft_observed_over_predicted_mean"});
  v.ts = Field(r, "timeseries");
  if (v.ts && !v.ts->is_object()) v.ts = nullptr;
  return v;
}

std::vector<RunView> ReadRuns(const json& report) {
  std::vector<RunView> runs;
  const json* arr = Field(report, "runs");
  if (!arr || !arr->is_array()) return runs;
  for (size_t i = 0; i < arr->size(); ++i) runs.push_back(ReadRun((*arr)[i], i));
  return runs;
}

// ---------------------------------------------------------------------------------------------
// Number formatting.

std::string Fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

std::string Ms(OptD v) { return v ? Fixed(*v, 1) : kDash; }
std::string Pct(OptD ratio) { return ratio ? Fixed(*ratio * 100.0, 1) : kDash; }
std::string Rate(OptD v) { return v ? Fixed(*v, 1) : kDash; }
std::string Count(OptD v) {
  if (!v) return kDash;
  bool integral = std::fabs(*v) < 1e15 && std::floor(*v) == *v;
  return Fixed(*v, integral ? 0 : 1);
}

// Coordinates in SVG.
std::string C(double v) { return Fixed(v, 1); }

// ---------------------------------------------------------------------------------------------
// Text helpers.

size_t DisplayWidth(std::string_view s) {  // code points; good enough for a terminal table
  size_t n = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80) ++n;
  return n;
}

// At most `max_chars` code points, ending in "…" when cut.
std::string Truncate(const std::string& s, size_t max_chars) {
  if (DisplayWidth(s) <= max_chars) return s;
  size_t n = 0, i = 0;
  for (; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) {
      if (n == max_chars - 1) break;
      ++n;
    }
  }
  return s.substr(0, i) + "\xE2\x80\xA6";
}

// Control characters would break the table's alignment.
std::string OneLine(const std::string& s) {
  std::string out = s;
  for (char& c : out)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  return out;
}

// ---------------------------------------------------------------------------------------------
// Axes.

struct Axis {
  double lo = 0, hi = 1, step = 1;
};

double NiceStep(double raw) {
  if (!(raw > 0) || !std::isfinite(raw)) return 1;
  double p = std::pow(10.0, std::floor(std::log10(raw)));
  double f = raw / p;
  double n = f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10;
  return n * p;
}

Axis NiceAxis(double lo, double hi, int ticks) {
  if (!(hi > lo)) hi = lo + 1;
  Axis a;
  a.step = NiceStep((hi - lo) / ticks);
  a.lo = std::floor(lo / a.step + 1e-9) * a.step;
  a.hi = std::ceil(hi / a.step - 1e-9) * a.step;
  if (!(a.hi > a.lo)) a.hi = a.lo + a.step;
  return a;
}

std::vector<double> Ticks(const Axis& a) {
  std::vector<double> out;
  for (int k = 0; k < 1000; ++k) {
    double v = a.lo + k * a.step;
    if (v > a.hi + a.step * 1e-6) break;
    if (std::fabs(v) < a.step * 1e-9) v = 0;
    out.push_back(v);
  }
  return out;
}

std::string TickLabel(double v, const Axis& a) {
  double scale = 1, step = a.step;
  const char* suffix = "";
  if (std::max(std::fabs(a.lo), std::fabs(a.hi)) >= 10000) {
    scale = 1000;
    step /= 1000;
    suffix = "k";
  }
  int decimals = step >= 1 ? 0 : std::min(6, static_cast<int>(std::ceil(-std::log10(step) - 1e-9)));
  return Fixed(v / scale, decimals) + suffix;
}

// ---------------------------------------------------------------------------------------------
// SVG pieces.

// Rough width of `text` at 12px sans-serif (for laying out legends).
double TextWidth(const std::string& text) { return 6.8 * static_cast<double>(DisplayWidth(text)); }

struct LegendItem {
  std::string label, color;
  bool area;
};

// Right-aligned at `right`, baseline `y`.
void Legend(std::ostringstream& o, const std::vector<LegendItem>& items, double right, double y) {
  double width = 0;
  for (const auto& it : items) width += 18 + TextWidth(it.label) + 14;
  double x = right - width + 14;
  o << "<g class=\"legend\">";
  for (const auto& it : items) {
    if (it.area)
      o << "<rect class=\"swatch\" x=\"" << C(x) << "\" y=\"" << C(y - 10) << "\" width=\"12\" "
        << "height=\"12\" rx=\"2\" fill=\"" << it.color << "\"/>";
    else
      o << "<rect class=\"swatch\" x=\"" << C(x) << "\" y=\"" << C(y - 5.5) << "\" width=\"14\" "
        << "height=\"3\" fill=\"" << it.color << "\"/>";
    o << "<text x=\"" << C(x + 18) << "\" y=\"" << C(y) << "\">" << HtmlEscape(it.label)
      << "</text>";
    x += 18 + TextWidth(it.label) + 14;
  }
  o << "</g>";
}

struct Series {
  std::string key, label, color;
  bool area = false;
  Values y;     // the line, or an area's upper edge
  Values base;  // an area's lower edge (missing points = 0)
};

struct TimeChart {
  std::string kind, title, run;
  Values t;
  std::vector<Series> series;
  OptD fixed_y_hi;  // e.g. 100 for percentages
  OptD duration_s;  // x range when there is no data
};

constexpr double kW = 600, kH = 300;
constexpr double kLeft = 58, kRight = 18, kTop = 42, kBottom = 46;

std::string RenderTimeChart(const TimeChart& c) {
  // Which points can be drawn, and the data ranges.
  double xmin = INFINITY, xmax = -INFINITY, ymin = 0, ymax = -INFINITY;
  auto base_at = [](const Series& s, size_t i) {
    return i < s.base.size() && s.base[i] ? *s.base[i] : 0.0;
  };
  auto valid = [&](const Series& s, size_t i) {
    return i < c.t.size() && i < s.y.size() && c.t[i] && s.y[i];
  };
  bool any = false;
  for (const auto& s : c.series) {
    for (size_t i = 0; i < s.y.size(); ++i) {
      if (!valid(s, i)) continue;
      any = true;
      xmin = std::min(xmin, *c.t[i]);
      xmax = std::max(xmax, *c.t[i]);
      ymin = std::min({ymin, *s.y[i], base_at(s, i)});
      ymax = std::max(ymax, *s.y[i]);
    }
  }
  if (!any) {
    xmin = 0;
    xmax = c.duration_s && *c.duration_s > 0 ? *c.duration_s : 1;
    ymax = 1;
  }
  Axis xa = NiceAxis(xmin, xmax, 6);
  if (any) {  // with data, the x axis spans exactly the data (ticks are placed inside it)
    xa.lo = xmin;
    xa.hi = xmax > xmin ? xmax : xmin + 1;
  }
  Axis ya = c.fixed_y_hi ? Axis{0, *c.fixed_y_hi, NiceStep(*c.fixed_y_hi / 5)}
                         : NiceAxis(ymin, ymax > ymin ? ymax : ymin + 1, 5);

  const double px0 = kLeft, px1 = kW - kRight, py0 = kTop, py1 = kH - kBottom;
  auto X = [&](double t) { return px0 + (t - xa.lo) / (xa.hi - xa.lo) * (px1 - px0); };
  auto Y = [&](double v) {
    v = std::clamp(v, ya.lo, ya.hi);
    return py1 - (v - ya.lo) / (ya.hi - ya.lo) * (py1 - py0);
  };

  std::ostringstream o;
  o << "<svg class=\"chart\" data-chart=\"" << c.kind << "\" data-run=\"" << HtmlEscape(c.run)
    << "\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 " << kW << " " << kH << "\" width=\""
    << kW << "\" height=\"" << kH << "\" role=\"img\" aria-label=\""
    << HtmlEscape(c.title + " — " + c.run) << "\">";
  o << "<rect class=\"bg\" x=\"0\" y=\"0\" width=\"" << kW << "\" height=\"" << kH << "\"/>";
  o << "<text class=\"title\" x=\"12\" y=\"22\">" << HtmlEscape(c.title) << "</text>";

  // Grid and y ticks.
  o << "<g class=\"axis y\">";
  for (double v : Ticks(ya)) {
    o << "<line class=\"grid\" x1=\"" << C(px0) << "\" x2=\"" << C(px1) << "\" y1=\"" << C(Y(v))
      << "\" y2=\"" << C(Y(v)) << "\"/>";
    o << "<text x=\"" << C(px0 - 6) << "\" y=\"" << C(Y(v) + 4) << "\" text-anchor=\"end\">"
      << TickLabel(v, ya) << "</text>";
  }
  o << "</g>";
  // X ticks: nice values inside the data range.
  Axis xt = NiceAxis(xa.lo, xa.hi, 6);
  o << "<g class=\"axis x\">";
  for (double v : Ticks(xt)) {
    if (v < xa.lo - 1e-9 * xt.step || v > xa.hi + 1e-9 * xt.step) continue;
    o << "<line class=\"tick\" x1=\"" << C(X(v)) << "\" x2=\"" << C(X(v)) << "\" y1=\"" << C(py1)
      << "\" y2=\"" << C(py1 + 5) << "\"/>";
    o << "<text x=\"" << C(X(v)) << "\" y=\"" << C(py1 + 18) << "\" text-anchor=\"middle\">"
      << TickLabel(v, xt) << "</text>";
  }
  o << "<text class=\"axis-title\" x=\"" << C((px0 + px1) / 2) << "\" y=\"" << C(kH - 8)
    << "\" text-anchor=\"middle\">time (s)</text>";
  o << "</g>";

  o << "<line class=\"axis-line\" x1=\"" << C(px0) << "\" x2=\"" << C(px0) << "\" y1=\"" << C(py0)
    << "\" y2=\"" << C(py1) << "\"/>";
  o << "<line class=\"axis-line\" x1=\"" << C(px0) << "\" x2=\"" << C(px1) << "\" y1=\"" << C(py1)
    << "\" y2=\"" << C(py1) << "\"/>";

  // Series, over the axes (so a line at 0 stays visible): one element each; gaps in the data
  // split it into sub-paths.
  int drawn = 0;
  for (const auto& s : c.series) {
    std::string d;
    size_t i = 0, n = std::min(s.y.size(), c.t.size());
    while (i < n) {
      if (!valid(s, i)) {
        ++i;
        continue;
      }
      size_t j = i;
      while (j < n && valid(s, j)) ++j;  // [i, j) is one segment
      if (s.area) {
        if (j - i == 1) {  // a lone point: a thin bar
          double x = X(*c.t[i]);
          d += "M" + C(x - 1.5) + "," + C(Y(*s.y[i])) + "H" + C(x + 1.5) + "V" +
               C(Y(base_at(s, i))) + "H" + C(x - 1.5) + "Z";
        } else {
          for (size_t k = i; k < j; ++k)
            d += (k == i ? "M" : "L") + C(X(*c.t[k])) + "," + C(Y(*s.y[k]));
          for (size_t k = j; k-- > i;) d += "L" + C(X(*c.t[k])) + "," + C(Y(base_at(s, k)));
          d += "Z";
        }
      } else {
        if (j - i == 1) {  // a lone point: a short dash
          double x = X(*c.t[i]), y = Y(*s.y[i]);
          d += "M" + C(x - 2) + "," + C(y) + "H" + C(x + 2);
        } else {
          for (size_t k = i; k < j; ++k)
            d += (k == i ? "M" : "L") + C(X(*c.t[k])) + "," + C(Y(*s.y[k]));
        }
      }
      i = j;
    }
    if (d.empty()) continue;
    ++drawn;
    o << "<path class=\"series" << (s.area ? " area" : " line") << "\" data-series=\"" << s.key
      << "\" d=\"" << d << "\" ";
    if (s.area)
      o << "fill=\"" << s.color << "\" fill-opacity=\"0.8\" stroke=\"none\"";
    else
      o << "fill=\"none\" stroke=\"" << s.color << "\" stroke-width=\"2\" "
        << "stroke-linejoin=\"round\" stroke-linecap=\"round\"";
    o << "><title>" << HtmlEscape(s.label) << "</title></path>";
  }
  if (drawn == 0)
    o << "<text class=\"no-data\" x=\"" << C((px0 + px1) / 2) << "\" y=\"" << C((py0 + py1) / 2)
      << "\" text-anchor=\"middle\">no data</text>";

  std::vector<LegendItem> legend;
  for (const auto& s : c.series) legend.push_back({s.label, s.color, s.area});
  Legend(o, legend, kW - kRight, 22);
  o << "</svg>";
  return o.str();
}

// The time axis of a run: "t", else i * interval_s (default 1 s) for the longest series.
Values TimesOf(const json* ts, std::initializer_list<const char*> series_keys) {
  Values t = SeriesOf(ts, "t");
  const json* given = ts ? Field(*ts, "t") : nullptr;
  if (given && given->is_array()) return t;
  size_t n = 0;
  for (const char* k : series_keys) n = std::max(n, SeriesOf(ts, k).size());
  OptD interval = ts ? Num(*ts, {"interval_s"}) : std::nullopt;
  double dt = interval && *interval > 0 ? *interval : 1.0;
  for (size_t i = 0; i < n; ++i) t.push_back(static_cast<double>(i) * dt);
  return t;
}

constexpr const char* kBlue = "#2563eb";
constexpr const char* kAmber = "#f59e0b";
constexpr const char* kRed = "#dc2626";
constexpr const char* kGreen = "#16a34a";

std::vector<std::string> RunCharts(const RunView& r) {
  const json* ts = r.ts;
  Values t = TimesOf(ts, {"util_realtime", "util_async", "realtime_rps", "ttft_p50_ms",
                          "ttft_p99_ms", "async_completed"});
  std::vector<std::string> out;

  {  // (a) utilisation, stacked: real-time at the bottom, async on top; percent, clamped.
    Values rt = SeriesOf(ts, "util_realtime"), as = SeriesOf(ts, "util_async");
    auto pct = [](double v) { return std::clamp(v * 100.0, 0.0, 100.0); };
    Series a{"util_realtime", "real-time", kBlue, true, {}, {}};
    Series b{"util_async", "async", kAmber, true, {}, {}};
    for (auto v : rt) a.y.push_back(v ? OptD(pct(*v)) : std::nullopt);
    for (size_t i = 0; i < as.size(); ++i) {
      double below = i < rt.size() && rt[i] ? *rt[i] : 0.0;
      b.base.push_back(pct(below));
      b.y.push_back(as[i] ? OptD(pct(below + *as[i])) : std::nullopt);
    }
    TimeChart c{"utilization", "Pool utilisation (%)", r.name, t, {a, b}, 100.0, r.duration_s};
    out.push_back(RenderTimeChart(c));
  }
  {  // (b) real-time arrivals
    TimeChart c{"arrivals",  "Real-time arrivals (req/s)", r.name, t, {}, std::nullopt,
                r.duration_s};
    c.series.push_back(
        {"realtime_rps", "arrivals", kBlue, false, SeriesOf(ts, "realtime_rps"), {}});
    out.push_back(RenderTimeChart(c));
  }
  {  // (c) TTFT percentiles
    TimeChart c{"ttft", "Real-time TTFT (ms)", r.name, t, {}, std::nullopt, r.duration_s};
    c.series.push_back({"ttft_p50_ms", "p50", kBlue, false, SeriesOf(ts, "ttft_p50_ms"), {}});
    c.series.push_back({"ttft_p99_ms", "p99", kRed, false, SeriesOf(ts, "ttft_p99_ms"), {}});
    out.push_back(RenderTimeChart(c));
  }
  {  // (d) async completions, cumulative
    TimeChart c{"async",     "Async completions (cumulative)", r.name, t, {}, std::nullopt,
                r.duration_s};
    c.series.push_back(
        {"async_completed", "completed", kAmber, false, SeriesOf(ts, "async_completed"), {}});
    out.push_back(RenderTimeChart(c));
  }
  return out;
}

// Horizontal bars, one row per run, two panels: TTFT p99 (ms) and utilisation (%).
std::string ComparisonChart(const std::vector<RunView>& runs) {
  constexpr double W = 1200, kLabelRight = 190, kRowH = 30, kBarH = 18, kBarsTop = 64;
  struct Panel {
    std::string key, title, color;
    double x0, x1;
    std::vector<OptD> v;
    Axis axis;
  };
  Panel p[2] = {{"ttft_p99_ms", "TTFT p99 (ms)", kRed, 210, 670, {}, {}},
                {"utilization", "Pool utilisation (%)", kGreen, 730, 1180, {}, {}}};
  double ttft_max = 0;
  for (const auto& r : runs) {
    p[0].v.push_back(r.ttft99);
    p[1].v.push_back(r.util ? OptD(std::clamp(*r.util * 100.0, 0.0, 100.0)) : std::nullopt);
    if (r.ttft99) ttft_max = std::max(ttft_max, *r.ttft99);
  }
  p[0].axis = NiceAxis(0, ttft_max > 0 ? ttft_max : 1, 5);
  p[1].axis = Axis{0, 100, 20};

  const size_t rows = std::max<size_t>(runs.size(), 1);
  const double axis_y = kBarsTop + static_cast<double>(rows) * kRowH + 4;
  const double H = axis_y + 32;

  std::ostringstream o;
  o << "<svg class=\"chart comparison\" data-chart=\"comparison\" "
    << "xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 " << W << " " << C(H) << "\" width=\""
    << W << "\" height=\"" << C(H) << "\" role=\"img\" aria-label=\"TTFT p99 and utilisation "
    << "across runs\">";
  o << "<rect class=\"bg\" x=\"0\" y=\"0\" width=\"" << W << "\" height=\"" << C(H) << "\"/>";
  o << "<text class=\"title\" x=\"12\" y=\"22\">Across runs: TTFT p99 and pool utilisation</text>";

  // Run labels.
  for (size_t i = 0; i < runs.size(); ++i) {
    double cy = kBarsTop + static_cast<double>(i) * kRowH + kRowH / 2;
    o << "<text class=\"run-label\" x=\"" << C(kLabelRight) << "\" y=\"" << C(cy + 4)
      << "\" text-anchor=\"end\">" << HtmlEscape(Truncate(runs[i].name, 26)) << "<title>"
      << HtmlEscape(runs[i].name) << "</title></text>";
  }
  int drawn = 0;
  for (auto& panel : p) {
    auto X = [&](double v) {
      v = std::clamp(v, panel.axis.lo, panel.axis.hi);
      return panel.x0 +
             (v - panel.axis.lo) / (panel.axis.hi - panel.axis.lo) * (panel.x1 - panel.x0);
    };
    o << "<text class=\"panel-title\" x=\"" << C(panel.x0) << "\" y=\"" << C(kBarsTop - 10) << "\">"
      << HtmlEscape(panel.title) << "</text>";
    o << "<g class=\"axis x\">";
    for (double v : Ticks(panel.axis)) {
      o << "<line class=\"grid\" x1=\"" << C(X(v)) << "\" x2=\"" << C(X(v)) << "\" y1=\""
        << C(kBarsTop) << "\" y2=\"" << C(axis_y) << "\"/>";
      o << "<text x=\"" << C(X(v)) << "\" y=\"" << C(axis_y + 16) << "\" text-anchor=\"middle\">"
        << TickLabel(v, panel.axis) << "</text>";
    }
    o << "</g>";
    std::string d, labels;
    for (size_t i = 0; i < panel.v.size(); ++i) {
      double top = kBarsTop + static_cast<double>(i) * kRowH + (kRowH - kBarH) / 2;
      double cy = top + kBarH / 2 + 4;
      if (!panel.v[i]) {
        labels += "<text class=\"value\" x=\"" + C(panel.x0 + 4) + "\" y=\"" + C(cy) + "\">" +
                  kDash + "</text>";
        continue;
      }
      double w = std::max(X(*panel.v[i]) - panel.x0, 1.0);
      d += "M" + C(panel.x0) + "," + C(top) + "h" + C(w) + "v" + C(kBarH) + "h" + C(-w) + "Z";
      std::string text = Fixed(*panel.v[i], 1);
      bool inside = w > TextWidth(text) + 12;
      labels += "<text class=\"value" + std::string(inside ? " inside" : "") + "\" x=\"" +
                C(inside ? panel.x0 + w - 5 : panel.x0 + w + 5) + "\" y=\"" + C(cy) +
                "\" text-anchor=\"" + (inside ? "end" : "start") + "\">" + text + "</text>";
    }
    if (!d.empty()) {
      ++drawn;
      o << "<path class=\"series bar\" data-series=\"" << panel.key << "\" d=\"" << d
        << "\" fill=\"" << panel.color << "\"><title>" << HtmlEscape(panel.title)
        << "</title></path>";
    }
    o << labels;
    o << "<line class=\"axis-line\" x1=\"" << C(panel.x0) << "\" x2=\"" << C(panel.x0) << "\" y1=\""
      << C(kBarsTop) << "\" y2=\"" << C(axis_y) << "\"/>";
    o << "<line class=\"axis-line\" x1=\"" << C(panel.x0) << "\" x2=\"" << C(panel.x1) << "\" y1=\""
      << C(axis_y) << "\" y2=\"" << C(axis_y) << "\"/>";
  }
  if (drawn == 0)
    o << "<text class=\"no-data\" x=\"" << C(W / 2) << "\" y=\"" << C(kBarsTop + kRowH / 2 + 4)
      << "\" text-anchor=\"middle\">no data</text>";
  Legend(o, {{"TTFT p99 (ms)", kRed, true}, {"utilisation (%)", kGreen, true}}, W - 18, 22);
  o << "</svg>";
  return o.str();
}

constexpr const char* kStyle = R"(
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif;
  margin: 0 auto; padding: 20px 24px 40px; max-width: 1240px; color: #1f2937; background: #f8fafc; }
h1 { font-size: 24px; margin: 0 0 6px; }
h2 { font-size: 18px; margin: 32px 0 4px; }
.meta { color: #4b5563; font-size: 13px; margin: 2px 0; }
pre.command { background: #eef2f7; padding: 6px 10px; border-radius: 4px; font-size: 12px;
  white-space: pre-wrap; word-break: break-all; margin: 6px 0 16px; }
table.summary { border-collapse: collapse; font-size: 12px; width: 100%; background: #fff;
  font-variant-numeric: tabular-nums; }
table.summary th, table.summary td { border: 1px solid #d1d5db; padding: 4px 6px; }
table.summary th { background: #eef2f7; font-weight: 600; text-align: center; }
table.summary td.num { text-align: right; white-space: nowrap; }
table.summary td.text { text-align: left; word-break: break-word; }
table.summary td.nowrap { white-space: nowrap; }
table.summary tbody tr:nth-child(even) { background: #f9fafb; }
.charts { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 12px; }
svg.chart { width: 100%; height: auto; display: block; border: 1px solid #e5e7eb;
  border-radius: 4px; }
svg.chart.comparison { margin-top: 16px; }
svg.chart text { font-family: inherit; font-size: 12px; fill: #374151; }
svg.chart text.title { font-size: 14px; font-weight: 600; fill: #111827; }
svg.chart text.panel-title { font-size: 13px; font-weight: 600; }
svg.chart text.axis-title { fill: #6b7280; }
svg.chart text.no-data { font-size: 16px; fill: #9ca3af; }
svg.chart text.value.inside { fill: #fff; }
svg.chart .bg { fill: #fff; }
svg.chart line.grid { stroke: #e5e7eb; stroke-width: 1; }
svg.chart line.tick, svg.chart line.axis-line { stroke: #6b7280; stroke-width: 1; }
.run-meta span + span::before { content: " · "; color: #9ca3af; }
)";

void Cell(std::ostringstream& o, const std::string& text, bool num) {
  o << "<td class=\"" << (num ? "num" : "text") << "\">" << HtmlEscape(text) << "</td>";
}

}  // namespace

std::string HtmlEscape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// "3 × HTTP 503 ttl-expired; 1 × transport: ..." for a run's failed real-time requests ("" when
// none failed or the report predates failure reasons).
std::string FailureSummary(const RunView& r) {
  const json* rt = r.raw ? Field(*r.raw, "realtime") : nullptr;
  const json* f = rt ? Field(*rt, "failures") : nullptr;
  if (!f || !f->is_object()) return {};
  std::string out;
  for (const auto& [reason, n] : f->items()) {
    if (!n.is_number()) continue;
    out += (out.empty() ? "" : "; ") + Count(n.get<double>()) + " × " + OneLine(reason);
  }
  return out;
}

std::string RenderReportHtml(const json& report) {
  const std::vector<RunView> runs = ReadRuns(report);
  std::string scenario = Str(report, "scenario");
  std::string generated = Str(report, "generated_at");
  std::string command = Str(report, "command");
  std::string scenario_text = scenario.empty() ? std::string(kDash) : scenario;

  std::ostringstream o;
  o << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
    << "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    << "<title>tidegate bench: " << HtmlEscape(scenario_text) << "</title>\n"
    << "<style>" << kStyle << "</style>\n</head>\n<body>\n";
  o << "<h1>tidegate bench: <span class=\"scenario\">" << HtmlEscape(scenario_text)
    << "</span></h1>\n";
  o << "<p class=\"meta\">generated " << HtmlEscape(generated.empty() ? kDash : generated) << " · "
    << runs.size() << (runs.size() == 1 ? " run" : " runs") << "</p>\n";
  if (!command.empty()) o << "<pre class=\"command\">" << HtmlEscape(command) << "</pre>\n";

  // Summary table.
  o << "<table class=\"summary\">\n<thead>\n<tr><th rowspan=\"2\">run</th>"
    << "<th rowspan=\"2\">policy</th><th rowspan=\"2\">async mode</th>"
    << "<th colspan=\"2\">real-time</th><th colspan=\"3\">TTFT ms</th>"
    << "<th colspan=\"2\">TPOT ms</th><th rowspan=\"2\">SLO attain&shy;ment %</th>"
    << "<th colspan=\"6\">async</th><th rowspan=\"2\">utili&shy;zation %</th>"
    << "<th rowspan=\"2\">tokens/s</th><th rowspan=\"2\">prefix-cache hit %</th>"
    << "<th rowspan=\"2\">TPOT SLO %</th><th rowspan=\"2\">goodput /s</th>"
    << "<th rowspan=\"2\">TTFT observed ÷ predicted</th></tr>\n"
    << "<tr><th>sent</th><th>ok</th><th>p50</th><th>p90</th><th>p99</th><th>p50</th>"
    << "<th>p99</th><th>sub&shy;mitted</th><th>suc&shy;ceeded</th><th>shed</th>"
    << "<th>failed</th><th>lost</th><th>on-time</th></tr>\n</thead>\n<tbody>\n";
  for (const auto& r : runs) {
    o << "<tr data-run=\"" << HtmlEscape(r.name) << "\">";
    o << "<td class=\"text run-name\"><a href=\"#run-" << (&r - runs.data()) + 1 << "\">"
      << HtmlEscape(r.name) << "</a></td>";
    o << "<td class=\"text nowrap\">" << HtmlEscape(r.policy.empty() ? kDash : r.policy)
      << "</td><td class=\"text nowrap\">"
      << HtmlEscape(r.async_mode.empty() ? kDash : r.async_mode) << "</td>";
    for (auto v : {r.sent, r.ok}) Cell(o, Count(v), true);
    for (auto v : {r.ttft50, r.ttft90, r.ttft99, r.tpot50, r.tpot99}) Cell(o, Ms(v), true);
    Cell(o, Pct(r.slo), true);
    for (auto v : {r.a_sub, r.a_ok, r.a_shed, r.a_fail, r.a_lost, r.a_ontime})
      Cell(o, Count(v), true);
    Cell(o, Pct(r.util), true);
    Cell(o, Rate(r.tps), true);
    Cell(o, Pct(r.prefix_hit), true);
    Cell(o, Pct(r.slo_tpot), true);
    Cell(o, Rate(r.goodput), true);
    Cell(o, r.pred_ttft ? Fixed(*r.pred_ttft, 2) : std::string(kDash), true);
    o << "</tr>\n";
  }
  if (runs.empty()) o << "<tr><td colspan=\"23\" class=\"text\">no runs</td></tr>\n";
  o << "</tbody>\n</table>\n";

  o << ComparisonChart(runs) << "\n";

  for (size_t i = 0; i < runs.size(); ++i) {
    const RunView& r = runs[i];
    o << "<section class=\"run\" id=\"run-" << i + 1 << "\" data-run=\"" << HtmlEscape(r.name)
      << "\">\n<h2>" << HtmlEscape(r.name) << "</h2>\n<p class=\"meta run-meta\">";
    o << "<span>policy " << HtmlEscape(r.policy.empty() ? kDash : r.policy) << "</span>";
    o << "<span>async mode " << HtmlEscape(r.async_mode.empty() ? kDash : r.async_mode)
      << "</span>";
    o << "<span>target " << HtmlEscape(r.target.empty() ? kDash : r.target) << "</span>";
    o << "<span>duration " << (r.duration_s ? Fixed(*r.duration_s, 0) + " s" : kDash) << "</span>";
    o << "</p>\n";
    if (const std::string f = FailureSummary(r); !f.empty())
      o << "<p class=\"meta failures\">real-time failures: " << HtmlEscape(f) << "</p>\n";
    o << "<div class=\"charts\">\n";
    for (const auto& svg : RunCharts(r)) o << svg << "\n";
    o << "</div>\n</section>\n";
  }
  o << "</body>\n</html>\n";
  return o.str();
}

std::string RenderReportTable(const json& report) {
  const std::vector<RunView> runs = ReadRuns(report);
  struct Col {
    std::string header;
    bool right;
  };
  const std::vector<Col> cols = {{"run", false},
                                 {"policy", false},
                                 {"async mode", false},
                                 {"RT sent/ok", true},
                                 {"TTFT p50/p90/p99 ms", true},
                                 {"TPOT p50/p99 ms", true},
                                 {"SLO %", true},
                                 {"async sub/ok/shed/fail/lost/on-time", true},
                                 {"util %", true},
                                 {"tok/s", true},
                                 {"prefix hit %", true},
                                 {"TPOT SLO %", true},
                                 {"goodput/s", true},
                                 {"TTFT obs/pred", true}};
  auto join = [](std::initializer_list<std::string> parts) {
    std::string s;
    for (const auto& p : parts) s += (s.empty() ? "" : "/") + p;
    return s;
  };
  std::vector<std::vector<std::string>> rows;
  for (const auto& r : runs) {
    rows.push_back({OneLine(r.name), OneLine(r.policy.empty() ? kDash : r.policy),
                    OneLine(r.async_mode.empty() ? kDash : r.async_mode),
                    join({Count(r.sent), Count(r.ok)}),
                    join({Ms(r.ttft50), Ms(r.ttft90), Ms(r.ttft99)}),
                    join({Ms(r.tpot50), Ms(r.tpot99)}), Pct(r.slo),
                    join({Count(r.a_sub), Count(r.a_ok), Count(r.a_shed), Count(r.a_fail),
                          Count(r.a_lost), Count(r.a_ontime)}),
                    Pct(r.util), Rate(r.tps), Pct(r.prefix_hit), Pct(r.slo_tpot), Rate(r.goodput),
                    r.pred_ttft ? Fixed(*r.pred_ttft, 2) : kDash});
    // Traffic classes, one indented row each: sent/ok, TTFT and SLO attainment.
    const json* classes = r.raw ? Field(*r.raw, "realtime") : nullptr;
    classes = classes ? Field(*classes, "classes") : nullptr;
    if (classes && classes->is_array()) {
      for (const auto& c : *classes) {
        rows.push_back({"  " + OneLine(Str(c, "name")), OneLine(Str(c, "objective")),
                        OneLine(Str(c, "tenant").empty() ? kDash : "tenant " + Str(c, "tenant")),
                        join({Count(Num(c, {"sent"})), Count(Num(c, {"succeeded"}))}),
                        join({Ms(Num(c, {"ttft_ms", "p50"})), Ms(Num(c, {"ttft_ms", "p90"})),
                              Ms(Num(c, {"ttft_ms", "p99"}))}),
                        kDash, Pct(Num(c, {"slo_attainment"}))});
        rows.back().resize(cols.size());  // the run-wide columns stay empty
      }
    }
  }
  std::vector<size_t> width(cols.size());
  for (size_t c = 0; c < cols.size(); ++c) {
    width[c] = DisplayWidth(cols[c].header);
    for (const auto& row : rows) width[c] = std::max(width[c], DisplayWidth(row[c]));
  }
  auto line = [&](const std::vector<std::string>& cells) {
    std::string s;
    for (size_t c = 0; c < cols.size(); ++c) {
      std::string pad(width[c] - DisplayWidth(cells[c]), ' ');
      if (c) s += "  ";
      s += cols[c].right ? pad + cells[c] : cells[c] + (c + 1 < cols.size() ? pad : "");
    }
    while (!s.empty() && s.back() == ' ') s.pop_back();
    return s + "\n";
  };

  std::string scenario = OneLine(Str(report, "scenario"));
  std::string generated = OneLine(Str(report, "generated_at"));
  std::string out = "scenario " + (scenario.empty() ? std::string(kDash) : scenario);
  if (!generated.empty()) out += " (" + generated + ")";
  out += ": " + std::to_string(runs.size()) + (runs.size() == 1 ? " run\n" : " runs\n");
  std::vector<std::string> headers;
  for (const auto& c : cols) headers.push_back(c.header);
  out += line(headers);
  std::vector<std::string> rule;
  for (size_t w : width) rule.push_back(std::string(w, '-'));
  out += line(rule);
  for (const auto& row : rows) out += line(row);
  if (rows.empty()) out += "(no runs)\n";
  for (const auto& r : runs)
    if (const std::string f = FailureSummary(r); !f.empty())
      out += "real-time failures in " + OneLine(r.name) + ": " + f + "\n";
  return out;
}

}  // namespace tidegate::bench
