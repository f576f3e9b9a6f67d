// common/subprocess.cc — see subprocess.h. Plain POSIX; no event loop involved.
#include "common/subprocess.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

namespace tidegate {

namespace {
int DecodeStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}
}  // namespace

std::unique_ptr<Child> Child::Spawn(const std::vector<std::string>& argv,
                                    const std::string& log_path, std::string* error) {
  if (argv.empty()) {
    *error = "no program given";
    return nullptr;
  }
  int log_fd = -1;
  if (!log_path.empty()) {
    log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0) {
      *error = "cannot open log file " + log_path + ": " + std::strerror(errno);
      return nullptr;
    }
  }
  // A pipe that closes on a successful exec tells the parent whether exec worked.
  int pfd[2];
  if (::pipe2(pfd, O_CLOEXEC) != 0) {
    *error = std::string("pipe: ") + std::strerror(errno);
    if (log_fd >= 0) ::close(log_fd);
    return nullptr;
  }
  std::vector<char*> cargv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) {
    *error = std::string("fork: ") + std::strerror(errno);
    ::close(pfd[0]);
    ::close(pfd[1]);
    if (log_fd >= 0) ::close(log_fd);
    return nullptr;
  }
  if (pid == 0) {
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    if (log_fd >= 0) {
      ::dup2(log_fd, 1);
      ::dup2(log_fd, 2);
    }
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execvp(cargv[0], cargv.data());
    int err = errno;
    (void)!::write(pfd[1], &err, sizeof err);
    ::_exit(127);
  }
  ::close(pfd[1]);
  if (log_fd >= 0) ::close(log_fd);
  int child_err = 0;
  ssize_t n;
  do {
    n = ::read(pfd[0], &child_err, sizeof child_err);
  } while (n < 0 && errno == EINTR);
  ::close(pfd[0]);
  if (n == static_cast<ssize_t>(sizeof child_err)) {
    int status;
    ::waitpid(pid, &status, 0);
    *error = "cannot start " + argv[0] + ": " + std::strerror(child_err);
    return nullptr;
  }
  std::string name = argv[0];
  if (auto slash = name.rfind('/'); slash != std::string::npos) name = name.substr(slash + 1);
  if (argv.size() > 1) name += " " + argv[1];
  return std::unique_ptr<Child>(new Child(pid, name));
}

Child::~Child() { Stop(); }

bool Child::Running() {
  if (exited_) return false;
  int status;
  pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    exited_ = true;
    exit_code_ = DecodeStatus(status);
    return false;
  }
  return r == 0;
}

void Child::Signal(int sig) {
  if (Running()) ::kill(pid_, sig);
}

int Child::Wait(std::chrono::milliseconds timeout) {
  auto until = std::chrono::steady_clock::now() + timeout;
  auto step = std::chrono::milliseconds(2);
  while (Running()) {
    if (std::chrono::steady_clock::now() >= until) return -1;
    std::this_thread::sleep_for(step);
    step = std::min(step * 2, std::chrono::milliseconds(50));
  }
  return exit_code_;
}

int Child::Stop(std::chrono::milliseconds grace) {
  if (!Running()) return exit_code_;
  Signal(SIGTERM);
  int code = Wait(grace);
  if (code >= 0) return code;
  ::kill(pid_, SIGKILL);
  return Wait(std::chrono::milliseconds(5000));
}

int HttpGetBlocking(const std::string& host, int port, const std::string& path, std::string* body,
                    std::chrono::milliseconds timeout) {
  return HttpRequestBlocking(host, port, "GET", path, "", "", body, timeout);
}

int HttpRequestBlocking(const std::string& host, int port, const std::string& method,
                        const std::string& path, const std::string& content_type,
                        const std::string& request_body, std::string* body,
                        std::chrono::milliseconds timeout) {
  body->clear();
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return 0;
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    ::close(fd);
    return 0;
  }
  auto until = std::chrono::steady_clock::now() + timeout;
  auto wait_for = [&](short events) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    until - std::chrono::steady_clock::now())
                    .count();
    if (left <= 0) return false;
    pollfd p{fd, events, 0};
    return ::poll(&p, 1, static_cast<int>(left)) == 1;
  };
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    if (errno != EINPROGRESS || !wait_for(POLLOUT)) {
      ::close(fd);
      return 0;
    }
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      ::close(fd);
      return 0;
    }
  }
  std::string req = method + " " + path + " HTTP/1.1\r\nHost: " + host + ":" +
                    std::to_string(port) + "\r\nConnection: close\r\n";
  if (!content_type.empty()) req += "Content-Type: " + content_type + "\r\n";
  if (method != "GET" || !request_body.empty())
    req += "Content-Length: " + std::to_string(request_body.size()) + "\r\n";
  req += "\r\n";
  req += request_body;
  size_t off = 0;
  while (off < req.size()) {
    ssize_t n = ::send(fd, req.data() + off, req.size() - off, MSG_NOSIGNAL);
    if (n > 0) {
      off += static_cast<size_t>(n);
    } else if (n < 0 && errno == EAGAIN && wait_for(POLLOUT)) {
      continue;
    } else {
      ::close(fd);
      return 0;
    }
  }
  std::string resp;
  char buf[16384];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n > 0) {
      resp.append(buf, static_cast<size_t>(n));
    } else if (n == 0) {
      break;
    } else if (errno == EAGAIN && wait_for(POLLIN)) {
      continue;
    } else {
      break;
    }
  }
  ::close(fd);
  // "HTTP/1.1 200 OK\r\n...\r\n\r\nbody" (Connection: close; chunked bodies are de-chunked).
  if (resp.rfind("HTTP/1.", 0) != 0 || resp.size() < 12) return 0;
  int status = std::atoi(resp.c_str() + 9);
  size_t hdr_end = resp.find("\r\n\r\n");
  if (hdr_end == std::string::npos) return 0;
  std::string headers = resp.substr(0, hdr_end);
  std::string raw = resp.substr(hdr_end + 4);
  for (auto& c : headers) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (headers.find("transfer-encoding: chunked") != std::string::npos) {
    size_t pos = 0;
    while (pos < raw.size()) {
      size_t eol = raw.find("\r\n", pos);
      if (eol == std::string::npos) break;
      size_t len = std::strtoul(raw.c_str() + pos, nullptr, 16);
      if (len == 0) break;
      body->append(raw, eol + 2, len);
      pos = eol + 2 + len + 2;
    }
  } else {
    *body = std::move(raw);
  }
  return status;
}

bool WaitHttpReady(const std::string& host, int port, const std::string& path,
                   std::chrono::milliseconds timeout) {
  auto until = std::chrono::steady_clock::now() + timeout;
  std::string body;
  while (std::chrono::steady_clock::now() < until) {
    if (HttpGetBlocking(host, port, path, &body, std::chrono::milliseconds(500)) == 200)
      return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

std::string SelfExe() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "tidegate";
  return std::string(buf, static_cast<size_t>(n));
}

int FreeTcpPort(int want) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(want));
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    socklen_t len = sizeof addr;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0)
      port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

}  // namespace tidegate
