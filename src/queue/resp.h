// queue/resp.h — RESP2, the Redis wire protocol: command encoding, an incremental reply parser,
// and a small blocking client over Boost.Asio (TCP or TLS) for the Redis Streams queue.
//
// Contract:
//  - EncodeCommand() renders one command as a RESP array of bulk strings (binary-safe).
//  - RespReader accumulates bytes (Feed) and yields complete replies (Next) in order. A reply
//    that breaks the protocol (unknown type byte, bad length, missing CRLF, nesting deeper than
//    kRespMaxDepth, a bulk string over kRespMaxBulk, an array over kRespMaxElements) makes Next
//    return kError with a description; the reader is then unusable (the connection must be
//    dropped). Splitting the same bytes differently across Feed calls gives the same replies.
//  - RespConnection is one blocking connection: Connect (TCP_NODELAY, optional TLS with the
//    server certificate checked against the host name, AUTH, SELECT) and Call/Pipeline, each
//    bounded by a deadline. Any transport or protocol failure closes the connection; the caller
//    reconnects. Error replies from Redis (-ERR ...) are replies, not failures.
// Thread-safety: the free functions and RespReply are plain values. A RespReader or
// RespConnection is used by one thread at a time (callers serialise).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace tidegate::queue {

constexpr int kRespMaxDepth = 32;
constexpr int64_t kRespMaxBulk = 512ll * 1024 * 1024;  // Redis's proto-max-bulk-len default
constexpr int64_t kRespMaxElements = 16 * 1024 * 1024;

struct RespReply {
  enum class Type { kStatus, kError, kInteger, kBulk, kNil, kArray };
  Type type = Type::kNil;
  std::string str;  // kStatus, kError, kBulk
  int64_t integer = 0;
  std::vector<RespReply> elements;  // kArray

  bool is_error() const { return type == Type::kError; }
  bool is_nil() const { return type == Type::kNil; }
  bool is_array() const { return type == Type::kArray; }
  bool is_string() const { return type == Type::kBulk || type == Type::kStatus; }
  bool operator==(const RespReply&) const = default;
  // A short, printable rendering for error messages (truncated, control bytes escaped).
  std::string Describe(size_t max_len = 200) const;
};

// *N\r\n$len\r\narg\r\n...
std::string EncodeCommand(const std::vector<std::string>& args);
void AppendCommand(const std::vector<std::string>& args, std::string* out);
// The wire form of a reply (what a server sends): the inverse of RespReader, for tests and the
// fuzz target's round trip. Status and error strings must not contain CR or LF.
std::string EncodeReply(const RespReply& reply);

class RespReader {
 public:
  enum class Result { kOk, kIncomplete, kError };
  void Feed(std::string_view bytes);
  // On kOk fills *out and consumes the reply's bytes; on kError sets *error.
  Result Next(RespReply* out, std::string* error);
  size_t buffered() const { return buf_.size() - pos_; }

 private:
  std::string buf_;
  size_t pos_ = 0;
  bool failed_ = false;
  std::string error_;
};

// Parses exactly one reply from the front of `in`: kOk sets *consumed. Pure; the reader's core.
RespReader::Result ParseRespReply(std::string_view in, RespReply* out, size_t* consumed,
                                  std::string* error);

struct RespEndpoint {
  std::string host;
  uint16_t port = 6379;
  bool tls = false;
  std::string ca_file;  // empty: the system trust store
  std::string user;     // empty with a password: AUTH password (the default user)
  std::string password;
  int db = 0;
};

class RespConnection {
 public:
  using Deadline = std::chrono::steady_clock::time_point;
  explicit RespConnection(RespEndpoint endpoint);
  ~RespConnection();
  RespConnection(const RespConnection&) = delete;
  RespConnection& operator=(const RespConnection&) = delete;

  // Connects, handshakes (TLS), authenticates and selects the database. On failure returns
  // false with *error (never containing the password), and sets *permanent when a retry will
  // not help: Redis refused the credentials or the database, or TLS refused the certificate.
  bool Connect(Deadline deadline, std::string* error, bool* permanent = nullptr);
  bool connected() const;
  void Close();
  // Sends the commands in one write and reads one reply per command. False (and the
  // connection closed) on a transport or protocol error or when the deadline passes.
  bool Pipeline(const std::vector<std::vector<std::string>>& commands,
                std::vector<RespReply>* replies, Deadline deadline, std::string* error);
  bool Call(const std::vector<std::string>& command, RespReply* reply, Deadline deadline,
            std::string* error);
  const RespEndpoint& endpoint() const { return endpoint_; }

 private:
  struct Impl;
  const RespEndpoint endpoint_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tidegate::queue
