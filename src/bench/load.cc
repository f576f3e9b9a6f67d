#include "bench/load.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

#include "async/message.h"
#include "wire/wire.h"

namespace tidegate::bench {

namespace net = boost::asio;

std::string CompletionBody(const std::string& model, const std::string& prompt, int max_tokens,
                           bool stream) {
  nlohmann::json j;
  j["model"] = model;
  j["prompt"] = prompt;
  j["max_tokens"] = max_tokens;
  j["stream"] = stream;
  return j.dump();
}

http::Headers RealtimeHeaders(const RealtimeSpec& spec, const std::string& request_id) {
  http::Headers h;
  h.emplace_back(wire::kObjective, spec.objective);
  h.emplace_back(wire::kSloTtftMs, std::to_string(static_cast<long long>(spec.slo_ttft_ms)));
  if (spec.slo_tpot_ms > 0)
    h.emplace_back(wire::kSloTpotMs, std::to_string(static_cast<long long>(spec.slo_tpot_ms)));
  h.emplace_back(wire::kRequestId, request_id);
  if (!spec.tenant.empty()) h.emplace_back(wire::kFairnessId, spec.tenant);
  return h;
}

std::vector<std::string> AsyncRequestMessages(const std::vector<PlannedRequest>& plan,
                                              const std::string& model,
                                              const std::string& id_prefix, size_t first_index,
                                              int64_t deadline_unix, int64_t soft_deadline_unix) {
  const int64_t created = std::chrono::duration_cast<std::chrono::seconds>(
                              std::chrono::system_clock::now().time_since_epoch())
                              .count();
  std::vector<std::string> out;
  out.reserve(plan.size());
  for (size_t i = 0; i < plan.size(); ++i) {
    const size_t k = first_index + i;
    async::Request r;
    r.id = id_prefix + std::to_string(k);
    r.created = created;
    r.deadline = deadline_unix;
    r.soft_deadline = soft_deadline_unix;
    r.path = "/v1/completions";
    r.payload = CompletionBody(model, PromptText(plan[i].prompt_tokens, -1, 0, 1000000 + k),
                               plan[i].output_tokens, false);
    out.push_back(async::RenderRequestMessage(r));
  }
  return out;
}

namespace {

net::awaitable<void> SendOne(std::shared_ptr<http::Client> client, std::string body,
                             http::Headers headers, Steady::time_point deadline, size_t i,
                             const PlayHooks& hooks) {
  http::ClientRequest req;
  req.method = "POST";
  req.target = "/v1/completions";
  req.body = body;
  req.headers = &headers;
  req.deadline = deadline;
  const Steady::time_point start = Steady::now();
  if (hooks.on_sent) hooks.on_sent(i);
  http::ClientResponse resp = co_await client->Send(req);
  if (hooks.on_done) hooks.on_done(i, start, resp);
}

}  // namespace

net::awaitable<void> PlayPlan(std::vector<std::shared_ptr<http::Client>> clients,
                              const std::vector<PlannedRequest>& plan,
                              const std::vector<std::string>& bodies, Steady::time_point t0,
                              Steady::time_point deadline, const PlayHooks& hooks) {
  auto ex = co_await net::this_coro::executor;
  net::steady_timer timer(ex);
  for (size_t i = 0; i < plan.size() && i < bodies.size(); ++i) {
    timer.expires_at(t0 + std::chrono::duration_cast<Steady::duration>(
                              std::chrono::duration<double>(plan[i].at_s)));
    co_await timer.async_wait(net::as_tuple(net::use_awaitable));
    http::Headers headers = hooks.headers_for ? hooks.headers_for(i) : http::Headers{};
    net::co_spawn(
        ex, SendOne(clients[i % clients.size()], bodies[i], std::move(headers), deadline, i, hooks),
        net::detached);
  }
}

}  // namespace tidegate::bench
