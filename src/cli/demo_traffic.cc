#include "cli/demo_traffic.h"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <optional>

#include "async/message.h"
#include "bench/load.h"
#include "http/client.h"

namespace tidegate::cli {

namespace net = boost::asio;
using Steady = std::chrono::steady_clock;
using std::chrono::milliseconds;

DemoTrafficPreset SampleTraffic() {
  DemoTrafficPreset p;
  // Troughs: the pool is mostly idle. Spikes: about 3/4 of what 4 servers of 8 sequences take.
  p.realtime.base_rps = 4;
  p.realtime.spike_rps = 45;
  p.realtime.spike_every_s = 20;
  p.realtime.spike_duration_s = 5;
  p.realtime.spike_offset_s = 6;
  p.realtime.prompt_tokens = {"uniform", 512, 256, 768};
  p.realtime.output_tokens = {"uniform", 48, 32, 64};
  p.realtime.slo_ttft_ms = 1000;
  p.realtime.stream = true;
  p.async.prompt_tokens = {"uniform", 512, 256, 768};
  p.async.output_tokens = {"uniform", 64, 48, 80};
  p.initial = 400;
  p.top_up = 200;
  p.low_water = 200;
  p.window_s = p.realtime.spike_every_s;
  return p;
}

DemoTrafficPreset SeedTraffic(const bench::Scenario& seed) {
  DemoTrafficPreset p;
  p.realtime = seed.runs.empty() ? bench::RealtimeSpec{} : seed.runs.front().realtime;
  p.async = seed.runs.empty() ? bench::AsyncSpec{} : seed.runs.front().async;
  p.initial = std::max(1, p.async.requests);
  p.top_up = std::max(1, p.initial / 2);
  p.low_water = p.top_up;
  p.window_s = p.realtime.spike_every_s > 0 ? p.realtime.spike_every_s : seed.duration_s;
  return p;
}

// ---------------------------------------------------------------------------------------------

struct RealtimeTraffic::Impl {
  std::string url, model;
  bench::RealtimeSpec spec;
  double window_s;
  uint64_t seed;
  net::io_context io{1};
  http::Url target;
  bench::PlayHooks hooks;
  std::thread thread;
  uint64_t next_id = 0;

