// extproc/protocol.h — the Endpoint Picker Protocol's translations, apart from any gRPC I/O:
// Envoy's ext_proc messages in, the Director's inputs out, and its decisions back as messages.
//
// Contract:
//  * HeaderList reads an ext_proc HeaderMap (value, else raw_value: Envoy sends raw_value) with
//    lowercase names; Get() returns the first value or "" when absent.
//  * SubsetHint() reads the proxy's subset hint: metadata namespace "envoy.lb.subset_hint", key
//    "x-gateway-destination-endpoint-subset", a list of "ip" or "ip:port" strings (a single
//    comma-separated string is accepted too). `present` tells a missing hint (any endpoint)
//    from an empty one (no endpoint is eligible).
//  * AddressSubset is that hint as a sched::EndpointSubset: an endpoint is eligible when its
//    host equals an "ip" entry, or its host:port an "ip:port" entry.
//  * ServedEndpoint() is where the proxy says the request went: metadata "envoy.lb" key
//    "x-gateway-destination-endpoint-served", else the response header of that name.
//  * RouteResponse() answers the request headers with the pick: a header mutation setting
//    x-gateway-destination-endpoint to the first address (and content-length to the body's
//    size), and dynamic metadata "envoy.lb" / "x-gateway-destination-endpoint" holding the
//    whole ordered list comma-separated — its first entry is always the header's value.
//  * AppendBodyChunks() streams a body back (FULL_DUPLEX_STREAMED) as BodyMutation
//    streamed_response pieces of at most kMaxChunkBytes each, end_of_stream on the last; an
//    empty body with end_of_stream is one empty piece.
//  * RejectResponse() is an ImmediateResponse with the refusal's status, the dropped-reason
//    headers (ours and llm-d's), Retry-After when known, and the OpenAI-style JSON error body
//    the HTTP front door sends for the same refusal.
// Thread-safety: pure functions and plain data.
#pragma once

#include <envoy/service/ext_proc/v3/external_processor.pb.h>

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "control/director.h"
#include "pool/endpoint.h"
#include "sched/picker.h"

namespace tidegate::extproc {

namespace pb = ::envoy::service::ext_proc::v3;

inline constexpr size_t kMaxChunkBytes = 62'000;
inline constexpr std::string_view kLbNamespace = "envoy.lb";
inline constexpr std::string_view kSubsetNamespace = "envoy.lb.subset_hint";
inline constexpr std::string_view kSubsetKey = "x-gateway-destination-endpoint-subset";
inline constexpr std::string_view kServedKey = "x-gateway-destination-endpoint-served";

class HeaderList {
 public:
  HeaderList() = default;
  explicit HeaderList(const ::envoy::config::core::v3::HeaderMap& map);
  std::string_view Get(std::string_view lowercase_name) const;
  size_t size() const { return headers_.size(); }

 private:
  std::vector<std::pair<std::string, std::string>> headers_;
};

struct Subset {
  bool present = false;
  std::vector<std::string> entries;
};
Subset SubsetHint(const ::envoy::config::core::v3::Metadata& md);

class AddressSubset final : public sched::EndpointSubset {
 public:
  explicit AddressSubset(std::vector<std::string> entries) : entries_(std::move(entries)) {}
  bool Contains(const pool::Endpoint& ep) const override;
  bool Matches(std::string_view host, uint16_t port) const;

 private:
  std::vector<std::string> entries_;
};

std::string ServedEndpoint(const ::envoy::config::core::v3::Metadata& md,
                           const HeaderList& response_headers);

pb::ProcessingResponse RouteResponse(const std::vector<std::string>& addresses, size_t body_bytes);
void AppendBodyChunks(std::string_view body, bool request, bool end_of_stream,
                      std::vector<pb::ProcessingResponse>* out);
pb::ProcessingResponse RejectResponse(const control::Reject& r);
// A refusal the picker makes itself (a malformed request): status, message, OpenAI type, code.
pb::ProcessingResponse ErrorResponse(int status, std::string_view message, std::string_view type,
                                     std::string_view code);
// An empty answer to a phase the picker only watches (CONTINUE).
pb::ProcessingResponse ContinueHeaders(bool request);

// The endpoint addresses of a pick, in order.
std::vector<std::string> PickAddresses(const sched::PickResult& pick, const pool::Pool& pool);

}  // namespace tidegate::extproc
