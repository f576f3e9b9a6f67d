// queue/resp.cc — see resp.h.
#include "queue/resp.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>
#include <charconv>
#include <optional>

namespace tidegate::queue {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using Result = RespReader::Result;

// ---- Encoding -------------------------------------------------------------------------------

void AppendCommand(const std::vector<std::string>& args, std::string* out) {
  out->push_back('*');
  out->append(std::to_string(args.size()));
  out->append("\r\n");
  for (const auto& a : args) {
    out->push_back('$');
    out->append(std::to_string(a.size()));
    out->append("\r\n");
    out->append(a);
    out->append("\r\n");
  }
}

std::string EncodeCommand(const std::vector<std::string>& args) {
  std::string out;
  AppendCommand(args, &out);
  return out;
}

namespace {
void AppendReply(const RespReply& r, std::string* out) {
  switch (r.type) {
    case RespReply::Type::kStatus:
      *out += "+" + r.str + "\r\n";
      break;
    case RespReply::Type::kError:
      *out += "-" + r.str + "\r\n";
      break;
    case RespReply::Type::kInteger:
      *out += ":" + std::to_string(r.integer) + "\r\n";
      break;
    case RespReply::Type::kBulk:
      *out += "$" + std::to_string(r.str.size()) + "\r\n" + r.str + "\r\n";
      break;
    case RespReply::Type::kNil:
      *out += "$-1\r\n";
      break;
    case RespReply::Type::kArray:
      *out += "*" + std::to_string(r.elements.size()) + "\r\n";
      for (const auto& e : r.elements) AppendReply(e, out);
      break;
  }
}
}  // namespace

std::string EncodeReply(const RespReply& reply) {
  std::string out;
  AppendReply(reply, &out);
  return out;
}

std::string RespReply::Describe(size_t max_len) const {
  std::string s;
  switch (type) {
    case Type::kStatus:
      s = str;
      break;
    case Type::kError:
      s = "error: " + str;
      break;
    case Type::kInteger:
      s = std::to_string(integer);
      break;
    case Type::kBulk:
      s = "\"" + str + "\"";
      break;
    case Type::kNil:
      s = "nil";
      break;
    case Type::kArray:
      s = "[";
      for (size_t i = 0; i < elements.size() && s.size() < max_len; ++i)
        s += (i ? ", " : "") + elements[i].Describe(max_len);
      s += "]";
      break;
  }
  std::string out;
  for (char c : s) {
    if (out.size() >= max_len) {
      out += "...";
      break;
    }
    unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      static const char* hex = "0123456789abcdef";
      out += "\\x";
      out += hex[u >> 4];
      out += hex[u & 15];
    } else {
      out += c;
    }
  }
  return out;
}

// ---- Parsing --------------------------------------------------------------------------------

namespace {

constexpr size_t kMaxNumberLine = 32;         // "-9223372036854775808" and then some
constexpr size_t kMaxTextLine = 1024 * 1024;  // status and error lines

// Finds the line starting at `pos`: sets *end to the index of its CR. kIncomplete while no CRLF
// is in sight (and the line is still short enough to be valid).
Result FindLine(std::string_view in, size_t pos, size_t max_len, size_t* end, std::string* error) {
  size_t limit = std::min(in.size(), pos + max_len + 1);
  for (size_t i = pos; i < limit; ++i) {
    if (in[i] == '\n') {
      *error = "LF without CR at byte " + std::to_string(i);
      return Result::kError;
    }
    if (in[i] != '\r') continue;
    if (i + 1 >= in.size()) return Result::kIncomplete;
    if (in[i + 1] != '\n') {
      *error = "CR not followed by LF at byte " + std::to_string(i);
      return Result::kError;
    }
    *end = i;
    return Result::kOk;
  }
  if (in.size() > pos + max_len) {
    *error =
        "line longer than " + std::to_string(max_len) + " bytes at byte " + std::to_string(pos);
    return Result::kError;
  }
  return Result::kIncomplete;
}

bool ParseInt(std::string_view s, int64_t* v) {
  if (s.empty() || s.front() == '+') return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), *v);
  return ec == std::errc() && ptr == s.data() + s.size();
}

