// bench/load.h — the load generator shared by `tidegate bench` and `tidegate demo`: request
// bodies and headers of the scenario's traffic, async request messages for a queue, and a
// coroutine that sends a real-time arrival plan on time.
//
// Contract:
//  * CompletionBody() is an OpenAI /v1/completions body; RealtimeHeaders() the headers a
//    real-time request of `spec` carries (objective, x-slo-ttft-ms, x-request-id, the tenant).
//  * AsyncRequestMessages() renders `plan` as async request messages (DESIGN.md format) with
//    ids PREFIX<k> (k from first_index), each with the given deadline and soft deadline (Unix s,
//    0 = none).
//  * PlayPlan() sends plan[i] at t0 + plan[i].at_s, through clients[i % clients.size()] (gateway
//    replicas take turns), with body bodies[i] and headers_for(i), each
//    on its own coroutine, never past `deadline`; on_sent(i) runs as it is sent and
//    on_done(i, start, response) when its answer (or failure) is complete. It returns once the
//    last request is sent (not answered). Each send holds a reference to the client, so pending
//    sends may be dropped by destroying their io_context; `hooks` must outlive them (the bodies
//    are copied). Everything runs on the client's executor.
// Thread-safety: plain functions; PlayPlan's callbacks run on the client's executor.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "bench/scenario.h"
#include "http/client.h"

namespace tidegate::bench {

std::string CompletionBody(const std::string& model, const std::string& prompt, int max_tokens,
                           bool stream);
http::Headers RealtimeHeaders(const RealtimeSpec& spec, const std::string& request_id);

std::vector<std::string> AsyncRequestMessages(const std::vector<PlannedRequest>& plan,
                                              const std::string& model,
                                              const std::string& id_prefix, size_t first_index,
                                              int64_t deadline_unix,
                                              int64_t soft_deadline_unix = 0);

using Steady = std::chrono::steady_clock;

struct PlayHooks {
  std::function<http::Headers(size_t)> headers_for;
  std::function<void(size_t)> on_sent;
  std::function<void(size_t, Steady::time_point, const http::ClientResponse&)> on_done;
};

boost::asio::awaitable<void> PlayPlan(std::vector<std::shared_ptr<http::Client>> clients,
                                      const std::vector<PlannedRequest>& plan,
                                      const std::vector<std::string>& bodies, Steady::time_point t0,
                                      Steady::time_point deadline, const PlayHooks& hooks);

}  // namespace tidegate::bench
