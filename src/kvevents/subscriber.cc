#include "kvevents/subscriber.h"

#include <spdlog/spdlog.h>
#include <zmq.h>

#include <atomic>
#include <map>
#include <mutex>
#include <thread>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "kvevents/sequence.h"
#include "kvevents/zmq_context.h"

namespace tidegate::kvevents {

std::string_view FeedStateName(FeedState s) {
  switch (s) {
    case FeedState::kConnecting:
      return "connecting";
    case FeedState::kSyncing:
      return "syncing";
    case FeedState::kLive:
      return "live";
    case FeedState::kDisconnected:
      return "disconnected";
  }
  return "unknown";
}

namespace {

struct Feed {
  Target target;
  zmq::socket_t sub;
  zmq::socket_t monitor;  // PAIR, receives the SUB socket's connect/disconnect events
  std::unique_ptr<zmq::socket_t> dealer;
  SeqTracker seq;
  FeedStatus status;
  std::chrono::steady_clock::time_point last_decode_log{};
};

std::atomic<uint64_t> g_monitor_id{0};

}  // namespace

struct Subscriber::Impl {
  SubscriberSink* sink;
  Options options;
  mutable std::mutex mu;
  std::vector<Target> wanted;  // guarded by mu
  uint64_t wanted_version = 0;
  std::map<std::pair<uint32_t, uint64_t>, FeedStatus> published;  // guarded by mu
  std::atomic<bool> stop{false};
  std::thread thread;

  std::map<std::pair<uint32_t, uint64_t>, std::unique_ptr<Feed>> feeds;  // thread only
  uint64_t applied_version = 0;

