#include "gateway/sse.h"

#include <cstring>

namespace tidegate::gateway {

void CountJsonTokens(std::string_view chunk, int64_t* tokens) {
  constexpr std::string_view kKey = "\"completion_tokens\":";
  size_t pos = chunk.rfind(kKey);
  if (pos == std::string_view::npos) return;
  std::string_view rest = chunk.substr(pos + kKey.size());
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  int64_t v = 0;
  size_t i = 0;
  while (i < rest.size() && rest[i] >= '0' && rest[i] <= '9') v = v * 10 + (rest[i++] - '0');
  if (i > 0) *tokens = v;
}

void SseScanner::EndLine() {
  std::string_view line(head_, head_len_);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.substr(0, 5) == "data:") {
    std::string_view v = line.substr(5);
    while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
    // A line longer than kKeep cannot be "[DONE]": it is data.
    if (head_overflow_ || v.substr(0, 6) != "[DONE]") ++events_;
  }
  head_len_ = 0;
  head_overflow_ = false;
}

void SseScanner::Feed(std::string_view bytes) {
  if (bytes.empty()) return;
  fed_ = true;
  for (char c : bytes) {
    if (c == '\n') {
      EndLine();
      if (newlines_ < 2) ++newlines_;
      continue;
    }
    if (c != '\r') newlines_ = 0;
    if (head_len_ < kKeep) {
      head_[head_len_++] = c;
    } else {
      head_overflow_ = true;
    }
  }
}

}  // namespace tidegate::gateway
