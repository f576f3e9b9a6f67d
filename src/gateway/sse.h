// gateway/sse.h — what the relay needs to know of a Server-Sent Events stream it forwards,
// without buffering it: how many data events went by (the output tokens of an OpenAI stream)
// and whether the bytes so far end at an event boundary (so an error event can be appended
// as an event of its own).
//
// Contract: Feed() takes the stream's bytes in any pieces; the results depend only on the
// concatenation, never on where it was split (the fuzz target checks this). A line ends at LF
// (a CR before it is ignored); a "data:" line counts as one event unless its value is
// "[DONE]" (leading spaces skipped). TrailingNewlines() is how many line ends the bytes end
// with, CRs ignored, at most 2: 2 (or nothing fed) means an event boundary. Lines of any
// length are handled in O(1) memory.
// CountJsonTokens() reads the usage figure of a JSON answer (or of one SSE event's data): the
// last "completion_tokens" in `chunk`, into *tokens (left alone when there is none).
// Thread-safety: an SseScanner belongs to one relay; CountJsonTokens is a pure function.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace tidegate::gateway {

void CountJsonTokens(std::string_view chunk, int64_t* tokens);

class SseScanner {
 public:
  void Feed(std::string_view bytes);
  int64_t DataEvents() const { return events_; }
  int TrailingNewlines() const { return fed_ ? newlines_ : 2; }
  bool AtEventBoundary() const { return TrailingNewlines() >= 2; }

 private:
  void EndLine();
  int64_t events_ = 0;
  int newlines_ = 0;
  bool fed_ = false;
  // The start of the current line, enough to tell "data:" and "data: [DONE]" apart.
  static constexpr size_t kKeep = 64;
  char head_[kKeep];
  size_t head_len_ = 0;
  bool head_overflow_ = false;
};

}  // namespace tidegate::gateway
