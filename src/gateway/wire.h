// gateway/wire.h — request ids for the HTTP data plane (kept out of the Beast translation units
// so they can be unit-tested).
//
// Contract: pure functions of their arguments (NewRequestId uses a thread-local RNG).
// Thread-safety: safe from any thread.
#pragma once

#include <string>
#include <string_view>

namespace tidegate::gateway {

// A random id shaped like a UUIDv4 (36 characters, lowercase hex); the first form writes it
// into `out` (no allocation).
void NewRequestId(char (&out)[36]);
std::string NewRequestId();

}  // namespace tidegate::gateway
