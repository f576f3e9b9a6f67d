// common/fd_limit.h — the process's open-files limit.
//
// Contract: RaiseOpenFilesLimit() raises the soft RLIMIT_NOFILE to the hard limit (a server
// that runs out of descriptors at the default 1024 fails every request and health check) and
// reports the limits before and after. It never lowers the limit; `error` says why a raise
// failed (the old soft limit then stands).
// Thread-safety: call once at start-up, before threads open descriptors.
#pragma once

#include <cstdint>
#include <string>

namespace tidegate {

struct OpenFilesLimit {
  uint64_t before = 0;  // soft limit before
  uint64_t soft = 0;    // soft limit now
  uint64_t hard = 0;
  std::string error;
};

OpenFilesLimit RaiseOpenFilesLimit();

}  // namespace tidegate
