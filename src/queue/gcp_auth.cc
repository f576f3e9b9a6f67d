// queue/gcp_auth.cc — see gcp_auth.h.
#include "queue/gcp_auth.h"

#include <curl/curl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <cstdlib>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>

namespace tidegate::queue::gcp {
namespace {

using Json = nlohmann::json;

// ---- libcurl client -------------------------------------------------------------------------

size_t AppendBody(char* data, size_t size, size_t n, void* user) {
  static_cast<std::string*>(user)->append(data, size * n);
  return size * n;
}

// One easy handle per thread: curl_easy_reset() between requests keeps its connection cache.
struct ThreadCurl {
  CURL* handle = nullptr;
  ThreadCurl() {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
    handle = curl_easy_init();
  }
  ~ThreadCurl() {
    if (handle) curl_easy_cleanup(handle);
  }
  ThreadCurl(const ThreadCurl&) = delete;
  ThreadCurl& operator=(const ThreadCurl&) = delete;
};

class CurlHttpClient final : public HttpClient {
 public:
  HttpResponse Do(const HttpRequest& req) override {
    thread_local ThreadCurl tc;
    HttpResponse resp;
    CURL* h = tc.handle;
    if (!h) {
      resp.transport_error = "curl_easy_init failed";
      return resp;
    }
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, req.url.c_str());
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(req.timeout.count()));
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                     static_cast<long>(std::min<int64_t>(req.timeout.count(), 5000)));
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &AppendBody);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &resp.body);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_slist* headers = nullptr;
    for (const auto& [k, v] : req.headers)
      headers = curl_slist_append(headers, (k + ": " + v).c_str());
    headers = curl_slist_append(headers, "Expect:");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    if (req.method == "GET") {
      curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else {
      if (req.method != "POST") curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req.method.c_str());
      curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
      curl_easy_setopt(h, CURLOPT_POSTFIELDS, req.body.data());
    }
    char errbuf[CURL_ERROR_SIZE] = {0};
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    CURLcode rc = curl_easy_perform(h);
    curl_slist_free_all(headers);
    if (rc != CURLE_OK) {
      resp.transport_error = errbuf[0] ? errbuf : curl_easy_strerror(rc);
      resp.status = 0;
      return resp;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp.status);
    return resp;
  }
};

// ---- OpenSSL helpers ------------------------------------------------------------------------

std::string OpenSslError() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

Status SignRs256(std::string_view pem, std::string_view data, std::string* sig) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (!bio) return Status::Error("gcp auth: BIO_new_mem_buf failed");
  EVP_PKEY* pkey = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (!pkey) return Status::Error("gcp auth: cannot read private_key PEM: " + OpenSslError());
  Status st;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  size_t len = 0;
  if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_RSA) {
    st = Status::Error("gcp auth: private_key is not an RSA key (RS256 needs RSA)");
  } else if (!ctx || EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, pkey) != 1 ||
             EVP_DigestSign(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(data.data()),
                            data.size()) != 1) {
    st = Status::Error("gcp auth: RS256 sign init failed: " + OpenSslError());
  } else {
    sig->assign(len, '\0');
    if (EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig->data()), &len,
                       reinterpret_cast<const unsigned char*>(data.data()), data.size()) != 1) {
      st = Status::Error("gcp auth: RS256 sign failed: " + OpenSslError());
    } else {
      sig->resize(len);
    }
  }
  EVP_MD_CTX_free(ctx);
  EVP_PKEY_free(pkey);
  return st;
}

// ---- Token sources --------------------------------------------------------------------------

class NoAuth final : public TokenSource {
 public:
  Status Token(std::string* token) override {
    token->clear();
    return Status::Ok();
  }
};

class Caching final : public TokenSource {
 public:
  Caching(TokenFetcher fetch, WallClock now) : fetch_(std::move(fetch)), now_(std::move(now)) {}
  Status Token(std::string* token) override {
    std::lock_guard lock(mu_);
    if (!cached_.token.empty() && now_() + kTokenRefreshMargin < cached_.expiry) {
      *token = cached_.token;
      return Status::Ok();
    }
    AccessToken fresh;
    Status st = fetch_(&fresh);
    if (!st.ok) return st;
    cached_ = std::move(fresh);
    *token = cached_.token;
    return Status::Ok();
  }

