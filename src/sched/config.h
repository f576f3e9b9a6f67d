// sched/config.h — scheduler configuration in GIE's EndpointPickerConfig shape.
//
// Contract: ParseSchedulerConfig() reads YAML such as
//
//   plugins:
//   - type: queue-scorer
//   - type: prefix-cache-scorer
//     name: prefix
//     parameters: {blockSize: 64, lruCapacityPerServer: 31250}
//   - type: max-score-picker
//   schedulingProfiles:
//   - name: default
//     plugins:
//     - pluginRef: queue-scorer
//       weight: 2
//     - pluginRef: prefix
//       weight: 3
//     - pluginRef: max-score-picker
//   saturationDetector:            # optional (GIE names)
//     queueDepthThreshold: 5
//     kvCacheUtilThreshold: 0.8
//     metricsStalenessThreshold: 2s
//
// into a Picker running the chosen profile (by name, or the first one when `profile` is empty).
// `saturationDetector` is GIE's spelling of the saturation settings: ParseSchedulerProfile()
// returns what it names in Profile::saturation, for the caller to merge into its one detector
// (the gateway does so with its own `saturation:` section, see gateway/config.h). The picker
// uses `detector` when given, else a detector of its own with those settings.
// A plugin's name defaults to its type; parameters are scalars. Filters run in the order the
// profile lists them; a scorer's weight defaults to 1 and must be ≥ 0. Unknown plugin types,
// unknown pluginRefs, duplicate names, bad parameters and missing sections are reported as one
// message naming the offending entry, e.g. `plugins[1]: unknown plugin type "foo" (known: ...)`.
// Thread-safety: pure function.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "sched/framework.h"
#include "sched/picker.h"

namespace YAML {
class Node;
}

namespace tidegate::sched {

// Parses YAML text. On success sets *out and returns an empty string; otherwise an error.
std::string ParseSchedulerConfig(std::string_view yaml_text, std::unique_ptr<Picker>* out,
                                 std::string_view profile = {},
                                 std::shared_ptr<const pool::SaturationDetector> detector = {});
// The same from an already-loaded node (e.g. a `scheduling:` section of the gateway config).
std::string ParseSchedulerConfig(const YAML::Node& root, std::unique_ptr<Picker>* out,
                                 std::string_view profile = {},
                                 std::shared_ptr<const pool::SaturationDetector> detector = {});
// Lower level: builds the Profile itself.
std::string ParseSchedulerProfile(const YAML::Node& root, Profile* out,
                                  std::string_view profile = {});

}  // namespace tidegate::sched
