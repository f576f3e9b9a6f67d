// gateway/net.h — the gateway's internal network types (Boost.Beast/Asio), shared by the
// session server (server.cc) and the proxy (proxy.cc), the only two translation units of the
// gateway that include Beast.
//
// Contract: a TimedSocket is an Asio stream with a deadline enforced by its loop's DeadlineSet
// (a periodic sweep, not a kernel timer per operation). A Worker is one event loop and
// everything owned by it (idle upstream connections, relay buffers, client sessions); state
// reached only from its loop needs no locks. SessionCtl is the per-connection state that
// completion handlers posted from other threads (the Director's dispatch, eviction) and the
// hang-up watch share with the session coroutine; every handler checks `request_gen` so that a
// late one does nothing to the next request.
// Thread-safety: everything here belongs to one event loop, except what the Director's
// callbacks post to it.
#pragma once

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstring>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/clock.h"
#include "control/director.h"
#include "metrics/registry.h"

namespace tidegate::gateway {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

// Everything of the gateway runs on io_context executors: the concrete type (instead of the
// type-erased any_io_executor) saves a virtual dispatch and an executor copy at every step of
// every coroutine.
using Executor = net::io_context::executor_type;
template <typename T = void>
using Task = net::awaitable<T, Executor>;
using Socket = net::basic_stream_socket<tcp, Executor>;
using Acceptor = net::basic_socket_acceptor<tcp, Executor>;
using TlsStream = net::ssl::stream<Socket&>;
using Timer = net::basic_waitable_timer<std::chrono::steady_clock,
                                        net::wait_traits<std::chrono::steady_clock>, Executor>;
inline constexpr auto kTok = net::as_tuple(net::use_awaitable_t<Executor>{});
inline constexpr size_t kHeaderLimit = 64 * 1024;
inline constexpr auto kSweepPeriod = std::chrono::milliseconds(50);

inline int64_t SteadyNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
inline int64_t NsOf(std::chrono::milliseconds d) { return d.count() * 1'000'000; }

class TimedSocket;

// The timeouts of one event loop, checked by a periodic sweep instead of a kernel timer per
// operation (re-arming a timer on every read and write cost a timerfd syscall each). Arming is
// a store of an integer; precision is the sweep period (kSweepPeriod).
class DeadlineSet {
 public:
  void Add(TimedSocket* s);
  void Remove(TimedSocket* s);
  void Sweep(int64_t now_ns);

 private:
  std::vector<TimedSocket*> items_;
};

// A TCP socket with a deadline, usable wherever Beast/Asio want an async stream. When the
// deadline passes, the sweep cancels the pending operations (they end with operation_aborted)
// and timed_out() turns true until the next expires_after().
class TimedSocket {
 public:
  using executor_type = Socket::executor_type;
  TimedSocket(Socket sock, DeadlineSet& set) : sock_(std::move(sock)), set_(set) { set_.Add(this); }
  ~TimedSocket() { set_.Remove(this); }
  TimedSocket(const TimedSocket&) = delete;
  TimedSocket& operator=(const TimedSocket&) = delete;

  executor_type get_executor() { return sock_.get_executor(); }
  // Reads and writes go through TLS once StartTls() was called (both forms complete the same
  // way, so every caller is the same code).
  template <typename Buffers, typename Token>
  auto async_read_some(const Buffers& b, Token&& t) {
    if (tls_) return tls_->async_read_some(b, std::forward<Token>(t));
    return sock_.async_read_some(b, std::forward<Token>(t));
  }
  template <typename Buffers, typename Token>
  auto async_write_some(const Buffers& b, Token&& t) {
    if (tls_) return tls_->async_write_some(b, std::forward<Token>(t));
    return sock_.async_write_some(b, std::forward<Token>(t));
  }
  Socket& socket() { return sock_; }
  // Layers TLS over the socket (the handshake is the caller's: tls()->async_handshake). `ctx`
  // must outlive the socket.
  void StartTls(net::ssl::context& ctx) { tls_ = std::make_unique<TlsStream>(sock_, ctx); }
  TlsStream* tls() { return tls_.get(); }

  void expires_after(std::chrono::milliseconds d) {
    deadline_ns_ = SteadyNowNs() + std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
    fired_ = false;
  }
  void expires_at_ns(int64_t steady_ns) {  // an absolute SteadyNowNs() time
    deadline_ns_ = steady_ns;
    fired_ = false;
  }
  void expires_never() { deadline_ns_ = 0; }
  bool timed_out() const { return fired_; }

