#include "gateway/admin.h"

#include <nlohmann/json.hpp>
#include <set>

#include "gateway/kv_events_feed.h"
#include "sched/kv_block_index.h"
#include "sched/latency.h"
#include "wire/errors.h"
#include "wire/wire.h"

namespace tidegate::gateway {

std::string EngineName(const pool::Endpoint& ep, std::string_view default_engine) {
  const pool::MetricsSource src = ep.GetMetricsSource();
  if (!src.engine.empty()) return src.engine;
  const std::string configured =
      ep.config().engine.empty() ? std::string(default_engine) : ep.config().engine;
  return pool::IsAutoEngine(configured) ? std::string("auto") : configured;
}

namespace {
constexpr double kReferencePromptTokens = 512;
}  // namespace

std::string PoolJson(const pool::Pool& pool, const control::Director& director,
                     std::string_view default_engine, Nanos now, const KvEventsFeed* kv) {
  const pool::SaturationDetector& det = director.detector();
  nlohmann::ordered_json eps = nlohmann::ordered_json::array();
  for (size_t i = 0; i < pool.size(); ++i) {
    const auto& ep = pool.at(i);
    const auto membership = ep.membership();
    if (membership == pool::Endpoint::Membership::kGone) continue;
    const pool::EndpointLoad load = pool::EndpointLoad::Of(ep);
    auto snap = ep.Metrics();
    nlohmann::ordered_json e;
    e["address"] = ep.address();
    // "draining": discovery removed it; it takes no new requests and finishes its in-flight.
    e["state"] = membership == pool::Endpoint::Membership::kActive ? "active" : "draining";
    const pool::MetricsSource src = ep.GetMetricsSource();
    e["engine"] = EngineName(ep, default_engine);
    e["engine_detected"] = src.detected;
    e["metrics_url"] = src.url;
    e["metrics"] = src.in_flight_only ? "in-flight only"
                   : !src.url.empty() ? "scraped"
                                      : "none yet";
    if (!src.warning.empty()) e["metrics_warning"] = src.warning;
    e["available"] = ep.Available(now);
    e["ejected"] = ep.Ejected(now);
    if (ep.Ejections() > 0) {
      e["ejections"] = ep.Ejections();
      e["ejection_reason"] = ep.EjectionReason();
      e["ejected_for_ms"] =
          ep.Ejected(now)
              ? std::chrono::duration_cast<std::chrono::milliseconds>(ep.EjectedUntil() - now)
                    .count()
              : 0;
    }
    e["stale"] = det.Stale(load.load, now);
    e["waiting"] = load.load.waiting;
    e["running"] = load.load.running;
    e["kv_usage"] = load.load.kv_usage;
    e["in_flight"] = load.in_flight;
    e["routed_since_scrape"] = load.routed_since_scrape;
    e["completed_since_scrape"] = load.completed_since_scrape;
    e["estimated_waiting"] = det.EstimatedWaiting(load);
    e["batch_limit"] = load.load.batch_limit;
    e["saturation"] = det.Saturation(load, now);
    if (const auto pc = ep.PrefixCheck();
        pc.predicted_prompt_tokens > 0 || pc.engine_query_tokens >= 0) {
      // The prefix index checked against the engine's own counters (since the first scrape that
      // carried them; null when the engine does not export them).
      auto rate = [](double r) {
        return r >= 0 ? nlohmann::ordered_json(r) : nlohmann::ordered_json(nullptr);
      };
      e["prefix_cache"] = {{"predicted_hit_rate", rate(pc.PredictedRate())},
                           {"predicted_prompt_tokens", pc.predicted_prompt_tokens},
                           {"engine_hit_rate", rate(pc.EngineRate())},
                           {"engine_query_tokens", rate(pc.engine_query_tokens)}};
    }
    if (const sched::LatencyScorer* lat = director.picker().latency()) {
      // What the predictor expects now for a reference request (512 prompt tokens, no cache).
      const sched::LatencyPrediction p =
          lat->Predict(pool, static_cast<uint32_t>(i), kReferencePromptTokens, det, now);
      e["predicted"] = {
          {"ttft_ms", p.ttft_ms},
          {"tpot_ms", p.tpot_ms},
          {"prefill_backlog_tokens", lat->PrefillBacklog(static_cast<uint32_t>(i), now)},
          {"reference_prompt_tokens", kReferencePromptTokens},
          {"samples", p.samples}};
    }
    if (kv) {
      auto st = kv->Status(i);
      if (!st.is_null()) e["kv_events"] = std::move(st);
    }
    auto served = ep.ServedModels();
    e["models"] = !served.empty() ? served : snap ? snap->models : std::vector<std::string>{};
    e["running_lora_adapters"] = snap ? snap->running_lora_adapters : std::vector<std::string>{};
    e["waiting_lora_adapters"] = snap ? snap->waiting_lora_adapters : std::vector<std::string>{};
    e["lora_adapters"] = snap ? snap->lora_adapters : std::vector<std::string>{};
    e["cache"] = {{"block_size", snap ? snap->block_size : 0},
                  {"num_blocks", snap ? snap->num_gpu_blocks : 0}};
    std::string err = ep.LastScrapeError();
    if (err.empty() && !ep.ProbeOk()) err = ep.LastError();
    e["last_error"] = err;
    e["scrape_age_ms"] =
        load.load.has_metrics
            ? std::chrono::duration_cast<std::chrono::milliseconds>(now - load.load.scrape_time)
                  .count()
            : -1;
    eps.push_back(std::move(e));
  }
  nlohmann::ordered_json out;
  out["saturation"] = det.PoolSaturation(pool, now);
  out["endpoints"] = std::move(eps);
  const control::QueueSnapshot q = director.Queues();
  nlohmann::ordered_json bands = nlohmann::ordered_json::array();
  for (const auto& b : q.bands)
    bands.push_back({{"priority", b.priority},
                     {"requests", b.requests},
                     {"bytes", b.bytes},
                     {"flows", b.flows}});
  out["flow_control"] = {{"enabled", director.config().flow.enabled},
                         {"queued", q.requests},
                         {"queued_bytes", q.bytes},
                         {"bands", std::move(bands)}};
  return out.dump();
}

bool KvBlocksJson(const pool::Pool& pool, std::string_view endpoint, std::string* body) {
  const sched::KvBlockIndex& index = sched::SharedKvBlockIndex();
  for (size_t i = 0; i < pool.size(); ++i) {
    const auto& ep = pool.at(i);
    if (!ep.Active() || ep.address() != endpoint) continue;
    nlohmann::ordered_json j;
    j["endpoint"] = ep.address();
    j["live"] = index.Live(static_cast<uint32_t>(i));
    j["block_size"] = index.block_size();
    nlohmann::ordered_json hashes = nlohmann::ordered_json::array();
    char buf[20];
    for (uint64_t h : index.EngineHashes(static_cast<uint32_t>(i))) {
      std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
      hashes.push_back(buf);
    }
    j["block_hashes"] = std::move(hashes);
    *body = j.dump();
    return true;
  }
  *body = wire::ErrorBody("no active endpoint " + std::string(endpoint) +
                              " (give ?endpoint=HOST:PORT as /v1/pool lists it)",
                          "invalid_request_error", "endpoint_not_found");
  return false;
}

std::string CapacityJson(const control::Director& director) {
  return wire::RenderCapacity(director.Capacity());
}

Readiness CheckReadiness(const pool::Pool& pool, bool draining, Nanos now) {
  const size_t avail = pool.AvailableCount(now);
  Readiness r;
  r.ready = avail > 0 && !draining;
  r.body = r.ready ? "{\"status\":\"ready\",\"available_endpoints\":" + std::to_string(avail) + "}"
                   : wire::ErrorBody(draining ? "the gateway is draining"
                                              : "no model server endpoint is available",
                                     "service_unavailable", "not_ready");
  return r;
}

std::string MergedModels(const pool::Pool& pool, Nanos now, size_t* answered) {
  std::set<std::string> seen;
  std::string data;
  *answered = 0;
  for (size_t i = 0; i < pool.size(); ++i) {
    const auto& ep = pool.at(i);
    if (!ep.Available(now) || !ep.ModelsKnown()) continue;
    ++*answered;
    const auto ids = ep.ServedModels();
    const auto objects = ep.ServedModelObjects();
    for (size_t k = 0; k < ids.size() && k < objects.size(); ++k) {
      if (!seen.insert(ids[k]).second) continue;
      data += (data.empty() ? "" : ",") + objects[k];
    }
  }
  return "{\"object\":\"list\",\"data\":[" + data + "]}";
}

}  // namespace tidegate::gateway
