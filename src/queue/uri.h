// queue/uri.h — the small pieces of queue-URI parsing that every backend shares.
//
// Contract: PercentDecode() decodes %XX escapes (any case); false on a truncated or non-hex
// escape, or when the result holds a NUL byte (no name, path or credential may). SplitView()
// splits on `sep` into views of `s` (an empty `s` gives one empty part). ParseDottedPair()
// reads "A.B" with A and B positive decimal integers (the ack ids of the embedded and NATS
// queues). CheckDeadLetter() applies the dead-lettering rules every backend shares:
// max_attempts needs a dead-letter target, which must differ from the source; a dead-letter
// target alone sets max_attempts to kDefaultDeadLetterAttempts (Pub/Sub's default). `unit` names
// the kind of target in messages ("queue", "stream", "subject"). Returns "" or the error.
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tidegate::queue {

bool PercentDecode(std::string_view in, std::string* out);
std::vector<std::string_view> SplitView(std::string_view s, char sep);
bool ParseDottedPair(std::string_view s, uint64_t* a, uint64_t* b);

inline constexpr int kDefaultDeadLetterAttempts = 5;
// The largest max_attempts a queue URI may ask for (every backend's bound).
inline constexpr int kMaxAttemptsLimit = 1000000;
std::string CheckDeadLetter(bool have_max_attempts, const std::string& dead_letter,
                            const std::string& source, std::string_view unit, int* max_attempts);

}  // namespace tidegate::queue
