#include "sched/policies.h"

#include "sched/framework.h"

namespace tidegate::sched {
namespace {

using PluginList = std::vector<PluginSpec>;

const std::vector<std::pair<std::string, PluginList>>& Policies() {
  static const std::vector<std::pair<std::string, PluginList>> policies = {
      // Built on the latency predictor (sched/latency.h):
      //  - model-filter: correctness first — never send a model to a server that does not have it;
      //  - saturation-filter, then slo-admission-filter: sheddable work never lands on a saturated
      //    endpoint, nor where the next real-time request would be predicted to miss its SLO;
      //  - latency-scorer 4: least predicted TTFT (+ TPOT), with the SLO headers the endpoints
      //    predicted to meet them; the prediction counts the prefix hit, the queue, the batch and
      //    the prefill backlog, so it prefers the server holding the prompt's prefix unless that
      //    server is the slower choice;
      //  - prefix-cache-scorer 3 (GIE's weight): keeps prefix groups together between predictions
      //    that tie;
      //  - queue-scorer 1: breaks the latency scorer's ties towards the shorter queue;
      //  - lora-affinity-scorer 1, session-affinity-scorer 1: avoid adapter swaps, keep a
      //    conversation (x-session-id) on its endpoint.
      {"tidegate-default",
       {{"stale-filter", 0},
        {"model-filter", 0},
        {"saturation-filter", 0},
        {"slo-admission-filter", 0},
        {"prefix-cache-scorer", 3},
        {"latency-scorer", 4, {{"relative", "true"}}},
        {"queue-scorer", 1},
        {"kv-cache-utilization-scorer", 1},
        {"lora-affinity-scorer", 1},
        {"session-affinity-scorer", 1}}},
      // Precise prefix affinity: the engines' own KV events say which blocks each one holds
      // (sched/kv_block_index.h; needs serve --kv-events), and endpoints whose event feed is not
      // live are scored by the approximate index. GIE's load terms, with the prefix term, which
      // is exact here, weighed higher (5 against queue 2 and KV 1: measured best of the
      // weightings tried on scenarios/prefix-kv.yaml); no in-flight term, which pulls requests
      // away from the endpoints that hold their prefix.
      {"tidegate-precise",
       {{"stale-filter", 0},
        {"model-filter", 0},
        {"saturation-filter", 0},
        {"queue-scorer", 2},
        {"kv-cache-utilization-scorer", 1},
        {"precise-prefix-cache-scorer", 5},
        {"lora-affinity-scorer", 1},
        {"session-affinity-scorer", 1}}},
      // Exactly GIE's default weights; the stale filter is tidegate's rule that endpoints whose
      // metrics are stale are avoided (it keeps everyone when all are stale).
      {"gie-default",
       {{"stale-filter", 0},
        {"queue-scorer", 2},
        {"kv-cache-utilization-scorer", 2},
        {"prefix-cache-scorer", 3}}},
      // Predicted latency (sched/latency.h): the prefix hit feeds the TTFT prediction, so the
      // prefix scorer comes first; the latency scorer carries the most weight, the prefix and
      // in-flight terms break its ties and cover the first requests of a cold model.
      {"predicted-latency",
       {{"stale-filter", 0},
        {"model-filter", 0},
        {"saturation-filter", 0},
        {"prefix-cache-scorer", 2},
        {"latency-scorer", 4},
        {"active-request-scorer", 1},
        {"lora-affinity-scorer", 1},
        {"session-affinity-scorer", 1}}},
      {"least-request", {{"active-request-scorer", 1}}},
      {"round-robin", {{"round-robin-scorer", 1}}},
  };
  return policies;
}

}  // namespace

std::unique_ptr<Picker> MakePicker(std::string_view name,
                                   std::shared_ptr<const pool::SaturationDetector> detector) {
  for (const auto& [policy, plugins] : Policies()) {
    if (policy != name) continue;
    Profile profile;
    if (!BuildProfile(policy, plugins, &profile).empty()) return nullptr;
    profile.detector = std::move(detector);
    return MakeProfilePicker(std::move(profile), policy);
  }
  return nullptr;
}

std::vector<std::string> PolicyNames() {
  std::vector<std::string> v;
  for (const auto& [policy, plugins] : Policies()) v.push_back(policy);
  return v;
}

std::vector<std::string> PickerNames() { return PolicyNames(); }

}  // namespace tidegate::sched
