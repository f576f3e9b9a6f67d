// discovery/registry.cc — the discovery sources by name, and the parsing of their settings.
//
// The built-in sources are registered explicitly by RegisterBuiltins(), run once, lazily, by the
// first registry call (see source.h for why not by static initialisers).
#include <algorithm>
#include <cctype>
#include <charconv>
#include <mutex>

#include "discovery/builtin.h"
#include "discovery/source.h"

namespace tidegate::discovery {
namespace {

struct Entry {
  SourceFactory factory;
  std::string main_key;
};

struct Registry {
  std::mutex mu;
  std::map<std::string, Entry> entries;
};

Registry& GetRegistry() {
  static Registry* r = [] {
    auto* reg = new Registry;
    for (const auto& b : BuiltinSources()) reg->entries[b.type] = Entry{b.factory, b.main_key};
    return reg;
  }();
  return *r;
}

std::string Join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
  return out.empty() ? "none" : out;
}

std::string Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return std::string(s);
}

}  // namespace

bool RegisterSource(const std::string& type, SourceFactory factory, std::string main_key) {
  Registry& r = GetRegistry();
  std::lock_guard lock(r.mu);
  r.entries[type] = Entry{std::move(factory), std::move(main_key)};
  return true;
}

std::vector<std::string> RegisteredSources() {
  Registry& r = GetRegistry();
  std::lock_guard lock(r.mu);
  std::vector<std::string> out;
  for (const auto& [type, e] : r.entries) out.push_back(type);
  return out;
}

std::unique_ptr<Source> MakeSource(const SourceSpec& spec, std::string* error) {
  SourceFactory factory;
  {
    Registry& r = GetRegistry();
    std::lock_guard lock(r.mu);
    auto it = r.entries.find(spec.type);
    if (it != r.entries.end()) factory = it->second.factory;
  }
  if (!factory) {
    *error =
        "unknown discovery source '" + spec.type + "' (known: " + Join(RegisteredSources()) + ")";
    return nullptr;
  }
  std::string err;
  auto source = factory(spec, &err);
  if (!source) *error = "discovery " + spec.type + ": " + (err.empty() ? "cannot start" : err);
  return source;
}

std::string ParseSourceSpec(const std::string& text, SourceSpec* out) {
  SourceSpec spec;
  const size_t colon = text.find(':');
  spec.type = Trim(text.substr(0, colon));
  if (spec.type.empty()) return "empty discovery source (expected TYPE[:key=value,...])";
  std::string main_key;
  bool known = false;
  {
    Registry& r = GetRegistry();
    std::lock_guard lock(r.mu);
    auto it = r.entries.find(spec.type);
    if (it != r.entries.end()) {
      known = true;
      main_key = it->second.main_key;
    }
  }
  if (!known)
    return "unknown discovery source '" + spec.type + "' (known: " + Join(RegisteredSources()) +
           ")";
  if (colon != std::string::npos) {
    std::string_view rest(text);
    rest.remove_prefix(colon + 1);
    bool first = true;
    while (!rest.empty() || first) {
      const size_t comma = rest.find(',');
      std::string item = Trim(rest.substr(0, comma));
      rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
      const size_t eq = item.find('=');
      if (item.empty()) {
        if (first && rest.empty()) break;
        return "empty item in discovery source '" + text + "'";
      }
      if (eq == std::string::npos) {
        if (!first || main_key.empty())
          return "discovery source '" + text + "': '" + item + "' should be key=value";
        spec.params[main_key] = item;
      } else {
        const std::string key = Trim(item.substr(0, eq));
        if (key.empty()) return "discovery source '" + text + "': empty key in '" + item + "'";
        if (spec.params.count(key))
          return "discovery source '" + text + "': '" + key + "' is given twice";
        spec.params[key] = Trim(item.substr(eq + 1));
      }
      first = false;
    }
  }
  *out = std::move(spec);
  return {};
}

std::string Params::String(const std::string& key, const std::string& fallback) {
  auto it = left_.find(key);
  if (it == left_.end()) return fallback;
  std::string v = std::move(it->second);
  left_.erase(it);
  return v;
}

bool Params::Seconds(const std::string& key, double fallback, double* out, std::string* error) {
  auto it = left_.find(key);
  if (it == left_.end()) {
    *out = fallback;
    return true;
  }
  const std::string v = it->second;
  left_.erase(it);
  double scale = 1;
  std::string_view num(v);
  if (num.size() > 2 && num.substr(num.size() - 2) == "ms") {
    scale = 0.001;
    num.remove_suffix(2);
  } else if (!num.empty() && (num.back() == 's' || num.back() == 'm' || num.back() == 'h')) {
    scale = num.back() == 's' ? 1 : num.back() == 'm' ? 60 : 3600;
    num.remove_suffix(1);
  }
  double x = 0;
  auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), x);
  if (ec != std::errc() || p != num.data() + num.size() || !(x > 0)) {
    *error = key + ": '" + v + "' is not a positive duration (such as 500ms, 5s or 2m)";
    return false;
  }
  *out = x * scale;
  return true;
}

bool Params::Int(const std::string& key, long fallback, long min, long max, long* out,
                 std::string* error) {
  auto it = left_.find(key);
  if (it == left_.end()) {
    *out = fallback;
    return true;
  }
  const std::string v = it->second;
  left_.erase(it);
  long x = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
  if (ec != std::errc() || p != v.data() + v.size() || x < min || x > max) {
    *error = key + ": '" + v + "' is not an integer from " + std::to_string(min) + " to " +
             std::to_string(max);
    return false;
  }
  *out = x;
  return true;
}

bool Params::Bool(const std::string& key, bool fallback, bool* out, std::string* error) {
  auto it = left_.find(key);
  if (it == left_.end()) {
    *out = fallback;
    return true;
  }
  const std::string v = it->second;
  left_.erase(it);
  if (v == "true" || v == "1" || v == "yes" || v == "on") {
    *out = true;
  } else if (v == "false" || v == "0" || v == "no" || v == "off") {
    *out = false;
  } else {
    *error = key + ": '" + v + "' is not true or false";
    return false;
  }
  return true;
}

std::string Params::Leftover(const std::vector<std::string>& known) const {
  if (left_.empty()) return {};
  return "unknown key '" + left_.begin()->first + "' for discovery source '" + type_ +
         "' (known: " + Join(known) + ")";
}

}  // namespace tidegate::discovery
