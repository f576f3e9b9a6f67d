// The ext_proc endpoint picker over loopback gRPC: one whole Endpoint Picker Protocol stream per
// iteration, as Envoy drives it (request headers, a ~1 KB chat body, the pick with its body
// streamed back, response headers and a small SSE body, Finish) against extproc::Server on
// 127.0.0.1 deciding through a real Director and the "tidegate-default" picker over 16
// endpoints. BM_ExtProcStream: time per whole stream (three round trips and the stream's set-up,
// client included) and, with N client threads, items_per_second = the requests per second one
// picker sustains. BM_ExtProcRequestPhase: only the request phase is timed (headers and body sent
// → the pick and the body back), the latency the picker adds before Envoy can go upstream.
// BM_ExtProcDecisionInProcess is the same decision without gRPC (translation + Admit + Finish).
// Reference (GIE's published EPP figures): scheduler p50 0.1–0.2 ms; ~300–400 req/s per EPP.
//   build/micro_bench --benchmark_filter=ExtProc
#include <benchmark/benchmark.h>
#include <envoy/service/ext_proc/v3/external_processor.grpc.pb.h>
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "common/clock.h"
#include "control/director.h"
#include "extproc/protocol.h"
#include "extproc/server.h"
#include "gateway/config.h"
#include "gateway/gateway_metrics.h"
#include "gateway/request.h"
#include "metrics/registry.h"
#include "pool/saturation.h"
#include "sched/picker.h"

namespace tidegate::extproc {
namespace {

namespace core = ::envoy::config::core::v3;

std::vector<pool::EndpointConfig> Endpoints(int n) {
  std::vector<pool::EndpointConfig> v;
  for (int i = 0; i < n; ++i) v.push_back({"10.0.0." + std::to_string(i + 1), 8000});
  return v;
}

std::string Body(int i) {
  std::string content(900, 'a');
  for (size_t k = 0; k < content.size(); ++k)
    content[k] = static_cast<char>('a' + (k * 7 + i) % 26);
  return R"({"model":"meta-llama/Llama-3.1-8B-Instruct","stream":true,"max_tokens":8,)"
         R"("messages":[{"role":"user","content":")" +
         content + "\"}]}";
}

// The gateway's shared state, built by hand: pool (fresh metrics on a fixed manual clock),
// Director, registry and request metrics.
struct World {
  World()
      : pool(Endpoints(16)),
        detector(std::make_shared<const pool::SaturationDetector>(pool::SaturationConfig{})),
        gm(registry, pool) {
    cfg.flow.enabled = false;  // the bench measures the decision, not queueing
    control::DirectorConfig dc;
    dc.flow.enabled = false;
    director = std::make_unique<control::Director>(
        dc, pool, sched::MakePicker("tidegate-default", detector), registry);
    for (size_t i = 0; i < pool.size(); ++i) {
      pool::EndpointMetrics m;
      m.waiting = i % 3;
      m.running = 4 + i % 5;
      m.kv_usage = 0.1 * (i % 5);
      m.has_kv = true;
      m.scrape_time = clock.Now();
      pool.at(i).PublishMetrics(std::move(m));
    }
  }
  gateway::SharedState Shared() {
    return {cfg, clock, pool, *director, registry, gm, draining, next_request};
  }
  gateway::GatewayConfig cfg;
  ManualClock clock;
  pool::Pool pool;
  std::shared_ptr<const pool::SaturationDetector> detector;
  metrics::Registry registry;
  gateway::GatewayMetrics gm;
  std::unique_ptr<control::Director> director;
  std::atomic<bool> draining{false};
  std::atomic<uint64_t> next_request{1};
};

void SetHeaders(core::HeaderMap* m, std::vector<std::pair<std::string, std::string>> kv) {
  for (auto& [k, v] : kv) {
    auto* h = m->add_headers();
    h->set_key(k);
    h->set_raw_value(v);
  }
}

struct Loopback {
  Loopback() : server(world.Shared()) {
    if (!server.Start("127.0.0.1", 0).empty()) std::abort();
    channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(server.port()),
                                  grpc::InsecureChannelCredentials());
  }
  World world;
  Server server;
  std::shared_ptr<grpc::Channel> channel;
};

Loopback& Shared() {
  static Loopback* l = new Loopback();  // lives to the end of the process
  return *l;
}