Result ParseAt(std::string_view in, size_t* pos, int depth, RespReply* out, std::string* error) {
  if (*pos >= in.size()) return Result::kIncomplete;
  if (depth > kRespMaxDepth) {
    *error = "replies nested deeper than " + std::to_string(kRespMaxDepth);
    return Result::kError;
  }
  const char type = in[*pos];
  const size_t start = *pos + 1;
  size_t end = 0;
  const bool text = type == '+' || type == '-';
  if (type != '+' && type != '-' && type != ':' && type != '$' && type != '*') {
    *error = "unknown reply type byte 0x" + std::string(1, "0123456789abcdef"[(type >> 4) & 15]) +
             std::string(1, "0123456789abcdef"[type & 15]) + " at byte " + std::to_string(*pos);
    return Result::kError;
  }
  if (Result r = FindLine(in, start, text ? kMaxTextLine : kMaxNumberLine, &end, error);
      r != Result::kOk)
    return r;
  std::string_view line = in.substr(start, end - start);
  const size_t after = end + 2;
  if (text) {
    if (out) {
      out->type = type == '+' ? RespReply::Type::kStatus : RespReply::Type::kError;
      out->str.assign(line);
    }
    *pos = after;
    return Result::kOk;
  }
  int64_t n = 0;
  if (!ParseInt(line, &n)) {
    *error =
        "bad number '" + std::string(line.substr(0, 40)) + "' at byte " + std::to_string(start);
    return Result::kError;
  }
  if (type == ':') {
    if (out) {
      out->type = RespReply::Type::kInteger;
      out->integer = n;
    }
    *pos = after;
    return Result::kOk;
  }
  if (n == -1) {
    if (out) out->type = RespReply::Type::kNil;
    *pos = after;
    return Result::kOk;
  }
  if (n < 0) {
    *error = "negative length " + std::to_string(n) + " at byte " + std::to_string(start);
    return Result::kError;
  }
  if (type == '$') {
    if (n > kRespMaxBulk) {
      *error = "bulk string of " + std::to_string(n) + " bytes is over the limit";
      return Result::kError;
    }
    const size_t len = static_cast<size_t>(n);
    if (in.size() - after < len + 2) return Result::kIncomplete;
    if (in[after + len] != '\r' || in[after + len + 1] != '\n') {
      *error = "bulk string not followed by CRLF at byte " + std::to_string(after + len);
      return Result::kError;
    }
    if (out) {
      out->type = RespReply::Type::kBulk;
      out->str.assign(in.substr(after, len));
    }
    *pos = after + len + 2;
    return Result::kOk;
  }
  if (n > kRespMaxElements) {
    *error = "array of " + std::to_string(n) + " elements is over the limit";
    return Result::kError;
  }
  // Each element takes at least 4 bytes (":0\r\n"): reserve no more than what is buffered can
  // hold, not the length announced (nobody may have sent it yet). `out` null: only scan.
  size_t p = after;
  if (out) {
    out->type = RespReply::Type::kArray;
    out->elements.clear();
    out->elements.reserve(static_cast<size_t>(std::min<int64_t>(n, (in.size() - p) / 4)));
  }
  for (int64_t i = 0; i < n; ++i) {
    RespReply e;
    if (Result r = ParseAt(in, &p, depth + 1, out ? &e : nullptr, error); r != Result::kOk)
      return r;
    if (out) out->elements.push_back(std::move(e));
  }
  *pos = p;
  return Result::kOk;
}

}  // namespace

Result ParseRespReply(std::string_view in, RespReply* out, size_t* consumed, std::string* error) {
  size_t pos = 0;
  RespReply r;
  Result res = ParseAt(in, &pos, 0, &r, error);
  if (res == Result::kOk) {
    *out = std::move(r);
    *consumed = pos;
  }
  return res;
}

void RespReader::Feed(std::string_view bytes) {
  if (pos_ > 0 && pos_ == buf_.size()) {
    buf_.clear();
    pos_ = 0;
  } else if (pos_ > 65536 && pos_ * 2 > buf_.size()) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  buf_.append(bytes);
}

Result RespReader::Next(RespReply* out, std::string* error) {
  if (failed_) {
    *error = error_;
    return Result::kError;
  }
  // Scan first (no copies; a bulk string is skipped by its length), build once complete: a
  // large reply arriving in many reads costs a scan of its elements per read, not a copy.
  std::string_view rest = std::string_view(buf_).substr(pos_);
  size_t scanned = 0;
  Result r = ParseAt(rest, &scanned, 0, nullptr, &error_);
  size_t consumed = 0;
  if (r == Result::kOk) r = ParseRespReply(rest, out, &consumed, &error_);
  if (r == Result::kOk) pos_ += consumed;
  if (r == Result::kError) {
    failed_ = true;
    *error = error_;
  }
  return r;
}

