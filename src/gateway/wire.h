// gateway/wire.h — small pure helpers of the HTTP data plane, kept out of the Beast translation
// unit so they can be unit-tested and fuzzed.
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

// Given the bytes buffered after a chunked body read returned data, can the response parser make
// progress without reading the socket again? It then stands at "\r\n<size>[;ext]\r\n"; the last
// chunk ("0") also needs the final "\r\n". Used to coalesce everything that arrived together
// into one client write without ever waiting on the socket for the next SSE event.
bool ChunkedParserCanProgress(std::string_view buffered);

}  // namespace tidegate::gateway