 private:
  friend class DeadlineSet;
  Socket sock_;
  std::unique_ptr<TlsStream> tls_;  // after sock_: it refers to it
  DeadlineSet& set_;
  int64_t deadline_ns_ = 0;
  bool fired_ = false;
  size_t slot_ = 0;
};

inline void DeadlineSet::Add(TimedSocket* s) {
  s->slot_ = items_.size();
  items_.push_back(s);
}

inline void DeadlineSet::Remove(TimedSocket* s) {
  TimedSocket* last = items_.back();
  items_[s->slot_] = last;
  last->slot_ = s->slot_;
  items_.pop_back();
}

inline void DeadlineSet::Sweep(int64_t now_ns) {
  for (TimedSocket* s : items_) {
    if (s->deadline_ns_ != 0 && now_ns >= s->deadline_ns_) {
      s->deadline_ns_ = 0;
      s->fired_ = true;
      beast::error_code ig;
      s->sock_.cancel(ig);
    }
  }
}

// A timeout is an operation the sweep cancelled.
inline bool TimedOut(const beast::error_code& ec, const TimedSocket& s) {
  return s.timed_out() && (ec == net::error::operation_aborted || ec);
}

inline bool IsTimeout(const beast::error_code& ec) {
  return ec == beast::error::timeout || ec == net::error::timed_out;
}

// A socket's read buffer: the unread bytes are [start, end) of buf (parsers decode in place, and
// the relay writes from it).
struct ReadBuffer {
  explicit ReadBuffer(size_t capacity) : buf(new char[capacity]), cap(capacity) {}
  std::unique_ptr<char[]> buf;
  size_t cap, start = 0, end = 0;
  char* data() { return buf.get() + start; }
  size_t size() const { return end - start; }
  std::string_view view() const { return {buf.get() + start, end - start}; }
  net::mutable_buffer free_space() { return net::buffer(buf.get() + end, cap - end); }
  // Moves the unread bytes to the front; grows the buffer (up to `max`) when it is full.
  void Compact(size_t max) {
    if (start > 0) {
      std::memmove(buf.get(), buf.get() + start, end - start);
      end -= start;
      start = 0;
    }
    if (end == cap && cap < max) {
      std::unique_ptr<char[]> bigger(new char[max]);
      std::memcpy(bigger.get(), buf.get(), end);
      buf = std::move(bigger);
      cap = max;
    }
  }
};

// An idle or busy keep-alive connection to one upstream endpoint.
struct UpConn {
  static constexpr size_t kBufBytes = 16 * 1024;
  UpConn(const Executor& ex, DeadlineSet& set) : stream(Socket(ex), set), in(kBufBytes) {}
  TimedSocket stream;
  ReadBuffer in;
  std::string head;  // request head serialisation buffer, reused
};

struct SessionCtl;

// A client connection, tracked so a drain can close the idle ones and the sweep can arm a
// deferred hang-up watch.
struct SessionState {
  TimedSocket* stream = nullptr;
  bool idle = false;
  std::shared_ptr<SessionCtl> ctl;
};

// One event loop and everything owned by it.
struct Worker {
  DeadlineSet deadlines;  // declared first: outlives every socket of this loop
  // Each loop's sockets are used from that loop only: no per-descriptor locking (new sockets
  // are still registered from the accepting thread, which stays locked).
  net::io_context ioc{BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO};
  std::optional<net::executor_work_guard<net::io_context::executor_type>> guard;
  std::thread thread;
  // Per endpoint slot (pool::Pool): idle keep-alive connections and resolved addresses, kept
  // for the endpoint object `uid` and dropped when the slot holds another one.
  struct Upstream {
    uint64_t uid = 0;
    bool resolved = false;
    std::vector<tcp::endpoint> addrs;
    std::vector<std::unique_ptr<UpConn>> idle;
  };
  std::vector<Upstream> upstream;
  std::list<SessionState*> sessions;
  std::unordered_map<uint64_t, metrics::Counter*> request_counters;
};

// Per client connection, shared with handlers posted from elsewhere (see the header comment).
struct SessionCtl {
  explicit SessionCtl(const Executor& ex) : wake(ex) {}
  uint64_t request_gen = 0;  // bumped for every request of the connection
  // The hang-up watch that runs while a request waits or is upstream.
  uint64_t watch_gen = 0;  // bumped on every arm/disarm so a stale completion does nothing
  bool armed = false;
  // A deferred watch: the loop's sweep arms it once this time (steady ns) has passed, so a
  // request that is answered quickly costs no readiness registration (each one is a syscall).
  int64_t watch_due_ns = 0;
  bool client_gone = false;
  UpConn* upstream = nullptr;  // the connection to close if the client leaves
  // Waiting at the gateway: the Director's decision, and the timer whose cancellation wakes
  // the session.
  Timer wake;
  bool resolved = false;
  control::Decision decision;
  // A running sheddable request evicted by the Director.
  bool evicted = false;
  control::Reject evict_reject;
  std::string request_id;  // of the current request (reused: no allocation once warm)
  std::string body;        // of the current request (reused; room for the JSON parser's padding)
  // The prompt of the current request, copied out of the body parser's thread-local buffer so
  // that it stays valid while the request waits and runs (reused: no allocation once warm).
  std::string prompt;
};

// Receives the Director's callbacks for one request and hands them to the session's loop.
class SessionWaiter final : public control::Waiter {
 public:
  SessionWaiter(std::shared_ptr<SessionCtl> ctl, Executor ex)
      : ctl_(std::move(ctl)), ex_(std::move(ex)), gen_(ctl_->request_gen) {}
  void Resolve(const control::Decision& d) override {
    net::post(ex_, [ctl = ctl_, gen = gen_, d] {
      if (ctl->request_gen != gen) return;
      ctl->decision = d;
      ctl->resolved = true;
      ctl->wake.cancel();
    });
  }
  void Evicted(const control::Reject& r) override {
    net::post(ex_, [ctl = ctl_, gen = gen_, r] {
      if (ctl->request_gen != gen || ctl->client_gone) return;
      ctl->evicted = true;
      ctl->evict_reject = r;
      if (ctl->upstream) {
        beast::error_code ig;
        ctl->upstream->stream.socket().shutdown(tcp::socket::shutdown_both, ig);
        ctl->upstream->stream.socket().close(ig);
      }
    });
  }

 private:
  std::shared_ptr<SessionCtl> ctl_;
  Executor ex_;
  uint64_t gen_;
};

}  // namespace tidegate::gateway
