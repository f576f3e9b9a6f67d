// sim/profiles.h — named model/hardware presets for `tidegate sim --profile`.
//
// Contract: FindProfile() returns the preset's EngineConfig (latency model, KV cache size,
// batching limits) and default model name, or nullptr for an unknown name; every field can
// then be overridden by flags. The constants and their sources are documented in
// sim/engine.h (LatencyModel) and in profiles.cc. Pure data; thread-safe.
#pragma once

#include <string>
#include <vector>

#include "sim/engine.h"

namespace tidegate::sim {

struct Profile {
  std::string name;
  std::string description;
  std::string model;
  EngineConfig engine;
};

const std::vector<Profile>& Profiles();
const Profile* FindProfile(const std::string& name);
// The profiles' names, in Profiles() order.
std::vector<std::string> ProfileNames();

}  // namespace tidegate::sim