  void Run();
  void Reconcile();
  std::unique_ptr<Feed> Open(const Target& t);
  void OnMonitor(Feed& f);
  void OnMessage(Feed& f, std::vector<zmq::message_t>& frames);
  void Apply(Feed& f, int64_t seq, std::string_view payload);
  bool Replay(Feed& f, int64_t from);
  void ResetDealer(Feed& f);
  void Publish();
};

Subscriber::Subscriber(SubscriberSink* sink, Options options) : impl_(std::make_unique<Impl>()) {
  impl_->sink = sink;
  impl_->options = options;
  impl_->thread = std::thread([this] { impl_->Run(); });
}

Subscriber::~Subscriber() {
  impl_->stop.store(true);
  if (impl_->thread.joinable()) impl_->thread.join();
}

void Subscriber::SetTargets(std::vector<Target> targets) {
  std::lock_guard lock(impl_->mu);
  impl_->wanted = std::move(targets);
  ++impl_->wanted_version;
}

std::vector<FeedStatus> Subscriber::Status() const {
  std::lock_guard lock(impl_->mu);
  std::vector<FeedStatus> out;
  for (const auto& [k, s] : impl_->published) out.push_back(s);
  return out;
}

std::unique_ptr<Feed> Subscriber::Impl::Open(const Target& t) {
  auto f = std::make_unique<Feed>();
  f->target = t;
  f->status.slot = t.slot;
  f->status.uid = t.uid;
  f->status.pub = t.pub;
  f->status.replay = t.replay;
  f->sub = zmq::socket_t(Context(), zmq::socket_type::sub);
  f->sub.set(zmq::sockopt::linger, 0);
  f->sub.set(zmq::sockopt::rcvhwm, 100000);
  f->sub.set(zmq::sockopt::subscribe, t.topic);
  const std::string mon = "inproc://kv-monitor-" + std::to_string(g_monitor_id.fetch_add(1));
  if (zmq_socket_monitor(f->sub.handle(), mon.c_str(),
                         ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED) != 0)
    throw zmq::error_t();
  f->monitor = zmq::socket_t(Context(), zmq::socket_type::pair);
  f->monitor.set(zmq::sockopt::linger, 0);
  f->monitor.connect(mon);
  f->sub.connect(t.pub);
  if (!t.replay.empty()) ResetDealer(*f);
  return f;
}

void Subscriber::Impl::ResetDealer(Feed& f) {
  f.dealer = std::make_unique<zmq::socket_t>(Context(), zmq::socket_type::dealer);
  f.dealer->set(zmq::sockopt::linger, 0);
  f.dealer->set(zmq::sockopt::rcvhwm, 0);  // a replay may be the publisher's whole ring
  f.dealer->connect(f.target.replay);
}

void Subscriber::Impl::Reconcile() {
  std::vector<Target> want;
  {
    std::lock_guard lock(mu);
    if (wanted_version == applied_version) return;
    applied_version = wanted_version;
    want = wanted;
  }
  std::map<std::pair<uint32_t, uint64_t>, const Target*> by_key;
  for (const Target& t : want) by_key[{t.slot, t.uid}] = &t;
  for (auto it = feeds.begin(); it != feeds.end();) {
    auto w = by_key.find(it->first);
    if (w == by_key.end() || w->second->pub != it->second->target.pub ||
        w->second->replay != it->second->target.replay ||
        w->second->topic != it->second->target.topic) {
      spdlog::info("kv events: unsubscribing from {} ({})", it->second->target.pub,
                   it->second->target.name);
      sink->OnLive(it->first.first, it->first.second, false);
      it = feeds.erase(it);
    } else {
      ++it;
    }
  }
  for (const auto& [key, t] : by_key) {
    if (feeds.count(key)) continue;
    try {
      feeds[key] = Open(*t);
      spdlog::info("kv events: subscribing to {} for {}{}", t->pub, t->name,
                   t->replay.empty() ? std::string() : " (replay " + t->replay + ")");
    } catch (const zmq::error_t& e) {
      spdlog::error("kv events: cannot subscribe to {} for {}: {}", t->pub, t->name, e.what());
    }
  }
}

void Subscriber::Impl::Publish() {
  std::lock_guard lock(mu);
  published.clear();
  for (const auto& [k, f] : feeds) published[k] = f->status;
}

void Subscriber::Impl::OnMonitor(Feed& f) {
  std::vector<zmq::message_t> frames;
  while (zmq::recv_multipart(f.monitor, std::back_inserter(frames), zmq::recv_flags::dontwait)) {
    if (frames.empty() || frames[0].size() < 2) {
      frames.clear();
      continue;
    }
    uint16_t event;
    std::memcpy(&event, frames[0].data(), 2);
    frames.clear();
    const uint32_t slot = f.target.slot;
    const uint64_t uid = f.target.uid;
    if (event == ZMQ_EVENT_CONNECTED) {
      ++f.status.connects;
      f.status.state = FeedState::kSyncing;
      sink->OnLive(slot, uid, false);
      sink->OnClear(slot, uid, "connected to the publisher");
      f.seq.Reset();
      bool ok = true;
      if (f.dealer) {
        ok = Replay(f, 0);
        if (!ok)
          spdlog::warn(
              "kv events: {}: the replay after connecting failed ({}); live from "
              "now on, blocks stored before are unknown",
              f.target.name, f.status.last_error);
      }
      f.status.state = FeedState::kLive;
      sink->OnLive(slot, uid, true);
      spdlog::info("kv events: {} live at seq {}", f.target.name, f.seq.last());
    } else if (event == ZMQ_EVENT_DISCONNECTED) {
      f.status.state = FeedState::kDisconnected;
      sink->OnLive(slot, uid, false);
      spdlog::warn(
          "kv events: {} disconnected from {}; scoring falls back to the approximate "
          "index until it is back",
          f.target.name, f.target.pub);
    }
  }
}

void Subscriber::Impl::Apply(Feed& f, int64_t seq, std::string_view payload) {
  f.seq.Applied(seq);
  f.status.last_seq = seq;
  EventBatch batch;
  std::string error;
  if (!Decode(payload, &batch, &error)) {
    ++f.status.decode_errors;
    f.status.last_error = "seq " + std::to_string(seq) + ": " + error;
    auto now = std::chrono::steady_clock::now();
    if (now - f.last_decode_log > std::chrono::seconds(10)) {
      f.last_decode_log = now;
      spdlog::warn("kv events: {}: a batch that is not an EventBatch was skipped: {}",
                   f.target.name, f.status.last_error);
    }
    return;
  }
  ++f.status.batches;
  f.status.events += batch.events.size();
  sink->OnBatch(f.target.slot, f.target.uid, batch);
}

bool Subscriber::Impl::Replay(Feed& f, int64_t from) {
  ++f.status.replays;
  f.status.last_error.clear();
  f.seq.ReplayFrom(from);
  try {
    f.dealer->send(zmq::message_t(), zmq::send_flags::sndmore);
    f.dealer->send(zmq::buffer(EncodeSeq(from)), zmq::send_flags::none);
    const auto deadline = std::chrono::steady_clock::now() + options.replay_timeout;
    std::vector<zmq::message_t> frames;
    while (!stop.load()) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      zmq::pollitem_t item{f.dealer->handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, left);
      if (!(item.revents & ZMQ_POLLIN)) continue;
      frames.clear();
      if (!zmq::recv_multipart(*f.dealer, std::back_inserter(frames), zmq::recv_flags::dontwait))
        continue;
      int64_t seq;
      if (frames.size() != 3 || !DecodeSeq(frames[1].to_string_view(), &seq)) {
        f.status.last_error = "a replay answer is not [empty, seq, batch]";
        break;
      }
      if (seq == -1) return true;
      SeqVerdict v = f.seq.Check(seq);
      if (v == SeqVerdict::kDuplicate || (f.seq.last() >= 0 && seq <= f.seq.last())) continue;
      if (v == SeqVerdict::kGap) {
        f.status.last_error =
            "the publisher's buffer no longer holds seq " + std::to_string(f.seq.last() + 1);
        break;
      }
      Apply(f, seq, frames[2].to_string_view());
    }
    if (f.status.last_error.empty()) f.status.last_error = "the replay timed out";
  } catch (const zmq::error_t& e) {
    f.status.last_error = std::string("replay: ") + e.what();
  }
  ++f.status.replay_failures;
  ResetDealer(f);  // late answers to this request must not be read as the next one's
  return false;
}

