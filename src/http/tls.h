// http/tls.h — the TLS client context for https:// servers, shared by http::Client and the
// gateway's proxy.
//
// Contract: MakeClientTlsContext() builds a TLS 1.2+ client context that verifies the peer
// against options.ca_file (the system's trust store when empty) and presents the optional
// client certificate. PrepareClientTls() sets one connection up for `host` before its
// handshake: SNI for a DNS name (never for an IP literal), and the check that the peer's
// certificate names the host (DNS name or IP).
// Returns null and sets *error (naming the file) when a file cannot be used.
// Thread-safety: a context may be shared by connections on one or more threads once built.
#pragma once

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <memory>
#include <string>

#include "http/client.h"

namespace tidegate::http {

std::shared_ptr<boost::asio::ssl::context> MakeClientTlsContext(const TlsOptions& options,
                                                                std::string* error);

template <typename NextLayer>
void PrepareClientTls(boost::asio::ssl::stream<NextLayer>& tls, const std::string& host) {
  boost::system::error_code not_ip;
  (void)boost::asio::ip::make_address(host, not_ip);
  if (not_ip) SSL_set_tlsext_host_name(tls.native_handle(), host.c_str());
  tls.set_verify_callback(boost::asio::ssl::host_name_verification(host));
}

}  // namespace tidegate::http
