#include "common/fd_limit.h"

#include <sys/resource.h>

#include <cerrno>
#include <cstring>

namespace tidegate {

OpenFilesLimit RaiseOpenFilesLimit() {
  OpenFilesLimit out;
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) {
    out.error = std::strerror(errno);
    return out;
  }
  out.before = out.soft = rl.rlim_cur;
  out.hard = rl.rlim_max;
  if (rl.rlim_cur >= rl.rlim_max) return out;
  rlimit raised = rl;
  raised.rlim_cur = rl.rlim_max;
  if (::setrlimit(RLIMIT_NOFILE, &raised) != 0) {
    out.error = std::strerror(errno);
    return out;
  }
  out.soft = raised.rlim_cur;
  return out;
}

}  // namespace tidegate