 private:
  std::mutex mu_;
  TokenFetcher fetch_;
  WallClock now_;
  AccessToken cached_;  // guarded by mu_
};

WallClock OrSystemClock(WallClock now) {
  if (now) return now;
  return [] { return std::chrono::system_clock::now(); };
}

std::string GetEnv(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

}  // namespace

std::shared_ptr<HttpClient> NewCurlHttpClient() { return std::make_shared<CurlHttpClient>(); }

// ---- Encoding -------------------------------------------------------------------------------

namespace {
constexpr char kStd[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr char kUrl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

std::string Encode(std::string_view in, const char* alphabet, bool pad) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    out += alphabet[(v >> 6) & 63];
    out += alphabet[v & 63];
  }
  size_t rest = in.size() - i;
  if (rest == 1) {
    uint32_t v = uint8_t(in[i]) << 16;
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    if (pad) out += "==";
  } else if (rest == 2) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    out += alphabet[(v >> 6) & 63];
    if (pad) out += '=';
  }
  return out;
}

int DecodeChar(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+' || c == '-') return 62;
  if (c == '/' || c == '_') return 63;
  return -1;
}
}  // namespace

std::string Base64Encode(std::string_view in) { return Encode(in, kStd, true); }
std::string Base64UrlEncode(std::string_view in) { return Encode(in, kUrl, false); }

bool Base64Decode(std::string_view in, std::string* out) {
  while (!in.empty() && in.back() == '=') in.remove_suffix(1);
  if (in.size() % 4 == 1) return false;
  out->clear();
  out->reserve(in.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    int v = DecodeChar(c);
    if (v < 0) return false;
    acc = (acc << 6) | uint32_t(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out->push_back(char((acc >> bits) & 0xFF));
    }
  }
  return true;
}

