// http::Client against a real loopback server that closes its idle keep-alive connections, as
// servers do (the gateway after its idle timeout): a request must not fail because every pooled
// connection died at once.
#include <gtest/gtest.h>

#include <boost/asio.hpp>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "http/client.h"

namespace tidegate::http {
namespace {

namespace net = boost::asio;
using tcp = net::ip::tcp;

// Answers every request on a connection with a tiny 200 (keep-alive) until CloseAll().
class KeepAliveServer {
 public:
  explicit KeepAliveServer(net::io_context& io) : io_(io), acceptor_(io, {tcp::v4(), 0}) {
    acceptor_.set_option(tcp::acceptor::reuse_address(true));
    Accept();
  }
  uint16_t port() const { return acceptor_.local_endpoint().port(); }
  int accepted() const { return accepted_; }
  void CloseAll() {
    for (auto& s : socks_) {
      boost::system::error_code ig;
      s->close(ig);
    }
    socks_.clear();
  }

 private:
  void Accept() {
    acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket s) {
      if (ec) return;
      ++accepted_;
      auto sock = std::make_shared<tcp::socket>(std::move(s));
      socks_.push_back(sock);
      Serve(sock, std::make_shared<std::string>());
      Accept();
    });
  }
  void Serve(std::shared_ptr<tcp::socket> s, std::shared_ptr<std::string> in) {
    auto buf = std::make_shared<std::array<char, 4096>>();
    s->async_read_some(net::buffer(*buf), [this, s, in, buf](boost::system::error_code ec,
                                                             size_t n) {
      if (ec) return;
      in->append(buf->data(), n);
      if (in->find("\r\n\r\n") == std::string::npos) return Serve(s, in);
      in->clear();
      static const std::string kResp =
          "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok";
      net::async_write(*s, net::buffer(kResp), [this, s, in](boost::system::error_code ec, size_t) {
        if (!ec) Serve(s, in);
      });
    });
  }

  net::io_context& io_;
  tcp::acceptor acceptor_;
  std::vector<std::shared_ptr<tcp::socket>> socks_;
  int accepted_ = 0;
};

TEST(HttpClient, SurvivesEveryPooledConnectionBeingClosedByTheServer) {
  net::io_context io;
  KeepAliveServer server(io);
  Client client(io.get_executor(), Url{"127.0.0.1", server.port(), ""}, 8);
  std::vector<int> statuses;
  auto send = [&](int n) -> net::awaitable<void> {
    std::vector<net::awaitable<ClientResponse>> reqs;
    for (int i = 0; i < n; ++i) {
      ClientRequest r;
      r.method = "GET";
      r.target = "/x";
      r.deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
      statuses.push_back((co_await client.Send(r)).status);
    }
  };
  // Three connections in the pool: three requests in parallel.
  auto run_until = [&](size_t n) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (statuses.size() < n && std::chrono::steady_clock::now() < end)
      io.run_one_for(std::chrono::milliseconds(50));
  };
  for (int i = 0; i < 3; ++i) net::co_spawn(io, send(1), net::detached);
  run_until(3);
  ASSERT_EQ(statuses, (std::vector<int>{200, 200, 200}));
  ASSERT_EQ(server.accepted(), 3);
  // The server closes them all (its idle timeout), then the next request comes.
  server.CloseAll();
  statuses.clear();
  net::co_spawn(io, send(2), net::detached);
  run_until(2);
  EXPECT_EQ(statuses, (std::vector<int>{200, 200}));
  EXPECT_EQ(server.accepted(), 4);  // one fresh connection, kept for the second request
}

}  // namespace
}  // namespace tidegate::http