// ---- Connection -----------------------------------------------------------------------------

struct RespConnection::Impl {
  net::io_context io{1};
  std::shared_ptr<net::ssl::context> tls_ctx;
  std::optional<net::ssl::stream<tcp::socket>> stream;
  bool open = false;
  RespReader reader;

  tcp::socket& socket() { return stream->next_layer(); }

  // Runs the io_context until the started operation completes or the deadline passes (then
  // the socket is closed, which completes the operation with an error).
  boost::system::error_code Run(Deadline deadline, const bool& done,
                                const boost::system::error_code& ec) {
    io.restart();
    io.run_until(deadline);
    if (!done) {
      boost::system::error_code ignored;
      socket().close(ignored);
      io.restart();
      io.run();  // let the aborted handler run
      return net::error::timed_out;
    }
    return ec;
  }
};

RespConnection::RespConnection(RespEndpoint endpoint)
    : endpoint_(std::move(endpoint)), impl_(std::make_unique<Impl>()) {}
RespConnection::~RespConnection() { Close(); }

bool RespConnection::connected() const { return impl_->open; }

void RespConnection::Close() {
  if (impl_->stream) {
    boost::system::error_code ignored;
    impl_->socket().close(ignored);
  }
  impl_->stream.reset();
  impl_->open = false;
  impl_->reader = RespReader();
}

bool RespConnection::Connect(Deadline deadline, std::string* error, bool* permanent) {
  if (permanent) *permanent = false;
  Close();
  Impl& im = *impl_;
  const std::string where = endpoint_.host + ":" + std::to_string(endpoint_.port);
  if (endpoint_.tls && !im.tls_ctx) {
    auto ctx = std::make_shared<net::ssl::context>(net::ssl::context::tls_client);
    boost::system::error_code ec;
    ctx->set_options(net::ssl::context::default_workarounds | net::ssl::context::no_sslv2 |
                     net::ssl::context::no_sslv3 | net::ssl::context::no_tlsv1 |
                     net::ssl::context::no_tlsv1_1);
    if (endpoint_.ca_file.empty())
      ctx->set_default_verify_paths(ec);
    else
      ctx->load_verify_file(endpoint_.ca_file, ec);
    if (ec) {
      *error = "TLS: cannot load CA " +
               (endpoint_.ca_file.empty() ? std::string("store") : "file " + endpoint_.ca_file) +
               ": " + ec.message();
      return false;
    }
    ctx->set_verify_mode(net::ssl::verify_peer);
    im.tls_ctx = std::move(ctx);
  }
  if (!im.tls_ctx) im.tls_ctx = std::make_shared<net::ssl::context>(net::ssl::context::tls_client);
  im.stream.emplace(im.io, *im.tls_ctx);

  // Resolve + connect.
  bool done = false;
  boost::system::error_code result;
  tcp::resolver resolver(im.io);
  tcp::resolver::results_type endpoints;
  resolver.async_resolve(endpoint_.host, std::to_string(endpoint_.port),
                         [&](const boost::system::error_code& ec, tcp::resolver::results_type r) {
                           done = true;
                           result = ec;
                           endpoints = std::move(r);
                         });
  {
    im.io.restart();
    im.io.run_until(deadline);
    if (!done) {
      resolver.cancel();
      im.io.restart();
      im.io.run();
      *error = "resolving " + endpoint_.host + ": timed out";
      Close();
      return false;
    }
  }
  if (result) {
    *error = "resolving " + endpoint_.host + ": " + result.message();
    Close();
    return false;
  }
  done = false;
  net::async_connect(im.socket(), endpoints,
                     [&](const boost::system::error_code& ec, const tcp::endpoint&) {
                       done = true;
                       result = ec;
                     });
  if (auto ec = im.Run(deadline, done, result)) {
    *error = "connecting to " + where + ": " + ec.message();
    Close();
    return false;
  }
  boost::system::error_code ignored;
  im.socket().set_option(tcp::no_delay(true), ignored);
  if (endpoint_.tls) {
    auto& s = *im.stream;
    boost::system::error_code not_ip;
    (void)net::ip::make_address(endpoint_.host, not_ip);
    if (not_ip) SSL_set_tlsext_host_name(s.native_handle(), endpoint_.host.c_str());
    s.set_verify_callback(net::ssl::host_name_verification(endpoint_.host));
    done = false;
    s.async_handshake(net::ssl::stream_base::client, [&](const boost::system::error_code& ec) {
      done = true;
      result = ec;
    });
    if (auto ec = im.Run(deadline, done, result)) {
      *error = "TLS handshake with " + where + ": " + ec.message();
      // A certificate the client refuses (or a protocol mismatch) will not fix itself.
      if (permanent && ec.category() == net::error::get_ssl_category()) *permanent = true;
      Close();
      return false;
    }
  }
  im.open = true;
  // AUTH and SELECT in one round trip.
  std::vector<std::vector<std::string>> cmds;
  if (!endpoint_.password.empty()) {
    if (endpoint_.user.empty())
      cmds.push_back({"AUTH", endpoint_.password});
    else
      cmds.push_back({"AUTH", endpoint_.user, endpoint_.password});
  }
  if (endpoint_.db != 0) cmds.push_back({"SELECT", std::to_string(endpoint_.db)});
  if (cmds.empty()) return true;
  std::vector<RespReply> replies;
  std::string err;
  if (!Pipeline(cmds, &replies, deadline, &err)) {
    *error = "handshake with " + where + ": " + err;
    return false;
  }
  size_t i = 0;
  if (!endpoint_.password.empty()) {
    const RespReply& r = replies[i++];
    if (r.is_error()) {
      *error = "authentication " +
               (endpoint_.user.empty() ? std::string("(password)")
                                       : "as user '" + endpoint_.user + "'") +
               " refused by " + where + ": " + r.Describe();
      if (permanent) *permanent = true;
      Close();
      return false;
    }
  }
  if (endpoint_.db != 0 && replies[i].is_error()) {
    *error =
        "SELECT " + std::to_string(endpoint_.db) + " on " + where + ": " + replies[i].Describe();
    if (permanent) *permanent = true;  // a configuration error, like bad credentials
    Close();
    return false;
  }
  return true;
}

