// http/tls.h — the TLS client context for https:// servers, shared by http::Client and the
// gateway's proxy.
//
// Contract: MakeClientTlsContext() builds a TLS 1.2+ client context that verifies the peer
// against options.ca_file (the system's trust store when empty) and presents the optional
// client certificate. The caller still sets SNI and host-name verification per connection.
// Returns null and sets *error (naming the file) when a file cannot be used.
// Thread-safety: a context may be shared by connections on one or more threads once built.
#pragma once

#include <boost/asio/ssl/context.hpp>
#include <memory>
#include <string>

#include "http/client.h"

namespace tidegate::http {

std::shared_ptr<boost::asio::ssl::context> MakeClientTlsContext(const TlsOptions& options,
                                                                std::string* error);

}  // namespace tidegate::http
