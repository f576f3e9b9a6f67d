// cli/commands.h — the subcommands of the `tidegate` binary. Each takes the arguments after its
// name and returns the process exit code (0 ok, 1 runtime failure, 2 usage error).
#pragma once

#include <string>
#include <vector>

namespace tidegate::cli {

int RunServe(const std::vector<std::string>& args);
int RunSim(const std::vector<std::string>& args);
int RunAsync(const std::vector<std::string>& args);
int RunReport(const std::vector<std::string>& args);
int RunSubmit(const std::vector<std::string>& args);
int RunResults(const std::vector<std::string>& args);
int RunBench(const std::vector<std::string>& args);
int RunDemo(const std::vector<std::string>& args);
int RunTokenize(const std::vector<std::string>& args);

// Sets the global log level from a name (trace, debug, info, warn, error, off); returns false
// for an unknown name.
bool SetLogLevel(const std::string& name);

}  // namespace tidegate::cli