void Subscriber::Impl::OnMessage(Feed& f, std::vector<zmq::message_t>& frames) {
  int64_t seq;
  if (frames.size() != 3 || !DecodeSeq(frames[1].to_string_view(), &seq)) {
    ++f.status.decode_errors;
    f.status.last_error = "a message is not [topic, 8-byte seq, batch]";
    return;
  }
  const uint32_t slot = f.target.slot;
  const uint64_t uid = f.target.uid;
  switch (f.seq.Check(seq)) {
    case SeqVerdict::kApply:
      break;
    case SeqVerdict::kDuplicate:
      return;
    case SeqVerdict::kRestart:
      ++f.status.restarts;
      spdlog::info(
          "kv events: {}: seq went back from {} to {} (the engine restarted); its "
          "blocks are cleared",
          f.target.name, f.seq.last(), seq);
      sink->OnClear(slot, uid, "the publisher restarted");
      f.seq.Reset();
      break;
    case SeqVerdict::kGap: {
      ++f.status.gaps;
      const int64_t from = f.seq.last() + 1;
      if (f.dealer && Replay(f, from) && f.seq.Check(seq) != SeqVerdict::kGap) {
        if (f.seq.Check(seq) == SeqVerdict::kDuplicate) return;
        break;
      }
      spdlog::warn(
          "kv events: {}: batches {}..{} were lost{}; its blocks are cleared and "
          "rebuilt from what comes next",
          f.target.name, from, seq - 1,
          f.dealer ? " and could not be replayed" : " (no replay endpoint)");
      sink->OnClear(slot, uid, "a gap in the sequence");
      f.seq.Reset();
      break;
    }
  }
  Apply(f, seq, frames[2].to_string_view());
  f.seq.LiveApplied(seq);
}

void Subscriber::Impl::Run() {
  std::vector<zmq::pollitem_t> items;
  std::vector<Feed*> order;
  std::vector<zmq::message_t> frames;
  auto last_publish = std::chrono::steady_clock::now();
  while (!stop.load()) {
    Reconcile();
    items.clear();
    order.clear();
    for (auto& [k, f] : feeds) {
      items.push_back({f->sub.handle(), 0, ZMQ_POLLIN, 0});
      items.push_back({f->monitor.handle(), 0, ZMQ_POLLIN, 0});
      order.push_back(f.get());
    }
    try {
      if (items.empty()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      } else {
        zmq::poll(items.data(), items.size(), std::chrono::milliseconds(50));
      }
      for (size_t i = 0; i < order.size(); ++i) {
        Feed& f = *order[i];
        if (items[2 * i + 1].revents & ZMQ_POLLIN) OnMonitor(f);
        if (!(items[2 * i].revents & ZMQ_POLLIN)) continue;
        // At most 256 batches per feed per round, so one busy engine cannot starve the others.
        for (int n = 0; n < 256; ++n) {
          frames.clear();
          if (!zmq::recv_multipart(f.sub, std::back_inserter(frames), zmq::recv_flags::dontwait))
            break;
          OnMessage(f, frames);
        }
      }
    } catch (const zmq::error_t& e) {
      if (stop.load()) break;
      spdlog::warn("kv events: subscriber: {}", e.what());
    }
    auto now = std::chrono::steady_clock::now();
    if (now - last_publish > std::chrono::milliseconds(100)) {
      Publish();
      last_publish = now;
    }
  }
  feeds.clear();
}

}  // namespace tidegate::kvevents