bool RespConnection::Pipeline(const std::vector<std::vector<std::string>>& commands,
                              std::vector<RespReply>* replies, Deadline deadline,
                              std::string* error) {
  replies->clear();
  Impl& im = *impl_;
  if (!im.open) {
    *error = "not connected";
    return false;
  }
  std::string out;
  for (const auto& c : commands) AppendCommand(c, &out);
  bool done = false;
  boost::system::error_code result;
  auto on_write = [&](const boost::system::error_code& ec, size_t) {
    done = true;
    result = ec;
  };
  if (endpoint_.tls)
    net::async_write(*im.stream, net::buffer(out), on_write);
  else
    net::async_write(im.socket(), net::buffer(out), on_write);
  if (auto ec = im.Run(deadline, done, result)) {
    *error = "write: " + ec.message();
    Close();
    return false;
  }
  char buf[65536];
  while (replies->size() < commands.size()) {
    RespReply r;
    std::string perr;
    Result pr = im.reader.Next(&r, &perr);
    if (pr == Result::kOk) {
      replies->push_back(std::move(r));
      continue;
    }
    if (pr == Result::kError) {
      *error = "malformed reply: " + perr;
      Close();
      return false;
    }
    done = false;
    size_t got = 0;
    auto on_read = [&](const boost::system::error_code& ec, size_t n) {
      done = true;
      result = ec;
      got = n;
    };
    if (endpoint_.tls)
      im.stream->async_read_some(net::buffer(buf), on_read);
    else
      im.socket().async_read_some(net::buffer(buf), on_read);
    if (auto ec = im.Run(deadline, done, result)) {
      *error = ec == net::error::eof ? "connection closed by the server" : "read: " + ec.message();
      Close();
      return false;
    }
    im.reader.Feed(std::string_view(buf, got));
  }
  return true;
}

bool RespConnection::Call(const std::vector<std::string>& command, RespReply* reply,
                          Deadline deadline, std::string* error) {
  std::vector<RespReply> replies;
  if (!Pipeline({command}, &replies, deadline, error)) return false;
  *reply = std::move(replies[0]);
  return true;
}

}  // namespace tidegate::queue
