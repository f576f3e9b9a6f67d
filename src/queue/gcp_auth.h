// queue/gcp_auth.h — a blocking HTTP seam (libcurl) and Google OAuth2 access tokens for the
// Pub/Sub backend.
//
// Contract:
//  - HttpClient::Do() performs one request and always returns: a transport failure (DNS,
//    connect, timeout) sets HttpResponse::transport_error and leaves status 0; any HTTP status
//    (including 4xx/5xx) is a normal response. Every request carries its own timeout.
//    NewCurlHttpClient() reuses one CURL easy handle per calling thread (keep-alive to the same
//    host), so it is cheap to call repeatedly from a worker pool.
//  - A TokenSource hands out a bearer token ("" = send no Authorization header, as for the
//    Pub/Sub emulator). Tokens from the metadata server or from a service-account key are cached
//    until kTokenRefreshMargin before their expiry; a failed fetch is not cached.
//  - ServiceAccountKey / BuildJwtAssertion: an RS256 JWT with iss = client_email,
//    scope, aud = token_uri, iat = now, exp = now + 1 h, header kid = private_key_id; exchanged at
//    token_uri with grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer.
//  - No call here talks to the network except HttpClient::Do() and TokenSource::Token().
// Thread-safety: HttpClient and TokenSource implementations are safe from any thread (token
// refresh is serialised by a mutex, so concurrent callers share one fetch). Free functions are
// pure.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "queue/queue.h"

namespace tidegate::queue::gcp {

// ---- HTTP seam ------------------------------------------------------------------------------

struct HttpRequest {
  std::string method = "GET";  // GET, POST, PUT, DELETE
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::chrono::milliseconds timeout{10000};  // whole request, connect included
};

struct HttpResponse {
  long status = 0;  // HTTP status; 0 when the request never got a response
  std::string body;
  std::string transport_error;  // non-empty on a transport failure (curl's message)
};

class HttpClient {
 public:
  virtual ~HttpClient() = default;
  virtual HttpResponse Do(const HttpRequest& req) = 0;
};

// The libcurl client (one easy handle per thread, reused; CURLOPT_NOSIGNAL set).
std::shared_ptr<HttpClient> NewCurlHttpClient();

// ---- Encoding helpers -----------------------------------------------------------------------

std::string Base64Encode(std::string_view in);     // standard alphabet, padded
std::string Base64UrlEncode(std::string_view in);  // URL alphabet, unpadded (JWT)
// Accepts the standard or URL alphabet, padded or not; false on any other character.
bool Base64Decode(std::string_view in, std::string* out);
std::string UrlFormEncode(std::string_view in);  // application/x-www-form-urlencoded value
// "1.5 KiB of body\n..." → a single-line excerpt of at most `max` bytes, for error messages.
std::string BodyExcerpt(std::string_view body, size_t max = 300);

// ---- Tokens ---------------------------------------------------------------------------------

inline constexpr std::string_view kPubSubScope = "https://www.googleapis.com/auth/pubsub";
inline constexpr std::chrono::seconds kTokenRefreshMargin{300};

struct AccessToken {
  std::string token;
  std::chrono::system_clock::time_point expiry{};
};

class TokenSource {
 public:
  virtual ~TokenSource() = default;
  // Sets *token to a bearer token ("" = no auth). The error names where the token came from.
  virtual Status Token(std::string* token) = 0;
};

// No authentication (emulator).
std::shared_ptr<TokenSource> NoAuthTokenSource();

// Caches what `fetch` returns until kTokenRefreshMargin before its expiry. `now` is injectable
// for tests.
using TokenFetcher = std::function<Status(AccessToken*)>;
using WallClock = std::function<std::chrono::system_clock::time_point()>;
std::shared_ptr<TokenSource> CachingTokenSource(TokenFetcher fetch, WallClock now = nullptr);

// Parses a token endpoint / metadata server answer: {"access_token", "expires_in", ...}.
Status ParseTokenResponse(std::string_view body, std::chrono::system_clock::time_point now,
                          AccessToken* out);

struct ServiceAccountKey {
  std::string client_email;
  std::string private_key;     // PEM
  std::string private_key_id;  // JWT "kid"; may be empty
  std::string token_uri = "https://oauth2.googleapis.com/token";
};
// Parses a service-account key file's JSON ("type": "service_account").
Status ParseServiceAccountKey(std::string_view json, ServiceAccountKey* out);

// header.claims.signature, RS256-signed with key.private_key.
Status BuildJwtAssertion(const ServiceAccountKey& key, std::string_view scope,
                         std::chrono::system_clock::time_point now, std::string* jwt);

// Token from the GCE/GKE/Cloud Run metadata server (GCE_METADATA_HOST overrides the host).
TokenFetcher MetadataServerFetcher(std::shared_ptr<HttpClient> http);
// Token from a service-account key: JWT assertion exchanged at key.token_uri.
TokenFetcher ServiceAccountFetcher(std::shared_ptr<HttpClient> http, ServiceAccountKey key,
                                   std::string scope, WallClock now = nullptr);

// The default credentials for `scope`: GOOGLE_APPLICATION_CREDENTIALS (a service-account key
// file, read now so a bad file fails at open) else the metadata server, both cached. Returns
// nullptr and sets *error when the key file cannot be used.
std::shared_ptr<TokenSource> DefaultTokenSource(std::shared_ptr<HttpClient> http,
                                                std::string_view scope, std::string* error);

}  // namespace tidegate::queue::gcp