// request_phase_only: the timed part is the request phase alone (headers and body sent → the
// pick and the whole body back), the latency Envoy waits before it can connect upstream; the
// response phase still runs, untimed.
void RunStream(benchmark::State& state, bool request_phase_only) {
  Loopback& lb = Shared();
  auto stub = pb::ExternalProcessor::NewStub(lb.channel);
  std::vector<std::string> bodies;
  for (int i = 0; i < 32; ++i) bodies.push_back(Body(i + 100 * state.thread_index()));
  const std::string sse =
      "data: {\"choices\":[{\"text\":\"hi\"}]}\n\ndata: {\"choices\":[],\"usage\":"
      "{\"completion_tokens\":8}}\n\ndata: [DONE]\n\n";
  int i = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    grpc::ClientContext ctx;
    auto s = stub->Process(&ctx);
    pb::ProcessingRequest req;
    SetHeaders(req.mutable_request_headers()->mutable_headers(),
               {{":method", "POST"}, {":path", "/v1/chat/completions"}});
    s->Write(req);
    req.Clear();
    req.mutable_request_body()->set_body(bodies[i++ % bodies.size()]);
    req.mutable_request_body()->set_end_of_stream(true);
    s->Write(req);
    pb::ProcessingResponse r;
    if (!s->Read(&r) || !r.has_request_headers()) {
      state.SkipWithError("no pick");
      break;
    }
    const std::string dest =
        r.request_headers().response().header_mutation().set_headers(0).header().raw_value();
    while (s->Read(&r) &&
           !r.request_body().response().body_mutation().streamed_response().end_of_stream()) {
    }
    const auto t1 = std::chrono::steady_clock::now();
    req.Clear();
    SetHeaders(req.mutable_response_headers()->mutable_headers(),
               {{":status", "200"},
                {"content-type", "text/event-stream"},
                {std::string(kServedKey), dest}});
    s->Write(req);
    s->Read(&r);
    req.Clear();
    req.mutable_response_body()->set_body(sse);
    req.mutable_response_body()->set_end_of_stream(true);
    s->Write(req);
    s->Read(&r);
    s->WritesDone();
    s->Finish();
    const auto t2 = std::chrono::steady_clock::now();
    state.SetIterationTime(
        std::chrono::duration<double>((request_phase_only ? t1 : t2) - t0).count());
  }
  state.SetItemsProcessed(state.iterations());
}
void BM_ExtProcStream(benchmark::State& state) { RunStream(state, false); }
void BM_ExtProcRequestPhase(benchmark::State& state) { RunStream(state, true); }
BENCHMARK(BM_ExtProcStream)->UseRealTime()->Threads(1)->Threads(4)->Threads(16);
BENCHMARK(BM_ExtProcRequestPhase)->UseManualTime();

void BM_ExtProcDecisionInProcess(benchmark::State& state) {
  static World* w = new World();
  std::vector<std::string> bodies;
  for (int i = 0; i < 32; ++i) bodies.push_back(Body(i));
  struct NullWaiter : control::Waiter {
    void Resolve(const control::Decision&) override {}
    void Evicted(const control::Reject&) override {}
  } waiter;
  core::HeaderMap headers;
  SetHeaders(&headers, {{":method", "POST"}, {":path", "/v1/chat/completions"}});
  int i = 0;
  for (auto _ : state) {
    std::string body = bodies[i++ % bodies.size()];
    HeaderList h(headers);
    gateway::BodyInfo info = gateway::InspectBody(body);
    const std::string prompt(info.prompt);
    const gateway::RoutingHeaders rh =
        gateway::ReadRoutingHeaders([&](std::string_view n) { return h.Get(n); });
    control::RequestView v = gateway::MakeRequestView(w->next_request++, "/v1/chat/completions",
                                                      info, body.size(), prompt, rh);
    control::Ticket t;
    t.waiter = &waiter;
    control::Decision d = w->director->Admit(t, v, w->clock.Now());
    pb::ProcessingResponse r = RouteResponse(PickAddresses(d.pick, w->pool), body.size());
    std::vector<pb::ProcessingResponse> pieces;
    AppendBodyChunks(body, true, true, &pieces);
    benchmark::DoNotOptimize(r);
    w->director->Finish(t, {.endpoint = d.pick.order[0], .status = 200}, w->clock.Now());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ExtProcDecisionInProcess);

}  // namespace
}  // namespace tidegate::extproc