std::string UrlFormEncode(std::string_view in) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : in) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += char(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::string BodyExcerpt(std::string_view body, size_t max) {
  std::string out;
  bool space = false;
  for (char c : body) {
    if (c == '\n' || c == '\r' || c == '\t' || c == ' ') {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += c;
    if (out.size() >= max) {
      out += "...";
      break;
    }
  }
  return out.empty() ? "<empty body>" : out;
}

// ---- Tokens ---------------------------------------------------------------------------------

std::shared_ptr<TokenSource> NoAuthTokenSource() { return std::make_shared<NoAuth>(); }

std::shared_ptr<TokenSource> CachingTokenSource(TokenFetcher fetch, WallClock now) {
  return std::make_shared<Caching>(std::move(fetch), OrSystemClock(std::move(now)));
}

Status ParseTokenResponse(std::string_view body, std::chrono::system_clock::time_point now,
                          AccessToken* out) {
  Json j = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object())
    return Status::Error("token response is not a JSON object: " + BodyExcerpt(body));
  auto tok = j.find("access_token");
  if (tok == j.end() || !tok->is_string() || tok->get<std::string>().empty()) {
    return Status::Error("token response has no access_token: " + BodyExcerpt(body, 120));
  }
  int64_t expires_in = 3600;
  if (auto e = j.find("expires_in"); e != j.end()) {
    if (e->is_number_integer()) {
      expires_in = e->get<int64_t>();
    } else if (e->is_string()) {
      expires_in = std::strtoll(e->get<std::string>().c_str(), nullptr, 10);
    }
  }
  out->token = tok->get<std::string>();
  out->expiry = now + std::chrono::seconds(expires_in);
  return Status::Ok();
}

Status ParseServiceAccountKey(std::string_view json, ServiceAccountKey* out) {
  Json j = Json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return Status::Error("service-account key is not a JSON object");
  std::string type = j.value("type", "");
  if (type != "service_account") {
    return Status::Error("credentials type \"" + type +
                         "\" is not supported (need a \"service_account\" key file)");
  }
  auto str = [&](const char* k) {
    auto it = j.find(k);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  out->client_email = str("client_email");
  out->private_key = str("private_key");
  out->private_key_id = str("private_key_id");
  if (std::string uri = str("token_uri"); !uri.empty()) out->token_uri = uri;
  if (out->client_email.empty()) return Status::Error("service-account key has no client_email");
  if (out->private_key.empty()) return Status::Error("service-account key has no private_key");
  return Status::Ok();
}

Status BuildJwtAssertion(const ServiceAccountKey& key, std::string_view scope,
                         std::chrono::system_clock::time_point now, std::string* jwt) {
  int64_t iat = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  Json header = {{"alg", "RS256"}, {"typ", "JWT"}};
  if (!key.private_key_id.empty()) header["kid"] = key.private_key_id;
  Json claims = {{"iss", key.client_email},
                 {"scope", std::string(scope)},
                 {"aud", key.token_uri},
                 {"iat", iat},
                 {"exp", iat + 3600}};
  std::string signing_input = Base64UrlEncode(header.dump()) + "." + Base64UrlEncode(claims.dump());
  std::string sig;
  Status st = SignRs256(key.private_key, signing_input, &sig);
  if (!st.ok) return st;
  *jwt = signing_input + "." + Base64UrlEncode(sig);
  return Status::Ok();
}

TokenFetcher MetadataServerFetcher(std::shared_ptr<HttpClient> http) {
  return [http](AccessToken* out) -> Status {
    std::string host = GetEnv("GCE_METADATA_HOST");
    if (host.empty()) host = "metadata.google.internal";
    HttpRequest req;
    req.url = "http://" + host + "/computeMetadata/v1/instance/service-accounts/default/token";
    req.headers = {{"Metadata-Flavor", "Google"}};
    req.timeout = std::chrono::seconds(5);
    HttpResponse resp = http->Do(req);
    if (!resp.transport_error.empty()) {
      return Status::Error("gcp auth: metadata server token " + req.url + ": " +
                           resp.transport_error +
                           " (not on GCP? set GOOGLE_APPLICATION_CREDENTIALS or "
                           "PUBSUB_EMULATOR_HOST)");
    }
    if (resp.status != 200) {
      return Status::Error("gcp auth: metadata server token " + req.url + ": HTTP " +
                           std::to_string(resp.status) + ": " + BodyExcerpt(resp.body));
    }
    Status st = ParseTokenResponse(resp.body, std::chrono::system_clock::now(), out);
    if (!st.ok) return Status::Error("gcp auth: metadata server " + st.error);
    return st;
  };
}

TokenFetcher ServiceAccountFetcher(std::shared_ptr<HttpClient> http, ServiceAccountKey key,
                                   std::string scope, WallClock now) {
  return [http, key = std::move(key), scope = std::move(scope),
          now = OrSystemClock(std::move(now))](AccessToken* out) -> Status {
    auto t = now();
    std::string jwt;
    Status st = BuildJwtAssertion(key, scope, t, &jwt);
    if (!st.ok) return Status::Error(st.error + " (service account " + key.client_email + ")");
    HttpRequest req;
    req.method = "POST";
    req.url = key.token_uri;
    req.headers = {{"Content-Type", "application/x-www-form-urlencoded"}};
    req.body = "grant_type=" + UrlFormEncode("urn:ietf:params:oauth:grant-type:jwt-bearer") +
               "&assertion=" + UrlFormEncode(jwt);
    req.timeout = std::chrono::seconds(10);
    HttpResponse resp = http->Do(req);
    std::string what = "gcp auth: token exchange for " + key.client_email + " at " + key.token_uri;
    if (!resp.transport_error.empty()) return Status::Error(what + ": " + resp.transport_error);
    if (resp.status != 200) {
      return Status::Error(what + ": HTTP " + std::to_string(resp.status) + ": " +
                           BodyExcerpt(resp.body));
    }
    st = ParseTokenResponse(resp.body, t, out);
    if (!st.ok) return Status::Error(what + ": " + st.error);
    return st;
  };
}

std::shared_ptr<TokenSource> DefaultTokenSource(std::shared_ptr<HttpClient> http,
                                                std::string_view scope, std::string* error) {
  std::string path = GetEnv("GOOGLE_APPLICATION_CREDENTIALS");
  if (path.empty()) return CachingTokenSource(MetadataServerFetcher(std::move(http)));
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *error = "gcp auth: cannot read GOOGLE_APPLICATION_CREDENTIALS file " + path;
    return nullptr;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  ServiceAccountKey key;
  Status st = ParseServiceAccountKey(ss.str(), &key);
  if (!st.ok) {
    *error = "gcp auth: GOOGLE_APPLICATION_CREDENTIALS " + path + ": " + st.error;
    return nullptr;
  }
  return CachingTokenSource(
      ServiceAccountFetcher(std::move(http), std::move(key), std::string(scope)));
}

}  // namespace tidegate::queue::gcp
