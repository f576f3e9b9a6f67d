#include "extproc/protocol.h"

#include <algorithm>
#include <cctype>

#include "wire/errors.h"
#include "wire/wire.h"

namespace tidegate::extproc {

namespace core = ::envoy::config::core::v3;

HeaderList::HeaderList(const core::HeaderMap& map) {
  headers_.reserve(map.headers_size());
  for (const auto& h : map.headers()) {
    std::string key = h.key();
    std::transform(key.begin(), key.end(), key.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    headers_.emplace_back(std::move(key), h.raw_value().empty() ? h.value() : h.raw_value());
  }
}

std::string_view HeaderList::Get(std::string_view lowercase_name) const {
  for (const auto& [k, v] : headers_)
    if (k == lowercase_name) return v;
  return {};
}

namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

void SplitInto(std::string_view s, std::vector<std::string>* out) {
  while (!s.empty()) {
    const size_t comma = s.find(',');
    std::string_view part = Trim(s.substr(0, comma));
    if (!part.empty()) out->emplace_back(part);
    if (comma == std::string_view::npos) break;
    s.remove_prefix(comma + 1);
  }
}

const google::protobuf::Value* Field(const core::Metadata& md, std::string_view ns,
                                     std::string_view key) {
  auto it = md.filter_metadata().find(std::string(ns));
  if (it == md.filter_metadata().end()) return nullptr;
  auto f = it->second.fields().find(std::string(key));
  if (f == it->second.fields().end()) return nullptr;
  return &f->second;
}

core::HeaderValueOption* SetHeader(pb::HeaderMutation* m, std::string_view key,
                                   std::string_view value) {
  core::HeaderValueOption* o = m->add_set_headers();
  o->mutable_header()->set_key(std::string(key));
  o->mutable_header()->set_raw_value(std::string(value));
  o->set_append_action(core::HeaderValueOption::OVERWRITE_IF_EXISTS_OR_ADD);
  return o;
}

}  // namespace

Subset SubsetHint(const core::Metadata& md) {
  Subset s;
  const google::protobuf::Value* v = Field(md, kSubsetNamespace, kSubsetKey);
  if (!v) return s;
  s.present = true;
  if (v->has_list_value()) {
    for (const auto& e : v->list_value().values())
      if (e.has_string_value()) SplitInto(e.string_value(), &s.entries);
  } else if (v->has_string_value()) {
    SplitInto(v->string_value(), &s.entries);
  }
  return s;
}

bool AddressSubset::Matches(std::string_view host, uint16_t port) const {
  const std::string with_port = std::string(host) + ":" + std::to_string(port);
  for (const std::string& e : entries_)
    if (e == host || e == with_port) return true;
  return false;
}

bool AddressSubset::Contains(const pool::Endpoint& ep) const {
  return Matches(ep.config().host, ep.config().port);
}

std::string ServedEndpoint(const core::Metadata& md, const HeaderList& response_headers) {
  if (const google::protobuf::Value* v = Field(md, kLbNamespace, kServedKey);
      v && v->has_string_value() && !v->string_value().empty())
    return std::string(Trim(v->string_value()));
  return std::string(Trim(response_headers.Get(kServedKey)));
}

pb::ProcessingResponse RouteResponse(const std::vector<std::string>& addresses, size_t body_bytes) {
  pb::ProcessingResponse r;
  pb::CommonResponse* common = r.mutable_request_headers()->mutable_response();
  // The route is chosen by the header: Envoy must look at it again.
  common->set_clear_route_cache(true);
  pb::HeaderMutation* m = common->mutable_header_mutation();
  if (!addresses.empty()) SetHeader(m, wire::kDestinationEndpoint, addresses.front());
  SetHeader(m, "content-length", std::to_string(body_bytes));
  std::string list;
  for (const std::string& a : addresses) {
    if (!list.empty()) list.push_back(',');
    list += a;
  }
  google::protobuf::Struct lb;
  (*lb.mutable_fields())[std::string(wire::kDestinationEndpoint)].set_string_value(list);
  (*r.mutable_dynamic_metadata()->mutable_fields())[std::string(kLbNamespace)]
      .mutable_struct_value()
      ->Swap(&lb);
  return r;
}

void AppendBodyChunks(std::string_view body, bool request, bool end_of_stream,
                      std::vector<pb::ProcessingResponse>* out) {
  size_t at = 0;
  do {
    const size_t n = std::min(kMaxChunkBytes, body.size() - at);
    pb::ProcessingResponse& r = out->emplace_back();
    pb::BodyResponse* b = request ? r.mutable_request_body() : r.mutable_response_body();
    pb::StreamedBodyResponse* s =
        b->mutable_response()->mutable_body_mutation()->mutable_streamed_response();
    s->set_body(std::string(body.substr(at, n)));
    at += n;
    s->set_end_of_stream(end_of_stream && at == body.size());
  } while (at < body.size());
}

pb::ProcessingResponse ErrorResponse(int status, std::string_view message, std::string_view type,
                                     std::string_view code) {
  pb::ProcessingResponse r;
  pb::ImmediateResponse* im = r.mutable_immediate_response();
  im->mutable_status()->set_code(static_cast<::envoy::type::v3::StatusCode>(status));
  SetHeader(im->mutable_headers(), "content-type", "application/json");
  im->set_body(wire::ErrorBody(message, type, code));
  im->set_details(std::string(code));
  return r;
}

pb::ProcessingResponse RejectResponse(const control::Reject& rej) {
  pb::ProcessingResponse r = ErrorResponse(rej.status, rej.message, rej.type, rej.code);
  pb::HeaderMutation* h = r.mutable_immediate_response()->mutable_headers();
  if (std::string_view why = wire::DropReasonName(rej.drop); !why.empty()) {
    SetHeader(h, wire::kDroppedReason, why);
    SetHeader(h, wire::kDroppedReasonAlias, why);
  }
  if (rej.retry_after_s >= 0) SetHeader(h, "retry-after", std::to_string(rej.retry_after_s));
  return r;
}

pb::ProcessingResponse ContinueHeaders(bool request) {
  pb::ProcessingResponse r;
  (request ? r.mutable_request_headers() : r.mutable_response_headers())->mutable_response();
  return r;
}

std::vector<std::string> PickAddresses(const sched::PickResult& pick, const pool::Pool& pool) {
  std::vector<std::string> out;
  for (uint32_t i = 0; i < pick.count; ++i)
    if (pick.order[i] < pool.size()) out.push_back(pool.at(pick.order[i]).address());
  return out;
}

}  // namespace tidegate::extproc
