// The ext_proc endpoint picker's translations (extproc/protocol.h), apart from gRPC: headers and
// metadata in, the Director's view out (through the same gateway/request.h code as the HTTP
// front door), decisions back as ProcessingResponses, body chunking and the subset hint, which
// is also checked through a real Director and picker on the manual clock.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "common/clock.h"
#include "control/director.h"
#include "extproc/protocol.h"
#include "gateway/request.h"
#include "metrics/registry.h"
#include "pool/saturation.h"
#include "sched/picker.h"
#include "wire/errors.h"
#include "wire/wire.h"

namespace tidegate::extproc {
namespace {

namespace core = ::envoy::config::core::v3;

core::HeaderMap Map(std::vector<std::pair<std::string, std::string>> kv, bool raw = true) {
  core::HeaderMap m;
  for (auto& [k, v] : kv) {
    auto* h = m.add_headers();
    h->set_key(k);
    if (raw) {
      h->set_raw_value(v);
    } else {
      h->set_value(v);
    }
  }
  return m;
}

core::Metadata Md(const std::string& ns, const std::string& key, google::protobuf::Value v) {
  core::Metadata md;
  (*(*md.mutable_filter_metadata())[ns].mutable_fields())[key] = std::move(v);
  return md;
}

google::protobuf::Value List(std::vector<std::string> items) {
  google::protobuf::Value v;
  auto* l = v.mutable_list_value();
  for (auto& s : items) l->add_values()->set_string_value(s);
  return v;
}

google::protobuf::Value Str(const std::string& s) {
  google::protobuf::Value v;
  v.set_string_value(s);
  return v;
}

std::string HeaderOf(const pb::HeaderMutation& m, const std::string& key) {
  for (const auto& o : m.set_headers())
    if (o.header().key() == key) return o.header().raw_value();
  return "<absent>";
}

TEST(ExtProcHeaders, ReadsRawValueAndValueWithLowercaseNames) {
  HeaderList raw(Map({{":path", "/v1/completions"}, {"X-Gateway-Inference-Objective", "batch"}}));
  EXPECT_EQ(raw.Get(":path"), "/v1/completions");
  EXPECT_EQ(raw.Get("x-gateway-inference-objective"), "batch");
  EXPECT_EQ(raw.Get("absent"), "");
  HeaderList plain(Map({{"x-session-id", "s1"}}, false));
  EXPECT_EQ(plain.Get("x-session-id"), "s1");
}

TEST(ExtProcHeaders, RequestViewIsTheHttpFrontDoorsView) {
  HeaderList h(Map({{"x-llm-d-inference-objective", "sheddable"},
                    {"x-gateway-inference-fairness-id", "tenant-a"},
                    {"x-llm-d-inference-fairness-id", "ignored"},
                    {"x-llm-d-slo-ttft-ms", "250"},
                    {"x-slo-tpot-ms", "20"},
                    {"x-llm-d-inference-ttl", "900"},
                    {"x-session-id", "sess"}}));
  const gateway::RoutingHeaders rh =
      gateway::ReadRoutingHeaders([&](std::string_view n) { return h.Get(n); });
  EXPECT_EQ(rh.objective, "sheddable");   // llm-d's alias when ours is absent
  EXPECT_EQ(rh.fairness_id, "tenant-a");  // ours wins over the alias
  EXPECT_EQ(rh.slo_ttft_ms, "250");
  EXPECT_EQ(rh.slo_tpot_ms, "20");
  EXPECT_EQ(rh.ttl_ms, "900");
  EXPECT_EQ(rh.session_id, "sess");

  std::string body = R"({"model":"m1","stream":true,"messages":[{"role":"user","content":"hi"}]})";
  gateway::BodyInfo info = gateway::InspectBody(body);
  ASSERT_TRUE(info.error.empty()) << info.error;
  const std::string prompt(info.prompt);
  control::RequestView v =
      gateway::MakeRequestView(7, "/v1/chat/completions", info, body.size(), prompt, rh);
  EXPECT_EQ(v.id, 7u);
  EXPECT_EQ(v.model, "m1");
  EXPECT_TRUE(v.stream);
  EXPECT_EQ(v.body_bytes, body.size());
  EXPECT_EQ(v.prompt, "user:hi\n");
  EXPECT_EQ(v.objective, "sheddable");
  EXPECT_EQ(v.ttl_ms, "900");
  EXPECT_TRUE(v.body_error.empty());

  std::string bad = "not json";
  gateway::BodyInfo bi = gateway::InspectBody(bad);
  control::RequestView bv = gateway::MakeRequestView(8, "/v1/chat/completions", bi, bad.size(),
                                                     std::string(bi.prompt), rh);
  EXPECT_EQ(bv.body_error_code, "invalid_json");
}

TEST(ExtProcSubset, ReadsTheHintAsAListOrACommaSeparatedString) {
  Subset none = SubsetHint(core::Metadata());
  EXPECT_FALSE(none.present);
  Subset list = SubsetHint(Md(std::string(kSubsetNamespace), std::string(kSubsetKey),
                              List({"10.0.0.1:8000", " 10.0.0.2 "})));
  EXPECT_TRUE(list.present);
  EXPECT_EQ(list.entries, (std::vector<std::string>{"10.0.0.1:8000", "10.0.0.2"}));
  Subset str =
      SubsetHint(Md(std::string(kSubsetNamespace), std::string(kSubsetKey), Str("a:1, b:2,,")));
  EXPECT_EQ(str.entries, (std::vector<std::string>{"a:1", "b:2"}));
  Subset empty = SubsetHint(Md(std::string(kSubsetNamespace), std::string(kSubsetKey), List({})));
  EXPECT_TRUE(empty.present);
  EXPECT_TRUE(empty.entries.empty());
  // Another namespace is not the hint.
  EXPECT_FALSE(SubsetHint(Md("envoy.lb", std::string(kSubsetKey), List({"x"}))).present);

  AddressSubset s({"10.0.0.1:8000", "10.0.0.2"});
  EXPECT_TRUE(s.Matches("10.0.0.1", 8000));
  EXPECT_FALSE(s.Matches("10.0.0.1", 8001));
  EXPECT_TRUE(s.Matches("10.0.0.2", 1234));  // an "ip" entry: any port
  EXPECT_FALSE(s.Matches("10.0.0.20", 8000));
}

TEST(ExtProcServed, MetadataWinsOverTheHeader) {
  HeaderList h(Map({{std::string(kServedKey), "10.0.0.9:80"}}));
  EXPECT_EQ(ServedEndpoint(core::Metadata(), h), "10.0.0.9:80");
  EXPECT_EQ(ServedEndpoint(Md("envoy.lb", std::string(kServedKey), Str("10.0.0.8:80")), h),
            "10.0.0.8:80");
  EXPECT_EQ(ServedEndpoint(core::Metadata(), HeaderList()), "");
}

TEST(ExtProcResponses, RouteHeaderAndMetadataAgree) {
  pb::ProcessingResponse r = RouteResponse({"10.0.0.1:8000", "10.0.0.2:8000"}, 1234);
  ASSERT_TRUE(r.has_request_headers());
  const auto& common = r.request_headers().response();
  EXPECT_TRUE(common.clear_route_cache());
  EXPECT_EQ(HeaderOf(common.header_mutation(), "x-gateway-destination-endpoint"), "10.0.0.1:8000");
  EXPECT_EQ(HeaderOf(common.header_mutation(), "content-length"), "1234");
  const auto& lb = r.dynamic_metadata().fields().at("envoy.lb").struct_value();
  EXPECT_EQ(lb.fields().at("x-gateway-destination-endpoint").string_value(),
            "10.0.0.1:8000,10.0.0.2:8000");
  // It survives the wire.
  pb::ProcessingResponse back;
  ASSERT_TRUE(back.ParseFromString(r.SerializeAsString()));
  EXPECT_EQ(back.dynamic_metadata().SerializeAsString(), r.dynamic_metadata().SerializeAsString());
}

TEST(ExtProcResponses, BodiesAreStreamedInPiecesOfAtMost62000Bytes) {
  for (size_t n : {size_t{0}, size_t{1}, kMaxChunkBytes, kMaxChunkBytes + 1, size_t{200'000}}) {
    std::string body(n, 'x');
    for (size_t i = 0; i < n; ++i) body[i] = static_cast<char>('a' + i % 26);
    std::vector<pb::ProcessingResponse> out;
    AppendBodyChunks(body, true, true, &out);
    const size_t want = n == 0 ? 1 : (n + kMaxChunkBytes - 1) / kMaxChunkBytes;
    ASSERT_EQ(out.size(), want) << n;
    std::string joined;
    for (size_t i = 0; i < out.size(); ++i) {
      ASSERT_TRUE(out[i].has_request_body());
      const auto& s = out[i].request_body().response().body_mutation().streamed_response();
      EXPECT_LE(s.body().size(), kMaxChunkBytes);
      EXPECT_EQ(s.end_of_stream(), i + 1 == out.size()) << n << " piece " << i;
      joined += s.body();
    }
    EXPECT_EQ(joined, body);
  }
  std::vector<pb::ProcessingResponse> out;
  AppendBodyChunks("data: x\n\n", false, false, &out);
  ASSERT_EQ(out.size(), 1u);
  ASSERT_TRUE(out[0].has_response_body());
  EXPECT_FALSE(
      out[0].response_body().response().body_mutation().streamed_response().end_of_stream());
}

TEST(ExtProcResponses, RejectIsAnImmediateResponseShapedLikeTheProxysRefusal) {
  control::Reject r;
  r.kind = control::RejectKind::kSaturated;
  r.status = 429;
  r.retry_after_s = 2;
  r.message = "the pool is \"saturated\"";
  r.type = "rate_limit_error";
  r.code = "saturated";
  r.drop = wire::DropReason::kSaturated;
  pb::ProcessingResponse p = RejectResponse(r);
  ASSERT_TRUE(p.has_immediate_response());
  const auto& im = p.immediate_response();
  EXPECT_EQ(static_cast<int>(im.status().code()), 429);
  EXPECT_EQ(HeaderOf(im.headers(), "x-gateway-request-dropped-reason"), "saturated");
  EXPECT_EQ(HeaderOf(im.headers(), "x-llm-d-request-dropped-reason"), "saturated");
  EXPECT_EQ(HeaderOf(im.headers(), "retry-after"), "2");
  EXPECT_EQ(HeaderOf(im.headers(), "content-type"), "application/json");
  EXPECT_EQ(im.body(), wire::ErrorBody(r.message, r.type, r.code));

  control::Reject bad;  // a 400 has no dropped reason and no Retry-After
  bad.message = "x";
  bad.code = "invalid_json";
  const pb::ProcessingResponse bp = RejectResponse(bad);
  const auto& bim = bp.immediate_response();
  EXPECT_EQ(static_cast<int>(bim.status().code()), 400);
  EXPECT_EQ(HeaderOf(bim.headers(), "x-gateway-request-dropped-reason"), "<absent>");
  EXPECT_EQ(HeaderOf(bim.headers(), "retry-after"), "<absent>");
}

// The subset through the real Director and picker: only members are picked; none → 503.
struct DirectorFixture {
  DirectorFixture()
      : pool({{"10.0.0.1", 8000}, {"10.0.0.2", 8000}, {"10.0.0.3", 8000}}),
        detector(std::make_shared<const pool::SaturationDetector>(pool::SaturationConfig{})) {
    director = std::make_unique<control::Director>(
        control::DirectorConfig{}, pool, sched::MakePicker("tidegate-default", detector), registry);
    for (size_t i = 0; i < pool.size(); ++i) {
      pool::EndpointMetrics m;
      m.has_kv = true;
      m.scrape_time = clock.Now();
      pool.at(i).PublishMetrics(std::move(m));
    }
  }
  control::Decision Admit(control::Ticket& t, const sched::EndpointSubset* subset) {
    control::RequestView v;
    v.path = "/v1/chat/completions";
    v.model = "m";
    v.body_bytes = 10;
    v.id = ++id;
    v.subset = subset;
    return director->Admit(t, v, clock.Now());
  }
  ManualClock clock;
  pool::Pool pool;
  std::shared_ptr<const pool::SaturationDetector> detector;
  metrics::Registry registry;
  std::unique_ptr<control::Director> director;
  uint64_t id = 0;
};

struct NullWaiter : control::Waiter {
  void Resolve(const control::Decision&) override {}
  void Evicted(const control::Reject&) override {}
};

TEST(ExtProcSubset, TheDirectorPicksOnlyInsideTheSubset) {
  DirectorFixture f;
  NullWaiter w;
  AddressSubset only({"10.0.0.2:8000"});
  for (int i = 0; i < 5; ++i) {
    control::Ticket t;
    t.waiter = &w;
    control::Decision d = f.Admit(t, &only);
    ASSERT_EQ(d.kind, control::DecisionKind::kRoute);
    EXPECT_EQ(PickAddresses(d.pick, f.pool), std::vector<std::string>{"10.0.0.2:8000"});
    f.director->Finish(t, {.endpoint = d.pick.order[0], .status = 200}, f.clock.Now());
  }
  control::Ticket all;
  all.waiter = &w;
  control::Decision d = f.Admit(all, nullptr);
  ASSERT_EQ(d.kind, control::DecisionKind::kRoute);
  EXPECT_EQ(d.pick.count, 3u);
  f.director->Finish(all, {.endpoint = d.pick.order[0], .status = 200}, f.clock.Now());

  AddressSubset nowhere({"192.168.1.1:8000"});
  control::Ticket t;
  t.waiter = &w;
  control::Decision none = f.Admit(t, &nowhere);
  ASSERT_EQ(none.kind, control::DecisionKind::kReject);
  EXPECT_EQ(none.reject.kind, control::RejectKind::kNoEndpoints);
  EXPECT_EQ(none.reject.status, 503);
  EXPECT_EQ(RejectResponse(none.reject).immediate_response().status().code(),
            ::envoy::type::v3::ServiceUnavailable);
}

}  // namespace
}  // namespace tidegate::extproc
