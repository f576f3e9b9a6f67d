// tokenizer/standin.h — the simulator's stand-in tokenisation, shared with the gateway so that a
// gateway without a tokenizer file computes the same token ids as `tidegate sim` without one.
//
// Contract: token i of a text is its bytes [4i, 4i+4) (the last one zero-padded), read as a
// little-endian 32-bit id; a text of n bytes has max(1, ceil(n/4)) tokens (an empty text is one
// id 0). Equal text prefixes give equal id prefixes. This is NOT what a real engine computes:
// with a real model server, give the gateway the model's tokenizer (serve --tokenizer).
// Thread-safety: pure functions.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string_view>
#include <vector>

namespace tidegate::tokenizer {

inline constexpr int kStandInBytesPerToken = 4;

inline size_t StandInTokenCount(std::string_view text) {
  return text.empty() ? 1 : (text.size() + kStandInBytesPerToken - 1) / kStandInBytesPerToken;
}

// Appends the ids of at most `max_tokens` leading tokens of `text` to *out.
inline void StandInTokenIds(std::string_view text, std::vector<uint32_t>* out,
                            size_t max_tokens = SIZE_MAX) {
  const size_t n = std::min(StandInTokenCount(text), max_tokens);
  const size_t full = std::min(n, text.size() / kStandInBytesPerToken);
  const size_t at = out->size();
  out->resize(at + n);
  uint32_t* dst = out->data() + at;
  const unsigned char* src = reinterpret_cast<const unsigned char*>(text.data());
  for (size_t i = 0; i < full; ++i, src += kStandInBytesPerToken)
    dst[i] = static_cast<uint32_t>(src[0]) | static_cast<uint32_t>(src[1]) << 8 |
             static_cast<uint32_t>(src[2]) << 16 | static_cast<uint32_t>(src[3]) << 24;
  if (full < n) {  // the zero-padded last token (or the empty text's one id 0)
    uint32_t id = 0;
    for (size_t b = 0; full * kStandInBytesPerToken + b < text.size(); ++b)
      id |= static_cast<uint32_t>(src[b]) << (8 * b);
    dst[full] = id;
  }
}

}  // namespace tidegate::tokenizer
