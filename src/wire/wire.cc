#include "wire/wire.h"

#include <cstdio>
#include <nlohmann/json.hpp>

namespace tidegate::wire {

std::string_view DropReasonName(DropReason r) {
  switch (r) {
    case DropReason::kSaturated:
      return "saturated";
    case DropReason::kTtlExpired:
      return "ttl-expired";
    case DropReason::kEvicted:
      return "evicted";
    case DropReason::kNoEndpoints:
      return "no-endpoints";
    case DropReason::kNone:
      break;
  }
  return "";
}

std::string RenderCapacity(const Capacity& c) {
  char buf[256];
  int n =
      std::snprintf(buf, sizeof buf,
                    "{\"saturation\":%.4f,\"sheddable_capacity\":%lld,\"retry_after_ms\":%lld,"
                    "\"endpoints\":%lld,\"fresh_endpoints\":%lld,\"queued\":%lld}",
                    c.saturation, static_cast<long long>(c.sheddable_capacity),
                    static_cast<long long>(c.retry_after_ms), static_cast<long long>(c.endpoints),
                    static_cast<long long>(c.fresh_endpoints), static_cast<long long>(c.queued));
  return std::string(buf, static_cast<size_t>(n));
}

bool ParseCapacity(std::string_view json, Capacity* out, std::string* error) {
  auto j = nlohmann::json::parse(json, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    *error = "the capacity answer is not a JSON object";
    return false;
  }
  auto number = [&](const char* key, auto* field, bool required) {
    auto it = j.find(key);
    if (it == j.end()) {
      if (required) *error = std::string("the capacity answer has no '") + key + "'";
      return !required;
    }
    if (!it->is_number()) {
      *error = std::string("the capacity answer's '") + key + "' is not a number";
      return false;
    }
    *field = it->get<std::remove_pointer_t<decltype(field)>>();
    return true;
  };
  Capacity c;
  if (!number("saturation", &c.saturation, true) ||
      !number("sheddable_capacity", &c.sheddable_capacity, true) ||
      !number("retry_after_ms", &c.retry_after_ms, false) ||
      !number("endpoints", &c.endpoints, false) ||
      !number("fresh_endpoints", &c.fresh_endpoints, false) || !number("queued", &c.queued, false))
    return false;
  *out = c;
  return true;
}

}  // namespace tidegate::wire
