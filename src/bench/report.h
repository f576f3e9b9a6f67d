// bench/report.h — renders a `tidegate bench` result (report.json) as one self-contained HTML
// page (report.html) and as the plain-text table printed at the end of a bench run.
//
// Input: the report JSON written by the bench runner:
//   {"scenario", "generated_at", "command",
//    "runs": [{"name", "policy", "async_mode", "target", "duration_s",
//              "realtime": {"sent", "succeeded", "failed", "ttft_ms": {"p50","p90","p99"},
//                           "tpot_ms": {"p50","p90","p99"}, "slo_attainment" (0..1)},
//              "async": {"submitted", "succeeded", "shed", "failed", "lost", "on_time"},
//              "utilization" (0..1), "tokens_per_s",
//              "timeseries": {"interval_s", "t": [s...], "util_realtime": [0..1...],
//                             "util_async": [0..1...], "realtime_rps": [...],
//                             "ttft_p50_ms": [...], "ttft_p99_ms": [...],
//                             "async_completed": [cumulative counts...]}}]}
//
// Contract: every field may be missing, null or of the wrong type; such a value is shown as "–"
// (and a chart without data draws its axes and a "no data" label), so the renderers never
// throw on odd input. A missing "t" is rebuilt from "interval_s" (default 1 s); points that are not
// finite numbers leave gaps. All text taken from the JSON is HTML-escaped.
//
// The HTML page needs no network and no JavaScript: styles are inline and the charts are inline
// SVG. It holds a title with the scenario name, a summary table of all runs (table.summary, one
// tr[data-run] per run), a comparison bar chart of TTFT p99 and utilisation across runs
// (svg[data-chart=comparison]) and, per run, a section[data-run] with four charts:
// svg.chart[data-chart=utilization|arrivals|ttft|async]. Each drawn data series is one element
// with class "series" (utilization: real-time and async stacked areas; arrivals: one line; ttft:
// p50 and p99 lines; async: one cumulative line; comparison: one path of bars per metric).
//
// Thread-safety: pure functions of their argument; safe to call concurrently.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace tidegate::bench {

// The whole report.html document.
std::string RenderReportHtml(const nlohmann::json& report);

// A fixed-width, side-by-side table of all runs (one row per run, ending in a newline).
std::string RenderReportTable(const nlohmann::json& report);

// Escapes & < > " ' for HTML text and attribute values.
std::string HtmlEscape(std::string_view text);

}  // namespace tidegate::bench
