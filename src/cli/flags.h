// cli/flags.h — a small command-line flag parser shared by every subcommand.
//
// Contract: flags are declared with a name, a value placeholder, a help line and a setter;
// Parse() accepts `--name value`, `--name=value` and, for switches, `--name`. Unknown flags,
// missing values and values a setter rejects produce an error string naming the flag (the
// caller prints it with the usage). `-h`/`--help` sets help_requested(). Usage() renders every
// flag with its default, so `--help` always documents the whole surface.
// Thread-safety: none needed; used once at start-up.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace tidegate::cli {

class FlagSet {
 public:
  // A setter returns an error message, or an empty string on success.
  using Setter = std::function<std::string(const std::string& value)>;

  FlagSet(std::string command, std::string summary);

  void Add(std::string name, std::string placeholder, std::string help, std::string default_text,
           Setter setter);
  void AddSwitch(std::string name, std::string help, std::function<void()> on);

  // Returns an error message on failure. Positional arguments are collected in positional().
  std::optional<std::string> Parse(const std::vector<std::string>& args);
  bool help_requested() const { return help_requested_; }
  const std::vector<std::string>& positional() const { return positional_; }
  // True if the flag appeared on the command line (so it overrides a config file).
  bool WasSet(const std::string& name) const;

  std::string Usage() const;
  const std::string& command() const { return command_; }

 private:
  struct Flag {
    std::string name, placeholder, help, default_text;
    Setter setter;
    bool is_switch = false;
    std::function<void()> on;
  };
  const Flag* Find(const std::string& name) const;

  std::string command_, summary_;
  std::vector<Flag> flags_;
  std::vector<std::string> positional_;
  std::vector<std::string> seen_;
  bool help_requested_ = false;
};

// Strict number parsing: the whole text, within [lo, hi].
bool ParseIntIn(const std::string& v, long long lo, long long hi, long long* out);
bool ParseDoubleIn(const std::string& v, double lo, double hi, double* out);
// "a,b,,c" → {"a","b","c"}.
std::vector<std::string> SplitList(const std::string& v);

// Typed setters for FlagSet::Add.
template <typename T>
FlagSet::Setter IntSetter(T* out, long long lo, long long hi) {
  return [out, lo, hi](const std::string& v) -> std::string {
    long long x = 0;
    if (!ParseIntIn(v, lo, hi, &x))
      return "expected an integer from " + std::to_string(lo) + " to " + std::to_string(hi);
    *out = static_cast<T>(x);
    return {};
  };
}
FlagSet::Setter DoubleSetter(double* out, double lo, double hi);
FlagSet::Setter DurationSetter(std::chrono::milliseconds* out);
FlagSet::Setter LogLevelSetter(std::string* out);

// The values of every `--config FILE` / `--config=FILE` in args, in order (config files are
// loaded before the other flags are parsed, so that flags override them).
std::vector<std::string> ConfigFlagValues(const std::vector<std::string>& args);

// Parses `args` into `flags`, printing errors (to stderr) or the usage (for --help, to stdout).
// Returns the exit code to return at once (0 after help, 2 on a usage error), or nullopt to go on.
std::optional<int> ParseCommandLine(FlagSet& flags, const std::vector<std::string>& args);

}  // namespace tidegate::cli
