// discovery/poll_loop.h — the thread of a source that reads its origin on a timer (file, dns).
//
// Contract: Start() runs `check` on a thread of its own every `interval_s` seconds, and at once
// whenever Refresh() asks (a SIGHUP); a Refresh() during a check makes one more check follow it.
// Stop() wakes the thread, waits for a check in progress to end and joins it; nothing runs after
// it returns. The destructor stops.
// Thread-safety: Start() and Stop() from one thread; Refresh() from any thread.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

namespace tidegate::discovery {

class PollLoop {
 public:
  PollLoop() = default;
  PollLoop(const PollLoop&) = delete;
  PollLoop& operator=(const PollLoop&) = delete;
  ~PollLoop() { Stop(); }

  void Start(double interval_s, std::function<void()> check) {
    interval_s_ = interval_s;
    check_ = std::move(check);
    thread_ = std::thread([this] { Run(); });
  }

  void Refresh() {
    {
      std::lock_guard lock(mu_);
      refresh_ = true;
    }
    cv_.notify_all();
  }

  void Stop() {
    {
      std::lock_guard lock(mu_);
      stopped_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void Run() {
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait_for(lock, std::chrono::duration<double>(interval_s_),
                   [&] { return stopped_ || refresh_; });
      if (stopped_) return;
      refresh_ = false;
      lock.unlock();
      check_();
      lock.lock();
    }
  }

  double interval_s_ = 1;
  std::function<void()> check_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopped_ = false, refresh_ = false;  // guarded by mu_
};

}  // namespace tidegate::discovery
