// `tidegate report`: a bench result (report.json) → report.html + the summary table on stdout.
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <system_error>

#include "bench/report.h"
#include "cli/commands.h"
#include "cli/flags.h"

namespace tidegate::cli {

int RunReport(const std::vector<std::string>& args) {
  namespace fs = std::filesystem;
  std::string out_dir;
  FlagSet flags("tidegate report",
                "Renders REPORT.json, the result a `tidegate bench` run wrote, again: writes\n"
                "DIR/report.html, one self-contained page (no scripts, no network) with a summary\n"
                "table of all runs, a comparison chart across runs and, per run, charts of pool\n"
                "utilisation (real-time vs async), real-time arrivals, TTFT p50/p99 and async\n"
                "completions over time; then prints the side-by-side table of all runs to stdout.\n"
                "Fields missing from the JSON are shown as \"–\". Exit 2 if the file cannot be\n"
                "read, is not valid JSON or has no \"runs\" array; 1 if the page cannot be "
                "written.\n\n"
                "example: tidegate report bench-out/report.json --out /tmp/seed-report");
  flags.Add("out", "DIR", "directory to write report.html to (created if missing)",
            "the directory of REPORT.json", [&](const std::string& v) -> std::string {
              if (v.empty()) return "expected a directory";
              out_dir = v;
              return {};
            });
  if (auto err = flags.Parse(args)) {
    std::cerr << "tidegate report: " << *err << "\n";
    return 2;
  }
  if (flags.help_requested()) {
    std::cout << flags.Usage();
    return 0;
  }
  if (flags.positional().size() != 1) {
    std::cerr << "tidegate report: "
              << (flags.positional().empty()
                      ? "missing REPORT.json"
                      : "expected one REPORT.json, got " +
                            std::to_string(flags.positional().size()) + " arguments")
              << " (usage: tidegate report REPORT.json [--out DIR]; see --help)\n";
    return 2;
  }
  const std::string path = flags.positional()[0];

  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    std::cerr << "tidegate report: " << path << " is a directory, not a report.json\n";
    return 2;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::cerr << "tidegate report: cannot read " << path << ": " << std::strerror(errno) << "\n";
    return 2;
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    std::cerr << "tidegate report: cannot read " << path << "\n";
    return 2;
  }
  nlohmann::json report;
  try {
    report = nlohmann::json::parse(text.str());
  } catch (const nlohmann::json::exception& e) {
    std::cerr << "tidegate report: " << path << " is not valid JSON: " << e.what() << "\n";
    return 2;
  }
  if (!report.is_object() || !report.contains("runs") || !report["runs"].is_array()) {
    std::cerr << "tidegate report: " << path
              << " is not a bench report: it has no \"runs\" array (expected "
                 "{\"scenario\": ..., \"runs\": [...]} as written by `tidegate bench`)\n";
    return 2;
  }

  fs::path dir = out_dir.empty() ? fs::path(path).parent_path() : fs::path(out_dir);
  if (dir.empty()) dir = ".";
  fs::create_directories(dir, ec);
  if (ec) {
    std::cerr << "tidegate report: cannot create " << dir.string() << ": " << ec.message() << "\n";
    return 1;
  }
  const fs::path html_path = dir / "report.html";
  std::string html;
  std::string table;
  try {
    html = bench::RenderReportHtml(report);
    table = bench::RenderReportTable(report);
  } catch (const std::exception& e) {  // the renderers do not throw on odd input; be safe
    std::cerr << "tidegate report: cannot render " << path << ": " << e.what() << "\n";
    return 1;
  }
  {
    std::ofstream out(html_path, std::ios::binary | std::ios::trunc);
    out << html;
    out.close();
    if (!out) {
      std::cerr << "tidegate report: cannot write " << html_path.string() << ": "
                << std::strerror(errno) << "\n";
      return 1;
    }
  }
  std::cout << table << std::flush;
  std::cerr << "tidegate report: wrote " << html_path.string() << "\n";
  return 0;
}

}  // namespace tidegate::cli
