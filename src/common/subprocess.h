// common/subprocess.h — starting and supervising child processes (the demo and the benchmark
// run simulators, the gateway, the async processor and HAProxy as children).
//
// Contract:
//  * Child::Spawn() fork/execs argv[0] (searched on PATH when it has no '/') with stdout and
//    stderr appended to `log_path` ("" = inherit), in its own process group, and with
//    PR_SET_PDEATHSIG=SIGKILL so a child never outlives a crashed parent. Returns nullptr and
//    sets *error when the program cannot be started (exec failure is reported, not a silent
//    exit 127).
//  * Stop() sends SIGTERM, waits up to `grace`, then SIGKILL; the destructor calls Stop().
//  * WaitHttpReady() polls GET http://host:port/path until it answers 200 or the timeout
//    passes (blocking; for start-up only, never on an event loop).
//  * SelfExe() is the running binary (so `tidegate bench` starts `tidegate sim` etc. from the
//    same build). FreeTcpPort() asks the kernel for an unused loopback port.
// Thread-safety: a Child is used by one thread at a time; the free functions are thread-safe.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace tidegate {

class Child {
 public:
  static std::unique_ptr<Child> Spawn(const std::vector<std::string>& argv,
                                      const std::string& log_path, std::string* error);
  ~Child();
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  const std::string& name() const { return name_; }
  // True while the process has not exited (reaps it when it has).
  bool Running();
  void Signal(int sig);
  // Waits up to `timeout` for the exit; returns the exit code (128+signal when killed), or -1
  // if it is still running.
  int Wait(std::chrono::milliseconds timeout);
  // SIGTERM, then SIGKILL after `grace`. Returns the exit code as Wait() does.
  int Stop(std::chrono::milliseconds grace = std::chrono::milliseconds(5000));

 private:
  Child(pid_t pid, std::string name) : pid_(pid), name_(std::move(name)) {}
  pid_t pid_;
  std::string name_;
  bool exited_ = false;
  int exit_code_ = -1;
};

bool WaitHttpReady(const std::string& host, int port, const std::string& path,
                   std::chrono::milliseconds timeout);
// One blocking GET; returns the status (0 on failure) and fills *body.
int HttpGetBlocking(const std::string& host, int port, const std::string& path, std::string* body,
                    std::chrono::milliseconds timeout = std::chrono::milliseconds(2000));
// One blocking request with an optional body (Content-Length); the same contract.
int HttpRequestBlocking(const std::string& host, int port, const std::string& method,
                        const std::string& path, const std::string& content_type,
                        const std::string& request_body, std::string* body,
                        std::chrono::milliseconds timeout = std::chrono::milliseconds(2000));
std::string SelfExe();
// A TCP port on 127.0.0.1 that is free now: any (want = 0), or `want` itself (0 if taken).
int FreeTcpPort(int want = 0);

}  // namespace tidegate
