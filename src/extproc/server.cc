// The ext_proc endpoint picker's gRPC shell: one ServerBidiReactor per stream carrying out the
// Director's decisions (extproc/protocol.h translates them); see server.h for the contract.
#include "extproc/server.h"

#include <envoy/service/ext_proc/v3/external_processor.grpc.pb.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <spdlog/spdlog.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>

#include "extproc/protocol.h"
#include "gateway/admin.h"
#include "gateway/request.h"
#include "gateway/routes.h"
#include "gateway/sse.h"

namespace tidegate::extproc {

namespace asio = boost::asio;

namespace {

constexpr const char* kServiceName = "envoy.service.ext_proc.v3.ExternalProcessor";

}  // namespace

struct Server::Impl {
  explicit Impl(gateway::SharedState s) : shared(s) {}

  gateway::SharedState shared;
  asio::io_context io{1};
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> guard;
  std::thread io_thread;
  std::unique_ptr<asio::steady_timer> health_timer;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<pb::ExternalProcessor::CallbackService> service;
  int bound_port = 0;
  std::atomic<bool> last_ready{false};
  metrics::Family<metrics::Counter>* streams = nullptr;
  metrics::Family<metrics::Counter>* decisions = nullptr;

  void ScheduleHealth();
};

namespace {

// One stream: one HTTP request through Envoy.
class Stream final : public grpc::ServerBidiReactor<pb::ProcessingRequest, pb::ProcessingResponse>,
                     private control::Waiter {
 public:
  explicit Stream(Server::Impl& s) : s_(s), subset_({}) {
    ticket_.waiter = this;
    StartRead(&in_);
  }

  void OnReadDone(bool ok) override {
    std::unique_lock lock(mu_);
    if (!ok) {
      // The proxy half-closed or the stream broke: nothing more will come.
      read_closed_ = true;
      EndRequestLocked();
      MaybeFinishLocked();
      return;
    }
    HandleLocked(in_);
    in_.Clear();
    StartRead(&in_);
  }

  void OnWriteDone(bool ok) override {
    std::unique_lock lock(mu_);
    out_.pop_front();
    writing_ = false;
    if (!ok) {
      broken_ = true;
      out_.clear();
    }
    PumpLocked();
    MaybeFinishLocked();
  }

  void OnCancel() override {
    std::unique_lock lock(mu_);
    broken_ = true;
    EndRequestLocked();
  }

  void OnDone() override { delete this; }

 private:
  enum class Phase { kHeaders, kBody, kWaiting, kRouted, kResponse, kDone };

  // ---------------------------------------------------------------- the Director's side
  void Resolve(const control::Decision& d) override {
    // Called with the Director's lock held: only hand the decision over.
    asio::post(s_.io, [this, d] { OnResolved(d); });
  }
  void Evicted(const control::Reject&) override {
    // The request is already at the model server through the proxy: nothing to take back.
  }

  void OnResolved(control::Decision d) {
    std::unique_lock lock(mu_);
    resolving_ = false;
    if (phase_ != Phase::kWaiting) {
      // The stream ended while the decision was on its way.
      if (d.kind == control::DecisionKind::kRoute) {
        FinishTicketLocked(499);
      }
      MaybeFinishLocked();
      return;
    }
    CarryOutLocked(d);
    MaybeFinishLocked();
  }

  // ---------------------------------------------------------------- requests from the proxy
  void HandleLocked(const pb::ProcessingRequest& m) {
    if (m.has_metadata_context()) metadata_.MergeFrom(m.metadata_context());
    const bool request_phase = m.request_case() == pb::ProcessingRequest::kRequestHeaders ||
                               m.request_case() == pb::ProcessingRequest::kRequestBody;
    // Once the request was refused (or broke the protocol), what is still on its way is dropped.
    if (request_phase && phase_ == Phase::kDone) return;
    switch (m.request_case()) {
      case pb::ProcessingRequest::kRequestHeaders:
        if (phase_ != Phase::kHeaders) return Protocol("request headers twice");
        start_ = s_.shared.clock.Now();
        req_headers_ = HeaderList(m.request_headers().headers());
        phase_ = Phase::kBody;
        if (m.request_headers().end_of_stream()) DecideLocked();
        return;
      case pb::ProcessingRequest::kRequestBody:
        if (phase_ != Phase::kBody) return Protocol("a request body piece out of order");
        if (body_.size() + m.request_body().body().size() > s_.shared.cfg.max_body_bytes) {
          phase_ = Phase::kDone;
          Count("body_too_large");
          return Send(ErrorResponse(413,
                                    "request body exceeds the gateway's limit of " +
                                        std::to_string(s_.shared.cfg.max_body_bytes) + " bytes",
                                    "invalid_request_error", "body_too_large"));
        }
        body_ += m.request_body().body();
        if (m.request_body().end_of_stream()) DecideLocked();
        return;
      case pb::ProcessingRequest::kRequestTrailers:
        if (phase_ == Phase::kBody) DecideLocked();
        {
          pb::ProcessingResponse r;
          r.mutable_request_trailers();
          Send(std::move(r));
        }
        return;
      case pb::ProcessingRequest::kResponseHeaders: {
        HeaderList h(m.response_headers().headers());
        ResponseHeadersLocked(h);
        Send(ContinueHeaders(false));
        if (m.response_headers().end_of_stream()) EndRequestLocked();
        return;
      }
      case pb::ProcessingRequest::kResponseBody: {
        const std::string& b = m.response_body().body();
        ResponseBytesLocked(b);
        std::vector<pb::ProcessingResponse> pieces;
        AppendBodyChunks(b, false, m.response_body().end_of_stream(), &pieces);
        for (auto& p : pieces) Send(std::move(p));
        if (m.response_body().end_of_stream()) EndRequestLocked();
        return;
      }
      case pb::ProcessingRequest::kResponseTrailers: {
        EndRequestLocked();
        pb::ProcessingResponse r;
        r.mutable_response_trailers();
        Send(std::move(r));
        return;
      }
      default:
        return;
    }
  }

  void Protocol(std::string_view what) {
    spdlog::debug("ext_proc: protocol error: {}", what);
    if (phase_ == Phase::kBody || phase_ == Phase::kHeaders) phase_ = Phase::kDone;
    Count("protocol_error");
    Send(ErrorResponse(400, "ext_proc protocol error: " + std::string(what),
                       "invalid_request_error", "bad_request"));
  }

  void Count(std::string_view outcome) { s_.decisions->With({std::string(outcome)}).Inc(); }

  void DecideLocked() {
    gateway::BodyInfo info = gateway::InspectBody(body_);
    prompt_.assign(info.prompt);  // stable while the request waits and runs
    model_ = info.model;
    body_error_ = info.error;
    body_code_ = info.code;
    info.model = model_;
    stream_ = info.stream;
    path_ = std::string(req_headers_.Get(":path"));
    route_ = gateway::Classify(path_.substr(0, path_.find('?')));
    const gateway::RoutingHeaders rh =
        gateway::ReadRoutingHeaders([this](std::string_view n) { return req_headers_.Get(n); });
    control::RequestView v =
        gateway::MakeRequestView(s_.shared.next_request.fetch_add(1, std::memory_order_relaxed),
                                 gateway::RouteLabel(route_), info, body_.size(), prompt_, rh);
    v.model = model_;
    v.body_error = body_error_;
    v.body_error_code = body_code_;
    const Subset hint = SubsetHint(metadata_);
    if (hint.present) {
      subset_ = AddressSubset(hint.entries);
      v.subset = &subset_;
    }
    admitted_ = true;
    phase_ = Phase::kWaiting;
    control::Decision d = s_.shared.director.Admit(ticket_, v, s_.shared.clock.Now());
    sheddable_ = ticket_.priority < 0;
    if (d.kind == control::DecisionKind::kWait) {
      resolving_ = true;
      Count("queued");
      return;
    }
    CarryOutLocked(d);
  }

  void CarryOutLocked(const control::Decision& d) {
    if (d.kind == control::DecisionKind::kReject) {
      phase_ = Phase::kDone;
      status_ = d.reject.status;
      Count(control::RejectKindName(d.reject.kind));
      Send(RejectResponse(d.reject));
      RecordLocked();
      return;
    }
    // kRoute: the reservation is on the first endpoint.
    phase_ = Phase::kRouted;
    routed_ = true;
    reserved_ = d.pick.order[0];
    Count("routed");
    std::vector<std::string> addrs = PickAddresses(d.pick, s_.shared.pool);
    Send(RouteResponse(addrs, body_.size()));
    std::vector<pb::ProcessingResponse> pieces;
    AppendBodyChunks(body_, true, true, &pieces);
    for (auto& p : pieces) Send(std::move(p));
    std::string().swap(body_);
  }

  // ---------------------------------------------------------------- the response phase
  void ResponseHeadersLocked(const HeaderList& h) {
    if (!routed_ || phase_ == Phase::kDone) return;
    phase_ = Phase::kResponse;
    std::string_view st = h.Get(":status");
    int status = 0;
    for (char c : st) {
      if (c < '0' || c > '9') break;
      status = status * 10 + (c - '0');
    }
    status_ = status > 0 ? status : 200;
    std::string_view ct = h.Get("content-type");
    sse_ = ct.starts_with("text/event-stream");
    json_ = ct.starts_with("application/json");
    const std::string served = ServedEndpoint(metadata_, h);
    if (!served.empty()) {
      // (Only an endpoint still in the pool: one that left keeps the reservation where it is.)
      if (pool::Endpoint* ep = s_.shared.pool.FindActive(served)) {
        const auto i = static_cast<uint32_t>(ep->index());
        if (i != reserved_) {
          // The proxy went elsewhere (its own fallback): the reservation and affinity follow.
          s_.shared.director.Fallback(ticket_, reserved_, i, s_.shared.clock.Now());
          reserved_ = i;
        }
      }
    }
  }

  void ResponseBytesLocked(std::string_view b) {
    if (!routed_ || finished_ || b.empty()) return;
    if (phase_ == Phase::kRouted) phase_ = Phase::kResponse;
    if (ttft_.count() < 0) {
      ttft_ = s_.shared.clock.Now() - start_;
      if (stream_) s_.shared.metrics.ttft->Observe(ToSeconds(ttft_));
    }
    if (sse_) {
      sse_scan_.Feed(b);
      if (sse_scan_.DataEvents() > 0) events_ = sse_scan_.DataEvents();
      gateway::CountJsonTokens(b, &usage_tokens_);
    } else if (json_) {
      gateway::CountJsonTokens(b, &usage_tokens_);
    }
  }

  // The request is over for the picker (response done, stream ended or cancelled).
  void EndRequestLocked() {
    if (phase_ == Phase::kWaiting && resolving_) {
      if (s_.shared.director.Cancel(ticket_, s_.shared.clock.Now())) {
        resolving_ = false;
        status_ = 499;
        Count("cancelled");
        RecordLocked();
      }
      // Else its decision is on its way (OnResolved finishes it).
      phase_ = Phase::kDone;
      return;
    }
    if (routed_ && !finished_) {
      const bool complete = phase_ == Phase::kResponse;
      FinishTicketLocked(complete && status_ > 0 ? status_ : 499);
    }
    phase_ = Phase::kDone;
  }

  void FinishTicketLocked(int status) {
    if (finished_) return;
    finished_ = true;
    status_ = status;
    sched::Outcome o;
    o.endpoint = reserved_;
    o.status = status;
    o.ttft = ttft_;
    // The usage figure when the response carried one, else the SSE events (as the proxy counts).
    o.output_tokens = usage_tokens_ >= 0 ? usage_tokens_ : events_;
    const Nanos now = s_.shared.clock.Now();
    o.duration = now - start_;
    s_.shared.director.Finish(ticket_, o, now);
    RecordLocked();
  }

  // The gateway's request metrics, as for a request through the HTTP front door.
  void RecordLocked() {
    if (recorded_ || !admitted_) return;
    recorded_ = true;
    auto& gm = s_.shared.metrics;
    if (gateway::IsApiRoute(route_)) (sheddable_ ? gm.requests_async : gm.requests_realtime)->Inc();
    gm.duration[static_cast<int>(route_)]->Observe(ToSeconds(s_.shared.clock.Now() - start_));
    const std::string ep = routed_ && reserved_ < s_.shared.pool.size()
                               ? s_.shared.pool.at(reserved_).address()
                               : std::string("none");
    gm.requests_total->With({gateway::RouteLabel(route_), std::to_string(status_), ep}).Inc();
  }

  // ---------------------------------------------------------------- writes
  void Send(pb::ProcessingResponse r) {
    if (broken_) return;
    out_.push_back(std::move(r));
    PumpLocked();
  }
  void PumpLocked() {
    if (writing_ || out_.empty() || broken_) return;
    writing_ = true;
    StartWrite(&out_.front());
  }
  void MaybeFinishLocked() {
    if (finish_called_ || !read_closed_ || writing_ || resolving_) return;
    if (!out_.empty() && !broken_) return;
    finish_called_ = true;
    Finish(grpc::Status::OK);
  }

  Server::Impl& s_;
  // Recursive: gRPC may run a reaction inline from the operation that started it.
  std::recursive_mutex mu_;
  pb::ProcessingRequest in_;
  std::deque<pb::ProcessingResponse> out_;
  bool writing_ = false, read_closed_ = false, broken_ = false, finish_called_ = false;
  bool resolving_ = false, admitted_ = false, routed_ = false, finished_ = false;
  bool recorded_ = false, sheddable_ = false, stream_ = false, sse_ = false, json_ = false;
  Phase phase_ = Phase::kHeaders;
  ::envoy::config::core::v3::Metadata metadata_;
  HeaderList req_headers_;
  std::string body_, prompt_, model_, body_error_, body_code_, path_;
  gateway::Route route_ = gateway::Route::kOther;
  AddressSubset subset_;
  control::Ticket ticket_;
  uint32_t reserved_ = sched::Outcome::kNone;
  Nanos start_{0};
  Nanos ttft_{-1};
  int status_ = 0;
  int64_t events_ = -1, usage_tokens_ = -1;
  gateway::SseScanner sse_scan_;
};

class Service final : public pb::ExternalProcessor::CallbackService {
 public:
  explicit Service(Server::Impl& s) : s_(s) {}
  grpc::ServerBidiReactor<pb::ProcessingRequest, pb::ProcessingResponse>* Process(
      grpc::CallbackServerContext*) override {
    s_.streams->With({"opened"}).Inc();
    return new Stream(s_);
  }

