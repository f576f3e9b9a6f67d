#include "kvevents/publisher.h"

#include <spdlog/spdlog.h>

#include <deque>
#include <mutex>
#include <thread>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "kvevents/zmq_context.h"

namespace tidegate::kvevents {

struct Publisher::Impl {
  PublisherConfig cfg;
  zmq::socket_t pub;
  std::unique_ptr<zmq::socket_t> router;
  std::string endpoint, replay_endpoint;
  std::mutex mu;
  std::deque<std::pair<int64_t, std::string>> ring;  // guarded by mu
  std::atomic<bool> stop{false};
  std::thread replay_thread;

  void ServeReplay();
};

void Publisher::Impl::ServeReplay() {
  zmq::pollitem_t item{router->handle(), 0, ZMQ_POLLIN, 0};
  while (!stop.load()) {
    try {
      zmq::poll(&item, 1, std::chrono::milliseconds(100));
      if (!(item.revents & ZMQ_POLLIN)) continue;
      std::vector<zmq::message_t> frames;
      if (!zmq::recv_multipart(*router, std::back_inserter(frames), zmq::recv_flags::dontwait))
        continue;
      int64_t start = 0;
      // [identity, empty, seq] (DEALER) — the identity frame is added by ROUTER.
      if (frames.size() != 3 || !DecodeSeq(frames[2].to_string_view(), &start)) {
        spdlog::warn("kv events: replay request on {} is not [empty, 8-byte seq]; ignored",
                     replay_endpoint);
        continue;
      }
      const std::string id = frames[0].to_string();
      std::vector<std::pair<int64_t, std::string>> out;
      {
        std::lock_guard lock(mu);
        for (const auto& [seq, buf] : ring)
          if (seq >= start) out.emplace_back(seq, buf);
      }
      for (const auto& [seq, buf] : out) {
        router->send(zmq::buffer(id), zmq::send_flags::sndmore);
        router->send(zmq::message_t(), zmq::send_flags::sndmore);
        router->send(zmq::buffer(EncodeSeq(seq)), zmq::send_flags::sndmore);
        router->send(zmq::buffer(buf), zmq::send_flags::none);
      }
      router->send(zmq::buffer(id), zmq::send_flags::sndmore);
      router->send(zmq::message_t(), zmq::send_flags::sndmore);
      router->send(zmq::buffer(EncodeSeq(-1)), zmq::send_flags::sndmore);
      router->send(zmq::message_t(), zmq::send_flags::none);
    } catch (const zmq::error_t& e) {
      if (stop.load()) return;
      spdlog::warn("kv events: replay on {}: {}", replay_endpoint, e.what());
    }
  }
}

Publisher::Publisher(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

std::unique_ptr<Publisher> Publisher::Open(const PublisherConfig& cfg, std::string* error) {
  auto impl = std::make_unique<Impl>();
  impl->cfg = cfg;
  try {
    impl->pub = zmq::socket_t(Context(), zmq::socket_type::pub);
    impl->pub.set(zmq::sockopt::sndhwm, cfg.hwm);
    impl->pub.set(zmq::sockopt::linger, 0);
    impl->pub.bind(cfg.endpoint);
    impl->endpoint = impl->pub.get(zmq::sockopt::last_endpoint);
  } catch (const zmq::error_t& e) {
    *error = "kv events: cannot bind the publisher at " + cfg.endpoint + ": " + e.what();
    return nullptr;
  }
  if (!cfg.replay_endpoint.empty()) {
    try {
      impl->router = std::make_unique<zmq::socket_t>(Context(), zmq::socket_type::router);
      impl->router->set(zmq::sockopt::linger, 0);
      // No send limit: a replay of the whole ring must not be dropped silently at the default
      // high-water mark of 1,000 messages (the ring itself bounds what is sent).
      impl->router->set(zmq::sockopt::sndhwm, 0);
      impl->router->bind(cfg.replay_endpoint);
      impl->replay_endpoint = impl->router->get(zmq::sockopt::last_endpoint);
    } catch (const zmq::error_t& e) {
      *error =
          "kv events: cannot bind the replay socket at " + cfg.replay_endpoint + ": " + e.what();
      return nullptr;
    }
    Impl* raw = impl.get();
    impl->replay_thread = std::thread([raw] { raw->ServeReplay(); });
  }
  return std::unique_ptr<Publisher>(new Publisher(std::move(impl)));
}

Publisher::~Publisher() {
  impl_->stop.store(true);
  if (impl_->replay_thread.joinable()) impl_->replay_thread.join();
}

void Publisher::Publish(const EventBatch& batch) {
  const int64_t seq = next_seq_.fetch_add(1, std::memory_order_relaxed);
  std::string payload = Encode(batch, impl_->cfg.encoding);
  try {
    impl_->pub.send(zmq::buffer(impl_->cfg.topic),
                    zmq::send_flags::sndmore | zmq::send_flags::dontwait);
    impl_->pub.send(zmq::buffer(EncodeSeq(seq)),
                    zmq::send_flags::sndmore | zmq::send_flags::dontwait);
    impl_->pub.send(zmq::buffer(payload), zmq::send_flags::dontwait);
  } catch (const zmq::error_t& e) {
    spdlog::warn("kv events: publishing seq {} on {}: {}", seq, impl_->endpoint, e.what());
  }
  if (impl_->cfg.buffer_steps > 0) {
    std::lock_guard lock(impl_->mu);
    impl_->ring.emplace_back(seq, std::move(payload));
    while (static_cast<int64_t>(impl_->ring.size()) > impl_->cfg.buffer_steps)
      impl_->ring.pop_front();
  }
}

const std::string& Publisher::endpoint() const { return impl_->endpoint; }
const std::string& Publisher::replay_endpoint() const { return impl_->replay_endpoint; }

}  // namespace tidegate::kvevents
