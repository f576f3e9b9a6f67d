#include "kvevents/config.h"

#include <charconv>
#include <nlohmann/json.hpp>

namespace tidegate::kvevents {

bool ParsePublisherConfig(std::string_view text, PublisherConfig* out, std::string* error) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    *error = "--kv-events-config is not a JSON object";
    return false;
  }
  PublisherConfig c;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    const auto& v = it.value();
    auto want = [&](bool ok, const char* what) {
      if (!ok) *error = "--kv-events-config: \"" + k + "\" must be " + what;
      return ok;
    };
    if (k == "enable_kv_cache_events") {
      if (!want(v.is_boolean(), "true or false")) return false;
      c.enabled = v.get<bool>();
    } else if (k == "publisher") {
      if (!want(v.is_string() && (v == "zmq" || v == "null"), "\"zmq\" or \"null\"")) return false;
      if (v == "null") c.enabled = false;
    } else if (k == "endpoint" || k == "replay_endpoint" || k == "topic") {
      if (!want(v.is_string() || (k == "replay_endpoint" && v.is_null()), "a string")) return false;
      std::string s = v.is_null() ? "" : v.get<std::string>();
      if (k == "endpoint") c.endpoint = s;
      if (k == "replay_endpoint") c.replay_endpoint = s;
      if (k == "topic") c.topic = s;
    } else if (k == "buffer_steps" || k == "hwm") {
      if (!want(v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() <= (1 << 24),
                "an integer from 0 to 16777216"))
        return false;
      if (k == "buffer_steps") c.buffer_steps = v.get<int64_t>();
      if (k == "hwm") c.hwm = static_cast<int>(v.get<int64_t>());
    } else {
      *error = "--kv-events-config: unknown key \"" + k +
               "\" (known: enable_kv_cache_events, publisher, endpoint, replay_endpoint, "
               "buffer_steps, hwm, topic)";
      return false;
    }
  }
  if (c.endpoint.empty()) {
    *error = "--kv-events-config: \"endpoint\" is empty";
    return false;
  }
  *out = std::move(c);
  return true;
}

int PortOf(std::string_view a) {
  if (!a.starts_with("tcp://")) return -1;
  size_t colon = a.rfind(':');
  if (colon == std::string_view::npos || colon < 6) return -1;
  int port = -1;
  auto [p, ec] = std::from_chars(a.data() + colon + 1, a.data() + a.size(), port);
  if (ec != std::errc() || p != a.data() + a.size() || port < 0 || port > 65535) return -1;
  return port;
}

std::string WithPortOffset(std::string_view a, int offset, std::string* error) {
  if (offset == 0) return std::string(a);
  if (a.starts_with("ipc://") || a.starts_with("inproc://"))
    return std::string(a) + "-" + std::to_string(offset);
  int port = PortOf(a);
  if (port <= 0) {
    *error = "cannot offset the port of \"" + std::string(a) + "\" (want tcp://HOST:PORT)";
    return "";
  }
  if (port + offset > 65535 || port + offset <= 0) {
    *error = "port " + std::to_string(port) + " + " + std::to_string(offset) + " is out of range";
    return "";
  }
  return std::string(a.substr(0, a.rfind(':') + 1)) + std::to_string(port + offset);
}

}  // namespace tidegate::kvevents
