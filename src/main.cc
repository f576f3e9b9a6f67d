// tidegate — one binary, several roles. See `tidegate --help`.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <iostream>
#include <string>
#include <vector>

#include "cli/commands.h"

namespace {

constexpr const char* kUsage =
    R"(tidegate — an inference gateway that serves real-time and async LLM traffic
on one shared pool of model servers.

usage: tidegate <command> [flags]

commands:
  demo      everything on one machine: simulated fleet + gateway + async processor + queue
  serve     the gateway: OpenAI-compatible front door, endpoint picking, streaming proxy
  sim       a vLLM-compatible model-server simulator (no GPU needed)
  async     the async processor: queue → gateway (sheddable, when there is room) → results
  submit    publish JSONL requests (llm-d-async, OpenAI Batch or bare bodies) to a queue
  results   print the result messages from a queue as JSONL, acknowledging them
  report    render a bench report.json as report.html and print its table
  bench     run a benchmark scenario (fleet, gateway, processor) and write a report
  tokenize  print the token ids of JSON-lines prompts or chats (Hugging Face tokenizer.json)
  version   print the version

Run `tidegate <command> --help` for the flags of a command.
)";

}  // namespace

int main(int argc, char** argv) {
  auto logger = spdlog::stderr_color_mt("tidegate");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");

  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
    std::cout << kUsage;
    return args.empty() ? 2 : 0;
  }
  std::string cmd = args[0];
  args.erase(args.begin());
  if (cmd == "demo") return tidegate::cli::RunDemo(args);
  if (cmd == "serve") return tidegate::cli::RunServe(args);
  if (cmd == "sim") return tidegate::cli::RunSim(args);
  if (cmd == "async") return tidegate::cli::RunAsync(args);
  if (cmd == "report") return tidegate::cli::RunReport(args);
  if (cmd == "submit") return tidegate::cli::RunSubmit(args);
  if (cmd == "results") return tidegate::cli::RunResults(args);
  if (cmd == "bench") return tidegate::cli::RunBench(args);
  if (cmd == "tokenize") return tidegate::cli::RunTokenize(args);
  if (cmd == "version" || cmd == "--version") {
    std::cout << "tidegate 0.1.0\n";
    return 0;
  }
  std::cerr << "tidegate: unknown command '" << cmd << "'\n\n" << kUsage;
  return 2;
}
