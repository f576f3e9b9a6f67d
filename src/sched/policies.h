// sched/policies.h — named scheduling policies built on the plugin framework.
//
// Contract: MakePolicyPicker() returns a new Picker for a built-in framework policy name, or
// nullptr if the name is unknown (MakePicker() in sched/picker.h falls through to it):
//   "gie-default"       GIE's default profile: stale-filter, queue-scorer 2,
//                       kv-cache-utilization-scorer 2, prefix-cache-scorer 3.
//   "tidegate-default"  stale-filter, model-filter, saturation-filter, queue-scorer 2,
//                       kv-cache-utilization-scorer 2, prefix-cache-scorer 3,
//                       active-request-scorer 1, lora-affinity-scorer 1,
//                       session-affinity-scorer 1 (rationale in policies.cc).
// Each call builds fresh plugin state (its own prefix index and session table).
// Thread-safety: the returned Picker is safe for concurrent Pick() calls.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "pool/endpoint.h"
#include "sched/picker.h"

namespace tidegate::sched {

std::unique_ptr<Picker> MakePolicyPicker(std::string_view name,
                                         const pool::SaturationConfig& saturation = {});
std::vector<std::string> PolicyNames();

}  // namespace tidegate::sched