  // The client lives in the coroutines that use it: stopping drops them with the io_context,
  // and the client goes with the last of them.
  net::awaitable<void> Loop() {
    auto client = std::make_shared<http::Client>(io.get_executor(), target, 1024);
    net::steady_timer timer(io);
    for (uint64_t k = 0;; ++k) {
      const Steady::time_point t0 = Steady::now();
      auto plan = bench::ArrivalSchedule(spec, window_s, seed + k, 1 << 20);
      std::vector<std::string> bodies;
      bodies.reserve(plan.size());
      const uint64_t first = next_id;
      for (const auto& r : plan)
        bodies.push_back(bench::CompletionBody(
            model, bench::PromptText(r.prompt_tokens, r.group, spec.prefix_tokens, ++next_id),
            r.output_tokens, spec.stream));
      hooks.headers_for = [this, first](size_t i) {
        return bench::RealtimeHeaders(spec, "sample-rt-" + std::to_string(first + i + 1));
      };
      std::vector<std::shared_ptr<http::Client>> clients;
      clients.push_back(client);
      co_await bench::PlayPlan(clients, plan, bodies, t0, t0 + std::chrono::seconds(60), hooks);
      timer.expires_at(t0 + std::chrono::duration_cast<Steady::duration>(
                                std::chrono::duration<double>(window_s)));
      auto [ec] = co_await timer.async_wait(net::as_tuple(net::use_awaitable));
      if (ec) co_return;
    }
  }
};

RealtimeTraffic::RealtimeTraffic(std::string gateway_url, std::string model,
                                 bench::RealtimeSpec spec, double window_s, uint64_t seed)
    : impl_(std::make_unique<Impl>()) {
  impl_->url = std::move(gateway_url);
  impl_->model = std::move(model);
  impl_->spec = std::move(spec);
  impl_->window_s = window_s > 0 ? window_s : 20;
  impl_->seed = seed;
}

RealtimeTraffic::~RealtimeTraffic() { Stop(); }

bool RealtimeTraffic::Start(std::string* error) {
  http::Url u;
  if (!http::ParseHttpUrl(impl_->url, &u, error)) return false;
  impl_->target = u;
  impl_->hooks.on_sent = [this](size_t) { sent_.fetch_add(1); };
  impl_->hooks.on_done = [this](size_t, Steady::time_point, const http::ClientResponse& r) {
    const bool ok = r.status == 200 && (!impl_->spec.stream || r.sse_events > 0);
    (ok ? ok_ : failed_).fetch_add(1);
  };
  net::co_spawn(impl_->io, impl_->Loop(), net::detached);
  impl_->thread = std::thread([this] { impl_->io.run(); });
  return true;
}

void RealtimeTraffic::Stop() {
  if (!impl_ || !impl_->thread.joinable()) return;
  impl_->io.stop();
  impl_->thread.join();
}

// ---------------------------------------------------------------------------------------------

AsyncBacklog::AsyncBacklog(std::string requests_uri, std::string results_uri, std::string model,
                           DemoTrafficPreset preset, uint64_t seed)
    : requests_uri_(std::move(requests_uri)),
      results_uri_(std::move(results_uri)),
      model_(std::move(model)),
      preset_(std::move(preset)),
      seed_(seed) {}

bool AsyncBacklog::Open(std::string* error) {
  requests_ = queue::OpenQueue(requests_uri_, error);
  if (!requests_) return false;
  results_ = queue::OpenQueue(results_uri_, error);
  return results_ != nullptr;
}

std::string AsyncBacklog::Tick() {
  std::string problem;
  // Top up.
  const std::optional<int64_t> backlog = requests_->Backlog();
  int n = 0;
  if (!started_) {
    n = preset_.initial;
  } else if (backlog && *backlog < preset_.low_water) {
    n = preset_.top_up;
  }
  if (n > 0) {
    bench::AsyncSpec spec = preset_.async;
    spec.requests = n;
    auto plan = bench::AsyncPlan(spec, seed_ + submitted_);
    // A deadline a day away, like a Batch API job's default window: the sample backlog is never
    // urgent, and the processor (earliest deadline first) serves it and the user's own async
    // work or batches in the order they arrived.
    const int64_t deadline = std::chrono::duration_cast<std::chrono::seconds>(
                                 std::chrono::system_clock::now().time_since_epoch())
                                 .count() +
                             86400;
    auto msgs =
        bench::AsyncRequestMessages(plan, model_, "sample-async-", submitted_ + 1, deadline);
    size_t published = 0;
    queue::Status s = requests_->PublishBatch(msgs, &published);
    submitted_ += published;
    started_ = true;
    if (!s.ok) problem = "submitting the sample backlog failed: " + s.error;
  }
  // Take the sample's own results; hand anything else back at once (after the scan: held for
  // the moment of the scan only, so the scan gets past them).
  std::vector<std::string> others;
  for (int round = 0; round < 20; ++round) {
    std::vector<queue::Message> msgs;
    queue::Status s = results_->Pull(500, milliseconds(30000), milliseconds(0), &msgs);
    if (!s.ok) {
      if (problem.empty()) problem = "reading sample results failed: " + s.error;
      break;
    }
    if (msgs.empty()) break;
    std::vector<std::string> mine;
    for (const auto& m : msgs) {
      async::Result r;
      std::string err;
      const bool sample =
          async::ParseResultMessage(m.data, &r, &err) && r.id.rfind("sample-async-", 0) == 0;
      (sample ? mine : others).push_back(m.ack_id);
    }
    if (!mine.empty()) {
      results_->Ack(mine);
      taken_ += mine.size();
    }
  }
  if (!others.empty()) results_->Nack(others);
  return problem;
}

}  // namespace tidegate::cli