 private:
  Server::Impl& s_;
};

}  // namespace

void Server::Impl::ScheduleHealth() {
  health_timer->expires_after(std::chrono::milliseconds(250));
  health_timer->async_wait([this](const boost::system::error_code& ec) {
    if (ec || !server) return;
    const bool ready =
        gateway::CheckReadiness(shared.pool, shared.draining.load(), shared.clock.Now()).ready;
    if (ready != last_ready.exchange(ready)) {
      auto* h = server->GetHealthCheckService();
      h->SetServingStatus("readiness", ready);
    }
    ScheduleHealth();
  });
}

Server::Server(gateway::SharedState shared) : impl_(std::make_unique<Impl>(shared)) {
  impl_->streams = &shared.registry.AddCounter("tidegate_ext_proc_streams_total",
                                               "ext_proc streams opened by the proxy", {"event"});
  impl_->decisions = &shared.registry.AddCounter(
      "tidegate_ext_proc_decisions_total",
      "ext_proc requests by decision (routed, queued, cancelled, or the refusal's kind)",
      {"outcome"});
}

Server::~Server() { Stop(); }

std::string Server::Start(const std::string& host, uint16_t port) {
  auto& I = *impl_;
  grpc::EnableDefaultHealthCheckService(true);
  I.service = std::make_unique<Service>(I);
  grpc::ServerBuilder b;
  const std::string addr =
      (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
  b.AddListeningPort(addr, grpc::InsecureServerCredentials(), &I.bound_port);
  b.RegisterService(I.service.get());
  I.server = b.BuildAndStart();
  if (!I.server || I.bound_port == 0) {
    I.server.reset();
    return "cannot listen for ext_proc on " + addr;
  }
  auto* h = I.server->GetHealthCheckService();
  h->SetServingStatus("liveness", true);
  h->SetServingStatus(kServiceName, true);
  const bool ready =
      gateway::CheckReadiness(I.shared.pool, I.shared.draining.load(), I.shared.clock.Now()).ready;
  I.last_ready = ready;
  h->SetServingStatus("readiness", ready);
  I.guard.emplace(I.io.get_executor());
  I.health_timer = std::make_unique<asio::steady_timer>(I.io);
  I.ScheduleHealth();
  I.io_thread = std::thread([&I] { I.io.run(); });
  spdlog::info("ext_proc endpoint picker (gRPC {}) listening on {}:{}", kServiceName, host,
               I.bound_port);
  return {};
}

uint16_t Server::port() const { return static_cast<uint16_t>(impl_->bound_port); }

void Server::Stop() {
  auto& I = *impl_;
  if (I.server) {
    I.server->GetHealthCheckService()->SetServingStatus(false);
    I.server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  }
  if (I.io_thread.joinable()) {
    asio::post(I.io, [&I] {
      if (I.health_timer) I.health_timer->cancel();
    });
    I.guard.reset();
    I.io.stop();
    I.io_thread.join();
  }
  I.server.reset();
}

}  // namespace tidegate::extproc
