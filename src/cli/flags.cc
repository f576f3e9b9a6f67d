#include "cli/flags.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <iostream>
#include <sstream>

#include "common/units.h"

namespace tidegate::cli {

FlagSet::FlagSet(std::string command, std::string summary)
    : command_(std::move(command)), summary_(std::move(summary)) {}

void FlagSet::Add(std::string name, std::string placeholder, std::string help,
                  std::string default_text, Setter setter) {
  flags_.push_back(Flag{std::move(name), std::move(placeholder), std::move(help),
                        std::move(default_text), std::move(setter), false, nullptr});
}

void FlagSet::AddSwitch(std::string name, std::string help, std::function<void()> on) {
  flags_.push_back(Flag{std::move(name), "", std::move(help), "off", nullptr, true, std::move(on)});
}

const FlagSet::Flag* FlagSet::Find(const std::string& name) const {
  for (const auto& f : flags_)
    if (f.name == name) return &f;
  return nullptr;
}

bool FlagSet::WasSet(const std::string& name) const {
  return std::find(seen_.begin(), seen_.end(), name) != seen_.end();
}

std::optional<std::string> FlagSet::Parse(const std::vector<std::string>& args) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "-h" || arg == "--help") {
      help_requested_ = true;
      continue;
    }
    if (arg.rfind("--", 0) != 0 || arg.size() == 2) {
      positional_.push_back(arg);
      continue;
    }
    std::string name = arg.substr(2);
    std::optional<std::string> value;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    const Flag* flag = Find(name);
    if (!flag) return "unknown flag --" + name + " (see `" + command_ + " --help`)";
    seen_.push_back(name);
    if (flag->is_switch) {
      if (value && *value != "true" && *value != "1") {
        if (*value == "false" || *value == "0") continue;
        return "flag --" + name + " is a switch and takes no value";
      }
      flag->on();
      continue;
    }
    if (!value) {
      if (i + 1 >= args.size())
        return "flag --" + name + " needs a value (" + flag->placeholder + ")";
      value = args[++i];
    }
    std::string err = flag->setter(*value);
    if (!err.empty()) return "invalid value '" + *value + "' for --" + name + ": " + err;
  }
  return std::nullopt;
}

std::string FlagSet::Usage() const {
  std::ostringstream out;
  out << "usage: " << command_ << " [flags]\n\n" << summary_ << "\n\nflags:\n";
  size_t width = 0;
  for (const auto& f : flags_)
    width = std::max(width, f.name.size() + (f.placeholder.empty() ? 0 : f.placeholder.size() + 1));
  for (const auto& f : flags_) {
    std::string left = "--" + f.name + (f.placeholder.empty() ? "" : " " + f.placeholder);
    out << "  " << left << std::string(width + 4 - left.size() + 2, ' ') << f.help;
    if (!f.default_text.empty()) out << " (default: " << f.default_text << ")";
    out << "\n";
  }
  out << "  -h, --help" << std::string(width + 4 - 8, ' ') << "show this help\n";
  return out.str();
}

bool ParseIntIn(const std::string& v, long long lo, long long hi, long long* out) {
  long long x = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
  if (ec != std::errc() || p != v.data() + v.size() || x < lo || x > hi) return false;
  *out = x;
  return true;
}

bool ParseDoubleIn(const std::string& v, double lo, double hi, double* out) {
  if (v.empty()) return false;
  char* end = nullptr;
  double x = std::strtod(v.c_str(), &end);
  if (end != v.c_str() + v.size() || !std::isfinite(x) || x < lo || x > hi) return false;
  *out = x;
  return true;
}

std::vector<std::string> SplitList(const std::string& v) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= v.size()) {
    size_t comma = v.find(',', start);
    std::string item =
        v.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (!item.empty()) out.push_back(item);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

FlagSet::Setter DoubleSetter(double* out, double lo, double hi) {
  return [out, lo, hi](const std::string& v) -> std::string {
    if (!ParseDoubleIn(v, lo, hi, out)) {
      std::ostringstream msg;
      msg << "expected a number from " << lo << " to " << hi;
      return msg.str();
    }
    return {};
  };
}

FlagSet::Setter DurationSetter(std::chrono::milliseconds* out) {
  return [out](const std::string& v) -> std::string {
    auto d = ParseDuration(v);
    if (!d) return "expected a duration such as 500ms, 3s or 2m";
    *out = *d;
    return {};
  };
}

FlagSet::Setter LogLevelSetter(std::string* out) {
  return [out](const std::string& v) -> std::string {
    if (spdlog::level::from_str(v) == spdlog::level::off && v != "off") return "unknown level";
    *out = v;
    return {};
  };
}

std::optional<int> ParseCommandLine(FlagSet& flags, const std::vector<std::string>& args) {
  if (auto err = flags.Parse(args)) {
    std::cerr << flags.command() << ": " << *err << "\n";
    return 2;
  }
  if (flags.help_requested()) {
    std::cout << flags.Usage();
    return 0;
  }
  if (!flags.positional().empty()) {
    std::cerr << flags.command() << ": unexpected argument '" << flags.positional()[0] << "' (see "
              << flags.command() << " --help)\n";
    return 2;
  }
  return std::nullopt;
}

std::vector<std::string> ConfigFlagValues(const std::vector<std::string>& args) {
  std::vector<std::string> out;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--config" && i + 1 < args.size()) out.push_back(args[i + 1]);
    if (args[i].rfind("--config=", 0) == 0) out.push_back(args[i].substr(9));
  }
  return out;
}

}  // namespace tidegate::cli
