// cli/flags.h — a small command-line flag parser shared by every subcommand.
//
// Contract: flags are declared with a name, a value placeholder, a help line and a setter;
// Parse() accepts `--name value`, `--name=value` and, for switches, `--name`. Unknown flags,
// missing values and values a setter rejects produce an error string naming the flag (the
// caller prints it with the usage). `-h`/`--help` sets help_requested(). Usage() renders every
// flag with its default, so `--help` always documents the whole surface.
// Thread-safety: none needed; used once at start-up.
#pragma once

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

}  // namespace tidegate::cli
