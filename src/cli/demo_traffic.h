// cli/demo_traffic.h — the sample traffic of `tidegate demo`: spiky real-time requests through
// the gateway, and an async backlog on the embedded queue kept topped up, so that the troughs
// between spikes visibly fill. Built on the bench's load generator (bench/load.h) and its
// arrival model (bench/scenario.h).
//
// Contract:
//  * DemoTrafficPreset("sample" | "seed") gives the real-time shape and the backlog sizes;
//    "seed" reads the seed scenario's realtime and async blocks (the caller passes it parsed).
//  * RealtimeTraffic::Start() plays the real-time shape through the gateway in windows of one
//    spike period (a new arrival draw each window) on its own thread until Stop(); counters
//    say how many were sent, succeeded and failed. Request ids are "sample-rt-<n>".
//  * AsyncBacklog::Tick() (call about once a second, from the demo's main thread: it does
//    blocking SQLite calls) submits `initial` requests the first time, then another `top_up`
//    whenever fewer than `low_water` remain on the request queue. It also acknowledges the
//    results of its own requests (ids "sample-async-<n>") so they do not bury the user's: any
//    other result is handed back at the end of the scan (milliseconds) for `tidegate results`.
// Thread-safety: RealtimeTraffic's counters are atomic; AsyncBacklog belongs to one thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "bench/scenario.h"
#include "queue/queue.h"

namespace tidegate::cli {

struct DemoTrafficPreset {
  bench::RealtimeSpec realtime;
  bench::AsyncSpec async;  // prompt/output sizes of the backlog
  int initial = 0, top_up = 0, low_water = 0;
  double window_s = 20;  // the real-time draw is repeated every window
};

// The built-in sample shape (see tidegate demo --help).
DemoTrafficPreset SampleTraffic();
// The seed scenario's shape: its realtime block, and its async requests as the backlog.
DemoTrafficPreset SeedTraffic(const bench::Scenario& seed);

class RealtimeTraffic {
 public:
  RealtimeTraffic(std::string gateway_url, std::string model, bench::RealtimeSpec spec,
                  double window_s, uint64_t seed);
  ~RealtimeTraffic();
  // False with *error when the URL is bad.
  bool Start(std::string* error);
  void Stop();

  uint64_t sent() const { return sent_.load(); }
  uint64_t succeeded() const { return ok_.load(); }
  uint64_t failed() const { return failed_.load(); }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::atomic<uint64_t> sent_{0}, ok_{0}, failed_{0};
};

class AsyncBacklog {
 public:
  AsyncBacklog(std::string requests_uri, std::string results_uri, std::string model,
               DemoTrafficPreset preset, uint64_t seed);
  // Opens the queues; false with *error when they cannot be opened.
  bool Open(std::string* error);
  // One round (see the contract). Returns "" or what went wrong (logged by the caller).
  std::string Tick();

  uint64_t submitted() const { return submitted_; }
  uint64_t results_taken() const { return taken_; }

 private:
  std::string requests_uri_, results_uri_, model_;
  DemoTrafficPreset preset_;
  uint64_t seed_;
  std::unique_ptr<queue::Queue> requests_, results_;
  uint64_t submitted_ = 0, taken_ = 0;
  bool started_ = false;
};

}  // namespace tidegate::cli
